//! Load figure for the shop service: starts `shop_service`'s app in-process
//! on 127.0.0.1 and drives it over HTTP with many concurrent clients.
//!
//! ```text
//! cargo run --release --example shop_load -- [--db PATH | --database-url URL --files PATH]
//!     [--clients 64] [--seconds 10] [--customers 256] [--workers 2]
//! ```
//!
//! Phases: `POST /customers` (signs up `--customers` customers), then
//! `GET /customers/{id}/report`, orders and reports together (three orders
//! to one report, on about the trail the sign-ups left; a second line gives
//! the orders' own latency), `POST /orders` and the reports again, each
//! for `--seconds` (and until the requests under way are answered), with
//! `--clients` connections each sending one request after another. A
//! report verifies the whole audit trail, so its rate depends on the
//! trail's length (the last column: entries when the phase began).
//! For each phase it prints requests per second, latency (p50, p99), and
//! where the service's time went: the share inside the crate (custodian
//! calls with their key store, consent store and audit sink: the blocking
//! closures' time minus the shop's own SQL) and the share in the shop's own
//! SQL, both of the time from routing to response.
//!
//! The server runs on a multi-thread runtime of `--workers` threads (default
//! 2), the clients on a runtime of one thread of their own. Traffic goes to
//! 127.0.0.1 only; each phase stops after its time (and at most 1,000,000
//! requests). The access log is off.
//!
//! Ctrl-C or SIGTERM stops the run: the clients send nothing more, the
//! requests under way are answered, and the audit stream's head is signed
//! (the shop's `CheckpointGuard` signs it on every way out), so the trail
//! the run left verifies to its end with the public key.
//!
//! Exit status: 0 done, 1 failed or interrupted (a request answered with an
//! error included), 2 bad arguments.

#![forbid(unsafe_code)]

#[path = "support/mod.rs"]
mod support;

#[path = "shop_service/app.rs"]
mod app;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::{BoxError, Database};

const HELP: &str = "\
shop_load: requests per second of the shop service, in-process on 127.0.0.1

usage: shop_load [--db PATH | --database-url URL --files PATH] [--clients N]
                 [--seconds S] [--customers N] [--workers N]";

/// No phase sends more than this many requests, whatever its time.
const MAX_REQUESTS: usize = 1_000_000;

struct Args {
    database: Database,
    clients: usize,
    seconds: u64,
    customers: usize,
    workers: usize,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shop_load: {e}\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, BoxError> {
    use lexopt::Arg::{Long, Short};
    use lexopt::ValueExt;
    let mut parser = lexopt::Parser::from_env();
    let mut database = support::DatabaseArgs::default();
    let (mut clients, mut seconds, mut customers, mut workers) = (64, 10, 256, 2);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => support::print_help_and_exit(&format!(
                "{HELP}\n\noptions:\n{}\n  --clients N          concurrent clients (default 64)\n  \
                 --seconds S          length of the orders and reports phases (default 10)\n  \
                 --customers N        customers signed up first (default 256)\n  \
                 --workers N          the server's async worker threads (default 2)\n\n\
                 Without --db or --database-url: a new SQLite file in the temp directory.\n\
                 Exit status: 0 done, 1 failed, 2 bad arguments.",
                support::DATABASE_HELP
            )),
            Long("clients") => clients = parser.value()?.parse()?,
            Long("seconds") => seconds = parser.value()?.parse()?,
            Long("customers") => customers = parser.value()?.parse()?,
            Long("workers") => workers = parser.value()?.parse()?,
            Long(flag) => {
                let flag = flag.to_owned();
                database.take(&flag, &mut parser)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if clients == 0 || customers == 0 || workers == 0 || !(1..=600).contains(&seconds) {
        return Err(
            "--clients, --customers and --workers must be at least 1, --seconds 1 to 600".into(),
        );
    }
    let database = database.database(|| {
        let unique = format!(
            "privacy-pledge-shop-load-{}-{}.db",
            std::process::id(),
            privacy_pledge::time::Timestamp::now().unix_nanos()
        );
        Some(std::env::temp_dir().join(unique))
    })?;
    Ok(Args {
        database,
        clients,
        seconds,
        customers,
        workers,
    })
}

fn run(args: &Args) -> Result<(), BoxError> {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    let shop = Arc::new(app::Shop::open(&args.database)?.with_log(|_| {}));
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app::router(shop.clone());
    server.spawn(async move { axum::serve(listener, router).await });
    // Ctrl-C or SIGTERM: the clients stop sending (watched on the server's
    // runtime, which runs all along).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        server.spawn(async move {
            interrupted().await;
            stop.store(true, Ordering::Relaxed);
        });
    }

    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let load = Arc::new(Load {
        http: Client::builder(TokioExecutor::new()).build_http(),
        base,
        clients: args.clients,
        stop,
    });
    let outcome = phases(args, &clients, &load, &shop);
    // However the phases ended — done, failed or interrupted — the server
    // stops and the stream's head is signed.
    drop(server);
    let signed = shop.shut_down();
    outcome?;
    signed?;
    Ok(())
}

