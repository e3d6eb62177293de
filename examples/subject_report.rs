//! A customer asks "what do you hold about me?": the answer, from the
//! checkout database.
//!
//! ```text
//! cargo run --example checkout -- --db shop.db
//! cargo run --example subject_report -- --db shop.db [--subject ID] [--json]
//! ```
//!
//! Without `--subject` the report is for the first customer in the table.
//! The report decrypts the customer's own rows for them alone, lists who
//! received what and when from the verified audit trail, and shows live
//! consents, retention dates and transfers; for an erased customer it says
//! the data was erased and when. Producing it is itself an audited use.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress, PurchaseRecord};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::report::StoredRecord;
use privacy_pledge::{Sealed, SubjectId};

use privacy_pledge::store::sqlite::SqliteStore;
use support::BoxError;

struct Args {
    db: PathBuf,
    subject: Option<SubjectId>,
    json: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subject_report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, BoxError> {
    let usage = "usage: subject_report --db PATH [--subject ID] [--json]";
    let mut args = std::env::args().skip(1);
    let (mut db, mut subject, mut json) = (None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => db = Some(PathBuf::from(args.next().ok_or(usage)?)),
            "--subject" => subject = Some(args.next().ok_or(usage)?.parse()?),
            "--json" => json = true,
            _ => return Err(format!("unknown argument {arg:?}; {usage}").into()),
        }
    }
    Ok(Args {
        db: db.ok_or(usage)?,
        subject,
        json,
    })
}

/// The customer's rows as typed envelopes: the `customers` row and every order.
struct Rows {
    name: Sealed<FullName, Transaction>,
    email: Sealed<EmailAddress, Transaction>,
    address: Sealed<PostalAddress, Transaction>,
    phone: Sealed<PhoneNumber, Transaction>,
    orders: Vec<Sealed<PurchaseRecord, Transaction>>,
}

impl Rows {
    fn load(db: &SqliteStore, subject: SubjectId) -> Result<Rows, BoxError> {
        let id = subject.to_string();
        let fields: [String; 4] = db.with_connection(|c| {
            c.query_row(
                "SELECT name, email, address, phone FROM customers WHERE subject = ?1",
                [&id],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
            )
        })?;
        let orders: Vec<String> = db.with_connection(|c| {
            c.prepare("SELECT record FROM orders WHERE subject = ?1 ORDER BY id")?
                .query_map([&id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })?;
        Ok(Rows {
            name: Sealed::from_text(&fields[0])?,
            email: Sealed::from_text(&fields[1])?,
            address: Sealed::from_text(&fields[2])?,
            phone: Sealed::from_text(&fields[3])?,
            orders: orders
                .iter()
                .map(|o| Sealed::from_text(o))
                .collect::<Result<_, _>>()?,
        })
    }

    fn records(&self) -> Vec<&dyn StoredRecord> {
        let mut all: Vec<&dyn StoredRecord> =
            vec![&self.name, &self.email, &self.address, &self.phone];
        all.extend(self.orders.iter().map(|o| o as &dyn StoredRecord));
        all
    }
}

fn first_customer(db: &SqliteStore) -> Result<SubjectId, BoxError> {
    let id: String = db.with_connection(|c| {
        c.query_row(
            "SELECT subject FROM customers ORDER BY rowid LIMIT 1",
            [],
            |r| r.get(0),
        )
    })?;
    Ok(id.parse()?)
}

fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    if !args.db.exists() {
        return Err(format!(
            "{} does not exist; run the checkout example first",
            args.db.display()
        )
        .into());
    }
    let opened = support::open_store_shop(&args.db)?;
    let db = opened.store.clone();
    let subject = match args.subject {
        Some(s) => s,
        None => first_customer(&db)?,
    };
    let rows = Rows::load(&db, subject)?;
    // The report quotes the trail to the customer: every stream verified
    // under the custodian's keys against the signed checkpoints first.
    let trail = opened.verified_trail()?;
    let report = opened
        .custodian
        .subject_report(subject, &rows.records(), &trail)?;
    // The report and its disclosures to the customer are in the trail now.
    opened.shut_down()?;
    if args.json {
        println!("{}", report.to_json()?.as_str());
    } else {
        print!("{}", report.to_letter().as_str());
    }
    Ok(())
}
