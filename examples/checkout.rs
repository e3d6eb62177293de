//! A shop takes orders: the crate's main job end to end, on SQLite or
//! PostgreSQL.
//!
//! ```text
//! cargo run --example checkout -- [--db PATH | --database-url URL --files PATH]
//! cargo run --example verify_audit -- --db PATH --public-key-file PATH.pub --checkpoints PATH.checkpoints
//! ```
//!
//! Without `--db` the shop uses a new SQLite file in the system's temp
//! directory; with it, it continues an existing one. With `--database-url`
//! it runs on PostgreSQL (`host=127.0.0.1 user=shop dbname=shop`). Several
//! `checkout` processes may run at once on one database: each writes its own
//! audit stream.
//!
//! 1. Order forms arrive. Name, email, postal address and phone are parsed
//!    (invalid input is refused with a message that names the field, not its
//!    value).
//! 2. A returning customer is found by the email's lookup token (a keyed
//!    hash in the `email_index` column: the address as typed, in any case,
//!    finds the row; the database never holds it in the clear). A new one is
//!    signed up: every field collected for `Transaction`, and the whole
//!    record (`#[derive(PersonalRecord)]`) sealed under the customer's own
//!    key into `customers` in one call (`Sealed` values are BLOB columns).
//! 3. The payment processor receives the amount and the card token it needs.
//! 4. An order confirmation goes out as a service notice, which needs no consent.
//! 5. A promotional mail goes only to customers whose consent is live.
//! 6. The returning customer asks to be forgotten and is erased: the index
//!    entries the erasure receipt names are cleared, their row is still in
//!    the table (and in every backup), but it can no longer be opened, and
//!    their email finds no one.
//! 7. Maintenance after the erasure: the key-encryption keys are rotated,
//!    every live customer's key is rewrapped under the new version, the old
//!    version is retired (wiped) and the keyring saved to `PATH.key` without
//!    it (`Custodian::rotate_after_erasures`). From then on a copy of the key
//!    table taken before this step — a backup — opens nothing, not even with
//!    the current keys, so the erasure covers backups of the keys too.
//!
//! Every step is recorded in `pp_audit_log` before it happens, in this
//! process's own stream, chained with HMAC-SHA-256. At the end the stream's
//! head is signed (Ed25519) into the checkpoint directory, standing in for a
//! place the database's operator cannot write; the program prints where it
//! is and the public key, which is all `verify_audit` needs; since every
//! entry is then vouched for, `verify_audit` exits 0 (3 would mean entries
//! no checkpoint vouches for, e.g. after a crash before the shutdown).
//!
//! Exit status: 0 when every order went through, 1 when the shop failed,
//! 2 for bad arguments.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use privacy_pledge::data::{
    Amount, EmailAddress, FullName, InvalidData, PaymentToken, PhoneNumber, PostalAddress,
    PurchaseRecord,
};
use privacy_pledge::purpose::{Promotion, ServiceNotice, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::store::{Dialect, Store};
use privacy_pledge::time::Timestamp;
use privacy_pledge::{Error, PersonalInfo, PersonalRecord, Sealed, SubjectId};
use support::{BoxError, Database};

/// An order form as the web shop receives it: untrusted text.
struct OrderForm {
    name: &'static str,
    email: &'static str,
    address: &'static str,
    phone: &'static str,
    /// The payment processor's token for the card, created in the customer's
    /// browser: the shop never sees a card number.
    card_token: &'static str,
    product: &'static str,
    price_cents: u64,
    wants_offers: bool,
}

const ORDERS: [OrderForm; 5] = [
    OrderForm {
        name: "Ada Lovelace",
        email: "ada@example.com",
        address: "12 St James's Square\nLondon SW1Y 4JH\nGB",
        phone: "+44 20 7946 0958",
        card_token: "tok_1NX2bq2eZvKYlo2C",
        product: "Data Recovery Pro",
        price_cents: 6_995,
        wants_offers: true,
    },
    OrderForm {
        name: "Grace Hopper",
        email: "grace.hopper@example.org",
        address: "1 Navy Yard\nWashington DC 20374\nUS",
        phone: "+1 202 555 0143",
        card_token: "tok_1NX2c42eZvKYlo2D",
        product: "Partition Manager",
        price_cents: 3_995,
        wants_offers: false,
    },
    OrderForm {
        name: "Alan Turing",
        email: "alan@example.net",
        address: "Bletchley Park\nMilton Keynes MK3 6EB\nGB",
        phone: "+44 1908 640404",
        card_token: "tok_1NX2cM2eZvKYlo2E",
        product: "Data Recovery Pro",
        price_cents: 6_995,
        wants_offers: true,
    },
    // Ada again, typing her address in capitals: found by its lookup token,
    // not signed up twice.
    OrderForm {
        name: "Ada Lovelace",
        email: "ADA@Example.com",
        address: "12 St James's Square\nLondon SW1Y 4JH\nGB",
        phone: "+44 20 7946 0958",
        card_token: "tok_1NX2d82eZvKYlo2G",
        product: "Partition Manager",
        price_cents: 3_995,
        wants_offers: true,
    },
    OrderForm {
        name: "Mallory",
        email: "mallory at example.com",
        address: "nowhere",
        phone: "555-0199",
        card_token: "tok_1NX2cZ2eZvKYlo2F",
        product: "Data Recovery Pro",
        price_cents: 6_995,
        wants_offers: true,
    },
];

/// The mail delivery service that sends mail on the shop's behalf.
#[derive(Default)]
struct MailDelivery {
    sent: AtomicU32,
}

impl MailDelivery {
    /// Stands in for the mail service's API.
    fn send(&self, to: &EmailAddress, subject_line: &str) {
        // A real client hands `to.expose_secret()` to the provider's API.
        let _ = (to, subject_line);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }
}

impl Recipient for MailDelivery {
    type Role = Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

/// Everything the shop works with.
struct Shop {
    db: Store,
    opened: support::StoreShop,
    payments: support::PaymentProcessor,
    mail: MailDelivery,
}

/// A validated order form: typed values, nothing collected yet.
struct ParsedForm {
    name: FullName,
    email: EmailAddress,
    address: PostalAddress,
    phone: PhoneNumber,
    card_token: PaymentToken,
}

/// A customer's details, collected for the purchase they are making: a
/// whole record, sealed in one call into the `customers` row, the email's
/// lookup token beside it.
#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    email: PersonalInfo<EmailAddress, Transaction>,
    address: PersonalInfo<PostalAddress, Transaction>,
    phone: PersonalInfo<PhoneNumber, Transaction>,
}

/// The shop's own tables, in `d`'s column types: personal fields are
/// `Sealed` values (`BLOB` on SQLite, `BYTEA` on PostgreSQL), and
/// `email_index` holds the email's lookup token, the only way to find a
/// customer by email.
fn shop_tables(d: Dialect) -> String {
    let (bytes, key) = (d.bytes(), d.serial_key());
    format!(
        "
CREATE TABLE IF NOT EXISTS customers (
    subject     {bytes} PRIMARY KEY,   -- a random id, not derived from any value
    name        {bytes} NOT NULL,      -- sealed envelopes
    email       {bytes} NOT NULL,
    email_index {bytes},               -- LookupToken<EmailAddress>
    address     {bytes} NOT NULL,
    phone       {bytes} NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_email ON customers (email_index);
CREATE TABLE IF NOT EXISTS order_numbers (n {key});
CREATE TABLE IF NOT EXISTS orders (
    id      {key},
    subject {bytes} NOT NULL REFERENCES customers (subject),
    record  {bytes} NOT NULL,          -- sealed purchase record
    charge  TEXT NOT NULL              -- the processor's charge id
);
"
    )
}

const HELP: &str = "\
checkout: a shop takes four orders, charges, mails, erases one customer and
rotates the keys after the erasure

usage: checkout [--db PATH | --database-url URL --files PATH]
";

fn main() -> ExitCode {
    let database = match parse_args() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("checkout: {e}\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match run(&database) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checkout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(database: &Database) -> Result<(), BoxError> {
    let shop = open_shop(database)?;
    println!("database: {}", database.describe());

    let mut customers = Vec::new();
    for form in &ORDERS {
        let parsed = match parse_form(form) {
            Ok(p) => p,
            // The message names the field and the problem, never the value.
            Err(e) => {
                println!("order refused: {e}");
                continue;
            }
        };
        customers.push(place_order(&shop, parsed, form)?);
    }
    println!(
        "{} orders placed; {} cards charged through the payment processor",
        customers.len(),
        shop.payments.charges()
    );
    println!(
        "{} order confirmations sent as service notices",
        shop.mail.sent.load(Ordering::Relaxed)
    );

    let (sent, skipped) = send_promotion(&shop)?;
    println!("promotional mail: {sent} sent, {skipped} skipped (no live consent)");

    // The returning customer asks to be forgotten.
    let leaving = customers.last().ok_or("no order was placed")?;
    erase_customer(&shop, *leaving, ORDERS[3].email)?;
    rotate_keys(&shop)?;

    // Clean shutdown: the stream's head, signed, goes to the checkpoint
    // directory outside the database; a verifier needs only the public key.
    let signed = shop.opened.guard.sign()?;
    let head = signed.checkpoint();
    println!(
        "audit stream {}: {} events in pp_audit_log",
        signed.stream(),
        head.seq()
    );
    println!("audit head: {} {}", head.seq(), support::hex(head.head()));
    println!(
        "checkpoints: {}",
        shop.opened.store.checkpoint_store().path().display()
    );
    println!("public key: {}", shop.opened.public_key);
    Ok(())
}

/// `--db PATH`, `--database-url URL`, or a new SQLite file in the temp
/// directory.
fn parse_args() -> Result<Database, BoxError> {
    let mut parser = lexopt::Parser::from_env();
    let mut database = support::DatabaseArgs::default();
    while let Some(arg) = parser.next()? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => support::print_help_and_exit(
                &format!("{HELP}\noptions:\n{}", support::DATABASE_HELP),
            ),
            lexopt::Arg::Long(flag) => {
                let flag = flag.to_owned();
                database.take(&flag, &mut parser)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    database.database(|| {
        let unique = format!(
            "privacy-pledge-checkout-{}-{}.db",
            std::process::id(),
            Timestamp::now().unix_nanos()
        );
        Some(std::env::temp_dir().join(unique))
    })
}

/// Opens the database, its keys, consents and audit stream, and builds the
/// custodian. Several processes may run this on one database at once.
fn open_shop(database: &Database) -> Result<Shop, BoxError> {
    let opened = support::open_shop_on(database)?;
    // Run once, under a lock, however many processes start together.
    let tables = shop_tables(opened.store.dialect());
    opened.store.migrate("checkout", &[&tables])?;
    Ok(Shop {
        db: opened.store.clone(),
        opened,
        payments: support::PaymentProcessor::default(),
        mail: MailDelivery::default(),
    })
}

/// Validates every field before anything is collected, so a bad form leaves
/// no trace but its refusal.
fn parse_form(form: &OrderForm) -> Result<ParsedForm, InvalidData> {
    Ok(ParsedForm {
        name: FullName::parse(form.name)?,
        email: EmailAddress::parse(form.email)?,
        address: PostalAddress::parse(form.address)?,
        phone: PhoneNumber::parse(form.phone)?,
        card_token: PaymentToken::parse(form.card_token)?,
    })
}

/// Takes one order: finds a returning customer by email or signs a new one
/// up, then charges, stores the order, confirms, and notes consent.
fn place_order(shop: &Shop, form: ParsedForm, order: &OrderForm) -> Result<SubjectId, BoxError> {
    // Returning customer? The email's lookup token finds their row; the
    // address itself is never compared, stored or logged in the clear.
    let index = shop.opened.custodian.lookup_token_of(&form.email);
    let known = shop.db.query(
        "SELECT subject FROM customers WHERE email_index = $1",
        &[&index],
        |row| row.get::<SubjectId>(0),
    )?;
    if let Some(subject) = known.first() {
        match order_for(shop, *subject, &form, order) {
            // Erased by another process meanwhile: refused before anything
            // was charged, so sign them up anew.
            Err(e) if matches!(e.downcast_ref(), Some(Error::Erased { .. })) => {}
            other => return other.map(|()| *subject),
        }
    }
    let subject = sign_up(shop, &form)?;
    order_for(shop, subject, &form, order)?;
    Ok(subject)
}

/// The order itself, for `subject`: the purchase is sealed first (refused
/// for an erased customer before anything is charged), then paid, stored,
/// confirmed.
fn order_for(
    shop: &Shop,
    subject: SubjectId,
    form: &ParsedForm,
    order: &OrderForm,
) -> Result<(), BoxError> {
    let c = &shop.opened.custodian;
    let email: PersonalInfo<EmailAddress, Transaction> = c.collect(subject, form.email.clone())?;
    let token: PersonalInfo<PaymentToken, Transaction> =
        c.collect(subject, form.card_token.clone())?;
    let order_id = next_order_id(&shop.db)?;
    let amount = Amount::new(order.price_cents, "USD")?;
    let purchase = PurchaseRecord::new(&order_id, order.product, amount, c.today())?;
    let purchase: PersonalInfo<PurchaseRecord, Transaction> = c.collect(subject, purchase)?;
    let sealed = c.seal(&purchase)?;

    let charge = charge_card(shop, &purchase, &token)?;
    shop.db.execute(
        "INSERT INTO orders (subject, record, charge) VALUES ($1, $2, $3)",
        &[&subject, &sealed, &charge],
    )?;
    send_confirmation(shop, email)?;
    if order.wants_offers {
        // The form's "send me offers" box: consent, recorded and audited
        // (refused if another process erased the customer meanwhile: the
        // order stands, and there is no one left to mail).
        match c.consents().grant::<Promotion>(subject) {
            Err(Error::Erased { .. }) => {}
            other => other?,
        }
    }
    Ok(())
}

/// A new customer: every field collected for the purchase and sealed into
/// `customers`, with the email's lookup token as the index. Nothing in the
/// row is readable without the customer's key.
fn sign_up(shop: &Shop, form: &ParsedForm) -> Result<SubjectId, BoxError> {
    let c = &shop.opened.custodian;
    // A new id: its first key is made without reading the key store.
    let subject = c.new_subject()?;
    // Collected for the purchase: from here on each value carries its purpose.
    let customer = Customer {
        name: c.collect(subject, form.name.clone())?,
        email: c.collect(subject, form.email.clone())?,
        address: c.collect(subject, form.address.clone())?,
        phone: c.collect(subject, form.phone.clone())?,
    };
    // One audited seal per field, and the email's lookup token.
    let row = c.seal_record(&customer)?;
    shop.db.execute(
        "INSERT INTO customers (subject, name, email, email_index, address, phone)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &row.subject,
            &row.name,
            &row.email,
            &row.email_lookup,
            &row.address,
            &row.phone,
        ],
    )?;
    Ok(subject)
}

/// The processor gets the amount and the card token; each hand-over is
/// recorded with the processor's name before it happens.
fn charge_card(
    shop: &Shop,
    purchase: &PersonalInfo<PurchaseRecord, Transaction>,
    token: &PersonalInfo<PaymentToken, Transaction>,
) -> Result<String, BoxError> {
    let c = &shop.opened.custodian;
    let amount = c.disclose(purchase, &shop.payments, |p| p.amount())?;
    let charge = c.disclose(token, &shop.payments, |t| shop.payments.charge(t, amount))?;
    Ok(charge)
}

/// The order confirmation is a service notice: a purpose compatible with the
/// purchase, so it needs no consent (R6, R7).
fn send_confirmation(
    shop: &Shop,
    email: PersonalInfo<EmailAddress, Transaction>,
) -> Result<(), BoxError> {
    let notice: PersonalInfo<EmailAddress, ServiceNotice> =
        shop.opened.custodian.repurpose(email)?;
    shop.opened.custodian.disclose(&notice, &shop.mail, |to| {
        shop.mail.send(to, "Your order is confirmed")
    })?;
    Ok(())
}

/// Mails an offer to every customer with live consent for `Promotion`.
/// Returns (sent, skipped).
fn send_promotion(shop: &Shop) -> Result<(usize, usize), BoxError> {
    let c = &shop.opened.custodian;
    let rows = shop.db.query(
        "SELECT subject, email FROM customers ORDER BY subject",
        &[],
        |row| {
            let email: Sealed<EmailAddress, Transaction> = row.get(1)?;
            Ok((row.get::<SubjectId>(0)?, email))
        },
    )?;
    let (mut sent, mut skipped) = (0, 0);
    for (subject, sealed) in rows {
        let mail = || -> Result<(), Error> {
            let proof = c.consent_proof::<Promotion>(subject)?;
            let email = c.open(&sealed)?;
            let email: PersonalInfo<EmailAddress, Promotion> =
                c.repurpose_with_consent(email, &proof)?;
            c.disclose(&email, &shop.mail, |to| shop.mail.send(to, "Summer sale"))
        };
        match mail() {
            Ok(()) => sent += 1,
            // No live consent (never given, withdrawn, or the customer was
            // erased, here or by another process meanwhile): no mail.
            Err(Error::NoConsent { .. } | Error::Erased { .. }) => skipped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((sent, skipped))
}

/// Erases a customer by destroying their key, applies the erasure receipt
/// to the email index, then shows that their row, still in the table, no
/// longer opens and that their email no longer finds them.
fn erase_customer(shop: &Shop, subject: SubjectId, email: &str) -> Result<(), BoxError> {
    let c = &shop.opened.custodian;
    let receipt = c.erase(subject)?;
    for token in receipt.lookup_tokens() {
        shop.db.execute(
            "UPDATE customers SET email_index = NULL WHERE email_index = $1",
            &[token],
        )?;
    }
    let names = shop.db.query(
        "SELECT name FROM customers WHERE subject = $1",
        &[&subject],
        |row| row.get::<Sealed<FullName, Transaction>>(0),
    )?;
    let name = names
        .first()
        .ok_or("the erased customer's row is missing")?;
    let found = shop.db.query(
        "SELECT subject FROM customers WHERE email_index = $1 AND subject = $2",
        &[&c.lookup_token_of(&EmailAddress::parse(email)?), &subject],
        |row| row.get::<SubjectId>(0),
    )?;
    match c.open(name) {
        // (Erased at the same moment by another process, which clears the
        // index itself: this receipt is empty.)
        Err(e @ Error::Erased { .. }) if found.is_empty() || receipt.generations().is_empty() => {
            // Named by its keyed tag: a customer id is an identifier, and
            // this output is a log.
            println!(
                "erased customer {} ({} destroyed, {} cleared); opening their row now fails: {e}; their email finds no one",
                c.subject_tag(subject),
                count(receipt.generations().len(), "key generation", "key generations"),
                count(receipt.lookup_tokens().len(), "index entry", "index entries"),
            );
            Ok(())
        }
        Err(Error::Erased { .. }) => Err("an erased customer's email still finds them".into()),
        Ok(_) => Err("an erased customer's row still opens".into()),
        Err(e) => Err(e.into()),
    }
}

/// The maintenance step after erasures: until it has run, a copy of the
/// key table taken before the erasure (a database backup) still holds the
/// erased customer's key, wrapped under a key-encryption-key version that
/// exists. Afterwards every key in such a copy is wrapped under a version
/// that is wiped everywhere (keep no older copy of `PATH.key`).
fn rotate_keys(shop: &Shop) -> Result<(), BoxError> {
    // Another process of the shop may be rotating at this moment: wait for
    // it, then rotate once more, so that this process's erasures are covered.
    let done = shop
        .opened
        .custodian
        .rotate_after_erasures_waiting(Duration::from_secs(60))?;
    let retired = done
        .retired()
        .iter()
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "keys rotated after the erasure: {} rewrapped under key-encryption key v{}, {} retired and wiped{}; a copy of the key table from before this step opens nothing",
        count(done.rewrapped(), "customer key", "customer keys"),
        done.version(),
        if retired.is_empty() { "none" } else { &retired },
        if done.covers_earlier_copies() {
            ""
        } else {
            " (a derived version: copies from before still open with the master secret)"
        },
    );
    Ok(())
}

/// The next order number, `ORD-1001` onwards.
fn next_order_id(db: &Store) -> Result<String, BoxError> {
    // A number drawn from the database, so processes running at once never
    // hand out the same one.
    let rows = db.query(
        "INSERT INTO order_numbers DEFAULT VALUES RETURNING n",
        &[],
        |row| row.get::<i64>(0),
    )?;
    let n = rows.first().ok_or("no order number")?;
    Ok(format!("ORD-{}", 1000 + n))
}

/// `n` and the noun for it: "1 customer key", "2 customer keys".
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