/// The sign-ups, then the reports, orders and reports again.
fn phases(
    args: &Args,
    clients: &tokio::runtime::Runtime,
    load: &Arc<Load>,
    shop: &Arc<app::Shop>,
) -> Result<(), BoxError> {
    println!(
        "database: {}; {} clients, {} server workers, {} s a phase",
        args.database.describe(),
        args.clients,
        args.workers,
        args.seconds
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "phase", "requests", "req/s", "p50 ms", "p99 ms", "crate", "shop SQL", "trail"
    );

    // Sign-ups: a fixed number.
    let forms: Vec<String> = (0..args.customers).map(|i| form(i).to_string()).collect();
    let signed_up = phase(
        clients,
        load,
        shop,
        "POST /customers",
        None,
        Arc::new(move |i| {
            forms
                .get(i)
                .map(|f| (Method::POST, "/customers".to_owned(), f.clone()))
        }),
    )?;
    let ids: Arc<Vec<String>> = Arc::new(
        signed_up
            .iter()
            .map(|r| r["customer"].as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("a sign-up answered no customer id")?,
    );

    // Each report verifies the whole trail, so it is measured twice: on the
    // trail the sign-ups left, and on the one the orders grew.
    let time = Some(Duration::from_secs(args.seconds));
    let report = |ids: Arc<Vec<String>>| -> Arc<Next> {
        Arc::new(move |i| {
            let path = format!("/customers/{}/report", ids[i % ids.len()]);
            Some((Method::GET, path, String::new()))
        })
    };
    phase(
        clients,
        load,
        shop,
        "GET /customers/{id}/report",
        time,
        report(ids.clone()),
    )?;
    // Orders while reports read the trail: an order's audit commit should
    // not wait behind a report's trail read.
    let reports = report(ids.clone());
    let customers = ids.clone();
    phase(
        clients,
        load,
        shop,
        "POST /orders + reports (3:1)",
        time,
        Arc::new(move |i| {
            if i % 4 == 3 {
                return reports(i / 4);
            }
            let order = json!({"customer": customers[i % customers.len()], "product": "Data Recovery Pro",
                           "price_cents": 6_995, "currency": "USD", "card_token": "tok_load"});
            Some((Method::POST, "/orders".to_owned(), order.to_string()))
        }),
    )?;
    let customers = ids.clone();
    phase(
        clients,
        load,
        shop,
        "POST /orders",
        time,
        Arc::new(move |i| {
            let order = json!({"customer": customers[i % customers.len()], "product": "Data Recovery Pro",
                           "price_cents": 6_995, "currency": "USD", "card_token": "tok_load"});
            Some((Method::POST, "/orders".to_owned(), order.to_string()))
        }),
    )?;
    phase(
        clients,
        load,
        shop,
        "GET /customers/{id}/report",
        time,
        report(ids),
    )?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix: whichever comes first (never, if neither
/// can be watched).
async fn interrupted() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The request a client sends `i`-th in its phase, if any is left.
type Next = dyn Fn(usize) -> Option<(Method, String, String)> + Send + Sync;

struct Load {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    clients: usize,
    /// Set on Ctrl-C or SIGTERM: send nothing more.
    stop: Arc<AtomicBool>,
}

/// Runs one phase: `clients` loops, each taking the next request from
/// `next(i)` until it says `None` or `time` is up. Prints the phase's line;
/// returns the answers' JSON for phases without a time limit.
fn phase(
    runtime: &tokio::runtime::Runtime,
    load: &Arc<Load>,
    shop: &Arc<app::Shop>,
    name: &str,
    time: Option<Duration>,
    next: Arc<Next>,
) -> Result<Vec<Value>, BoxError> {
    let trail = trail_len(shop)?;
    let before = shop.stats();
    let counter = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = time.map(|t| start + t);
    let results = runtime.block_on(async {
        let mut loops = Vec::new();
        for _ in 0..load.clients {
            let (load, next, counter) = (load.clone(), next.clone(), counter.clone());
            loops.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while deadline.is_none_or(|d| Instant::now() < d)
                    && !load.stop.load(Ordering::Relaxed)
                {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let Some((method, path, body)) = next(i).filter(|_| i < MAX_REQUESTS) else {
                        break;
                    };
                    let post = method == Method::POST;
                    let sent = Instant::now();
                    let answer = send(&load, method, &path, body).await;
                    out.push((sent.elapsed(), post, answer));
                }
                out
            }));
        }
        let mut all = Vec::new();
        for l in loops {
            all.extend(l.await?);
        }
        Ok::<_, BoxError>(all)
    })?;
    if load.stop.load(Ordering::Relaxed) {
        return Err(format!("{name}: interrupted (Ctrl-C or SIGTERM)").into());
    }
    let elapsed = start.elapsed();
    let after = shop.stats();

    let mut latencies = Vec::new();
    let mut posts = Vec::new();
    let mut answers = Vec::new();
    for (took, post, answer) in results {
        let (status, json) = answer?;
        if !status.is_success() {
            return Err(format!("{name}: answered {status}: {json}").into());
        }
        latencies.push(took);
        if post {
            posts.push(took);
        }
        if time.is_none() {
            answers.push(json);
        }
    }
    latencies.sort();
    posts.sort();
    let pct_of = |latencies: &[Duration], p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let pct = |p: f64| pct_of(&latencies, p);
    let request = (after.request - before.request).as_secs_f64();
    let blocking = (after.blocking - before.blocking).as_secs_f64();
    let sql = (after.shop_sql - before.shop_sql).as_secs_f64();
    let share = |x: f64| {
        if request > 0.0 {
            100.0 * x / request
        } else {
            0.0
        }
    };
    println!(
        "{:<32} {:>9} {:>9.0} {:>9.1} {:>9.1} {:>7.0}% {:>7.0}% {:>8}",
        name,
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        share(blocking - sql),
        share(sql),
        trail
    );
    if !posts.is_empty() && posts.len() < latencies.len() {
        println!(
            "{:<32} {:>9} {:>9.0} {:>9.1} {:>9.1}",
            "  of which POST",
            posts.len(),
            posts.len() as f64 / elapsed.as_secs_f64(),
            pct_of(&posts, 0.50),
            pct_of(&posts, 0.99),
        );
    }
    Ok(answers)
}

async fn send(
    load: &Load,
    method: Method,
    path: &str,
    body: String,
) -> Result<(StatusCode, Value), BoxError> {
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", load.base))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = load.http.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body)?))
}

/// A sign-up form of made-up values.
fn form(i: usize) -> Value {
    json!({
        "name": format!("Load Customer {i}"),
        "email": format!("load.customer.{i}@example.org"),
        "address": format!("{} Load Street\nYork YO1 7HH\nGB", i + 1),
        "phone": format!("+44 20 7946 {:04}", i % 10_000),
    })
}

/// Entries in `pp_audit_log` (what each report verifies).
fn trail_len(shop: &app::Shop) -> Result<usize, BoxError> {
    let rows = shop
        .store()
        .query("SELECT COUNT(*) FROM pp_audit_log", &[], |r| {
            r.get::<i64>(0)
        })?;
    Ok(usize::try_from(*rows.first().ok_or("no count")?)?)
}
