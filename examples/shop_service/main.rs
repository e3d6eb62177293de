//! The shop as an HTTP JSON service (axum on tokio) over the crate's
//! SQLite store, or PostgreSQL with `--database-url`.
//!
//! ```text
//! cargo run --example shop_service -- [--port 8080] [--db PATH | --database-url URL --files PATH]
//! curl -s -XPOST localhost:8080/customers -d '{"name":"Ada Lovelace","email":"ada@example.com",
//!      "address":"12 St James'"'"'s Square\nLondon SW1Y 4JH\nGB","phone":"+44 20 7946 0958"}'
//! ```
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /customers` | `{"name","email","address","phone"}` | `201 {"customer": ID}` — each value collected for `Transaction` and sealed into `customers`, the email's lookup token in `customers.email_index`; `409` if the email is taken |
//! | `POST /login` | `{"email"}` | `200 {"customer": ID}` or `404`: found by `custodian.lookup_token_of`, nothing collected or written |
//! | `POST /orders` | `{"customer","product","price_cents","currency","card_token"}` | `201 {"order","charge"}`: the purchase sealed into `orders`, amount and card token disclosed to the payment processor; `404`, `410` (erased) |
//! | `PUT`, `DELETE /customers/{id}/newsletter` | — | `200 {"newsletter": true/false}`: consent granted / withdrawn |
//! | `GET /customers/{id}/report` | — | `200`: the customer's report (`custodian.subject_report` over a verified trail) as JSON |
//! | `DELETE /customers/{id}` | — | `200 {"erased_at","index_entries_removed"}`: erased, the receipt's lookup tokens removed from the index |
//! | `GET /healthz` | — | `200 {"status":"ok"}` |
//!
//! Bad input is a `400` (`409`, `404`, `410` where they fit) with
//! `{"error": "...", "field": "..."}`: the field and the rule it broke
//! ("invalid email address: there is no '@'"), never the value. A field
//! the route does not take is refused the same way, by its name
//! (`{"newsletter": true}` at sign-up is a `400` naming `newsletter`, not a
//! customer who silently got no newsletter). Every other error has the same
//! `{"error": "..."}` shape: an unknown route is a `404`, a method the
//! route does not have a `405` (with `Allow`), a body sent without
//! `Content-Type: application/json` a `415`, one that is not JSON or not an
//! object a `400`, and a body over **16 KiB** (`app::BODY_LIMIT`) a `413`,
//! refused before it is parsed. No error repeats what the body held. A failing
//! audit sink or key store is a `503` with `"rule": "R10"`, and nothing
//! happened: the custodian refuses a use before it takes place, so no row
//! is written and nothing reaches the payment processor. A consent row
//! that does not authenticate (edited in the database) is a `503` with
//! `"rule": "R7"`: consent counts as not given, and nothing changes. The
//! access log (standard error) has method, route template, status and time,
//! and for an error its cause and the customer's keyed tag
//! (`Custodian::subject_tag`, 8 hex digits): no value, no customer id.
//!
//! The service has no authentication and no TLS. `POST /login` is not
//! authentication either: it shows an email found through its lookup
//! token, and answers the customer id to whoever knows the address, while
//! the routes under `/customers/{id}` trust that id (report, erasure). A
//! proxy in front cannot fix that; a real service authenticates the
//! customer (a password, a link sent to the address) before it answers an
//! id, and ties those routes to the session.
//! The report endpoint returns the customer's own values to whoever asks
//! with the customer's id.
//!
//! # Calling a synchronous crate from async handlers
//!
//! Every custodian and store call blocks: the key store, consent store and
//! audit sink do SQLite or PostgreSQL I/O, and the audit sink returns only
//! once its event is committed (group commit: one `fsync` for many
//! concurrent callers, which is also why a call may wait). So a handler
//! parses its input on the async worker, then runs all of the request's
//! crate and database calls in **one** `tokio::task::spawn_blocking`
//! closure (`Shop::run` in `app.rs`) and awaits it:
//!
//! - the async workers never wait for a disk, so `/healthz` and every other
//!   request keep being served while a commit is slow (tested with a sink
//!   that sleeps 2 s on a runtime of 2 workers);
//! - a spawned closure runs to its end even if the client disconnects, so
//!   no request stops half-way between its audited steps;
//! - many requests waiting at once is what makes group commit pay off:
//!   tokio's blocking pool (up to 512 threads) lets them wait together;
//! - with `--database-url`, the synchronous `postgres` client under
//!   `PgStore` runs a runtime of its own and panics ("Cannot start a
//!   runtime from within a runtime") if it is called, or its last handle
//!   dropped, on an async worker: open, use and drop the store off them.
//!
//! `tokio::task::block_in_place` also keeps the executor running, and was
//! as fast under load, but it panics on a current-thread runtime (the
//! default of `#[tokio::test]`) and holds a worker per call; prefer
//! `spawn_blocking`. Never call the crate directly in an `async fn`.
//!
//! Exit status: 0 after a clean shutdown (Ctrl-C or SIGTERM; the audit
//! stream's head is signed into the checkpoint directory first), 1 when
//! the service could not start or failed, 2 for bad arguments. The shop
//! holds a `store::CheckpointGuard`, so the head is signed on every way out
//! once the shop is open — a failure to serve, or a panic, included — and
//! a verifier with the public key vouches for the stream to its last entry
//! (tested by stopping the program with SIGTERM).

