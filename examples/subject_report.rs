//! A customer asks "what do you hold about me?": the answer, from the
//! checkout database.
//!
//! ```text
//! cargo run --example checkout -- --db shop.db
//! cargo run --example subject_report -- --db shop.db [--subject ID] [--json]
//! cargo run --example subject_report -- --database-url URL --files PATH [--subject ID] [--json]
//! ```
//!
//! Without `--subject` the report is for the first customer in the table.
//! The report decrypts the customer's own rows for them alone, lists who
//! received what and when from the verified audit trail, and shows live
//! consents, retention dates and transfers; for an erased customer it says
//! the data was erased and when. Producing it is itself an audited use. The
//! trail is verified against the signed checkpoints of the checkpoint
//! directory (never against a checkpoint of the caller's choosing), and the
//! report says how far it is vouched for (on standard error, and in the
//! letter or the JSON when some entries are not).
//!
//! Exit status: 0 with the report printed, 1 when it could not be made,
//! 2 for bad arguments.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress, PurchaseRecord};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::report::StoredRecord;
use privacy_pledge::{PersonalInfo, PersonalRecord, Sealed, SealedRecord, SubjectId};

use privacy_pledge::store::Store;
use support::{BoxError, Database};

struct Args {
    db: Database,
    subject: Option<SubjectId>,
    json: bool,
}

const USAGE: &str = "\
usage: subject_report (--db PATH | --database-url URL --files PATH) [--subject ID] [--json]";

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("subject_report: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subject_report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, BoxError> {
    use lexopt::Arg::{Long, Short};
    use lexopt::ValueExt;
    let mut parser = lexopt::Parser::from_env();
    let mut database = support::DatabaseArgs::default();
    let (mut subject, mut json) = (None, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => support::print_help_and_exit(&format!(
                "subject_report: what the shop holds about one customer\n\n{USAGE}\n\n\
                 options:\n{}\n  --subject ID         the customer (default: the first)\n  \
                 --json               the report as JSON instead of a letter",
                support::DATABASE_HELP
            )),
            Long("subject") => subject = Some(parser.value()?.parse()?),
            Long("json") => json = true,
            Long(flag) => {
                let flag = flag.to_owned();
                database.take(&flag, &mut parser)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Args {
        db: database.database(|| None)?,
        subject,
        json,
    })
}

/// The customer record `checkout` seals into `customers`; a report reads
/// no index, so it leaves out the email's lookup column.
#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    email: PersonalInfo<EmailAddress, Transaction>,
    address: PersonalInfo<PostalAddress, Transaction>,
    phone: PersonalInfo<PhoneNumber, Transaction>,
}

/// The customer's rows as typed envelopes: the `customers` row and every order.
struct Rows {
    customer: SealedCustomer,
    orders: Vec<Sealed<PurchaseRecord, Transaction>>,
}

impl Rows {
    fn load(db: &Store, subject: SubjectId) -> Result<Rows, BoxError> {
        // Mapped by column name with the constructors the derive generates.
        let mut customer = db.query(
            &format!(
                "SELECT {} FROM customers WHERE subject = $1",
                SealedCustomer::COLUMNS.join(", ")
            ),
            &[&subject],
            SealedCustomer::from_store_row,
        )?;
        let customer = customer.pop().ok_or("no such customer (--subject)")?;
        let orders = db.query(
            "SELECT record FROM orders WHERE subject = $1 ORDER BY id",
            &[&subject],
            |row| row.get(0),
        )?;
        Ok(Rows { customer, orders })
    }

    fn records(&self) -> Vec<&dyn StoredRecord> {
        let mut all = self.customer.records();
        all.extend(self.orders.iter().map(|o| o as &dyn StoredRecord));
        all
    }
}

fn first_customer(db: &Store) -> Result<SubjectId, BoxError> {
    let rows = db.query(
        "SELECT subject FROM customers ORDER BY subject LIMIT 1",
        &[],
        |row| row.get::<SubjectId>(0),
    )?;
    let id = rows
        .first()
        .ok_or("the database holds no customer; run the checkout example first")?;
    Ok(*id)
}

fn run(args: &Args) -> Result<(), BoxError> {
    if let Database::Sqlite(path) = &args.db {
        if !path.exists() {
            return Err(format!(
                "{} does not exist; run the checkout example first",
                path.display()
            )
            .into());
        }
    }
    let opened = support::open_shop_on(&args.db)?;
    let db = opened.store.clone();
    let subject = match args.subject {
        Some(s) => s,
        None => first_customer(&db)?,
    };
    let rows = Rows::load(&db, subject)?;
    // The report quotes the trail to the customer: every stream verified
    // under the custodian's keys against the signed checkpoints first.
    let trail = opened.store.verified_trail(&opened.custodian)?;
    let report = opened
        .custodian
        .subject_report(subject, &rows.records(), &trail)?;
    // The report and its disclosures to the customer are in the trail now.
    opened.guard.sign()?;
    // How far the trail the report quotes is vouched for: entries past a
    // stream's last signed checkpoint could have been cut unseen.
    if report.is_fully_vouched() {
        eprintln!("audit trail: every entry vouched for by a signed checkpoint");
    } else {
        eprintln!(
            "audit trail: {} entries NOT vouched for by a signed checkpoint; the report may be incomplete",
            report.unvouched_entries()
        );
    }
    if args.json {
        println!("{}", report.to_json()?.as_str());
    } else {
        print!("{}", report.to_letter().as_str());
    }
    Ok(())
}