#![forbid(unsafe_code)]

#[path = "../support/mod.rs"]
mod support;

mod app;

use std::process::ExitCode;
use std::sync::Arc;

use support::{BoxError, Database};

const HELP: &str = "\
shop_service: the shop as an HTTP JSON service on 127.0.0.1

usage: shop_service [--port PORT] [--db PATH | --database-url URL --files PATH]";

struct Args {
    database: Database,
    port: u16,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shop_service: {e}\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shop_service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop_service: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, BoxError> {
    use lexopt::Arg::{Long, Short};
    use lexopt::ValueExt;
    let mut parser = lexopt::Parser::from_env();
    let mut database = support::DatabaseArgs::default();
    let mut port = 8080;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => support::print_help_and_exit(&format!(
                "{HELP}\n\noptions:\n  --port PORT          the port on 127.0.0.1 (default 8080; 0: any free \
                 port)\n{}\n\nWithout --db or --database-url the shop uses a new SQLite file in the \
                 temp directory.\nExit status: 0 after a clean shutdown (Ctrl-C, SIGTERM), 1 failed, \
                 2 bad arguments.",
                support::DATABASE_HELP
            )),
            Long("port") => port = parser.value()?.parse()?,
            Long(flag) => {
                let flag = flag.to_owned();
                database.take(&flag, &mut parser)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let database = database.database(|| {
        let unique = format!(
            "privacy-pledge-shop-{}-{}.db",
            std::process::id(),
            privacy_pledge::time::Timestamp::now().unix_nanos()
        );
        Some(std::env::temp_dir().join(unique))
    })?;
    Ok(Args { database, port })
}

async fn serve(args: Args) -> Result<(), BoxError> {
    let database = args.database.clone();
    let shop = tokio::task::spawn_blocking(move || app::Shop::open(&database)).await??;
    let shop = Arc::new(shop);
    let served = listen(&args, shop.clone()).await;
    // Shutdown, clean (Ctrl-C, SIGTERM) or not: the stream's head, signed,
    // goes to the checkpoint directory outside the database; a verifier
    // needs only the public key. The shop is dropped off the async workers
    // (the synchronous `postgres` client must be), and its checkpoint
    // guard signs once more on the way, should this signature fail.
    let (dir, public_key) = {
        let (store, key) = shop.checkpoints();
        (store.path().to_owned(), key)
    };
    let signed = tokio::task::spawn_blocking(move || shop.shut_down()).await?;
    served?;
    let signed = signed?;
    println!(
        "audit stream {}: head {} signed into {}",
        signed.stream(),
        signed.checkpoint().seq(),
        dir.display()
    );
    println!("public key: {public_key}");
    Ok(())
}

/// Serves `shop` until Ctrl-C or SIGTERM.
async fn listen(args: &Args, shop: Arc<app::Shop>) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("database: {}", args.database.describe());
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app::router(shop))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix: whichever comes first.
async fn shutdown_signal() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let on_ctrl_c = tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = on_ctrl_c.send(()).await;
        }
    });
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        let on_term = tx.clone();
        tokio::spawn(async move {
            term.recv().await;
            let _ = on_term.send(()).await;
        });
    }
    drop(tx);
    // No signal can be watched at all: serve until the process is killed.
    if rx.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}
