//! The shop service (examples/shop_service/) started in-process on
//! 127.0.0.1:0 and driven over real HTTP: the whole customer life cycle for
//! 32 customers at once, then the audit trail checked with the public key
//! (A4) and every response body, log line and database byte searched for
//! plaintext (A1 host code using the crate as documented; A2 reading the
//! database); bad input, a failing audit sink, a slow audit write, and the
//! same life cycle on PostgreSQL when `PP_TEST_PG` is set.

#![forbid(unsafe_code)]

#[path = "../examples/support/mod.rs"]
mod support;

#[path = "../examples/shop_service/app.rs"]
mod app;
#[path = "common/examples.rs"]
mod examples;
#[path = "common/pg.rs"]
mod pg;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use privacy_pledge::audit::{
    verify_public, Action, AuditError, AuditEvent, AuditSink, CheckpointStore,
};
use privacy_pledge::SubjectId;
use serde_json::{json, Value};
use support::Database;

// ---------------------------------------------------------------------------
// The service under test

/// What a test sink does to the store's sink: fail every event, or sleep
/// 2 s once on an event of a marked subject.
#[derive(Default)]
struct Control {
    fail: AtomicBool,
    slow: Mutex<HashSet<SubjectId>>,
}

struct TestSink {
    inner: Box<dyn AuditSink>,
    control: Arc<Control>,
}

impl AuditSink for TestSink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        if self.control.fail.load(Ordering::SeqCst) {
            return Err(AuditError::new("test: the audit database is down"));
        }
        let slow = self.control.slow.lock().unwrap().remove(&event.subject());
        if slow {
            std::thread::sleep(Duration::from_secs(2));
        }
        self.inner.record(event)
    }
    fn flush(&self) -> Result<(), AuditError> {
        self.inner.flush()
    }
}

/// An answer: status, raw body, the body as JSON, and how long it took.
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    raw: Bytes,
    json: Value,
    took: Duration,
}

/// The service on 127.0.0.1:0, its HTTP client, and what it said: every
/// response body except the reports (which carry the customer's own
/// values, to the customer) and every log line.
struct Service {
    shop: Arc<app::Shop>,
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    control: Arc<Control>,
    log: Arc<Mutex<Vec<String>>>,
    bodies: Mutex<Vec<Bytes>>,
    dir: PathBuf,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Service {
    async fn start(database: Database, dir: PathBuf) -> Arc<Service> {
        let control = Arc::new(Control::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (control.clone(), log.clone());
        let shop = tokio::task::spawn_blocking(move || {
            app::Shop::open_with(&database, |inner| Box::new(TestSink { inner, control: c }))
                .map(|shop| shop.with_log(move |line| l.lock().unwrap().push(line.to_owned())))
        })
        .await
        .unwrap()
        .unwrap();
        let shop = Arc::new(shop);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app::router(shop.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { drop(stopped.await) })
                .await
        });
        Arc::new(Service {
            shop,
            base,
            http: Client::builder(TokioExecutor::new()).build_http(),
            control,
            log,
            bodies: Mutex::new(Vec::new()),
            dir,
            stop: Mutex::new(Some(stop)),
        })
    }

    /// Stops the server and drops the shop on a blocking thread (the
    /// synchronous `postgres` client panics if dropped inside a runtime),
    /// then removes the test's files.
    async fn stop(self: Arc<Self>) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        // The server task lets go of its handle on the shop once stopped.
        let stopping = Instant::now();
        while Arc::strong_count(&self.shop) > 1 {
            assert!(
                stopping.elapsed() < Duration::from_secs(10),
                "the server did not stop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::task::spawn_blocking(move || {
            let dir = self.dir.clone();
            drop(self);
            let _ = std::fs::remove_dir_all(dir);
        })
        .await
        .unwrap();
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map_or(Bytes::new(), |b| Bytes::from(b.to_string()));
        self.send(method, path, body).await
    }

    async fn send(&self, method: Method, path: &str, body: Bytes) -> Reply {
        self.send_as(method, path, body, Some("application/json"))
            .await
    }

    /// Sends `body` with `content_type` (none: no header).
    async fn send_as(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = content_type {
            request = request.header(header::CONTENT_TYPE, t);
        }
        let request = request.body(Full::new(body)).unwrap();
        let start = Instant::now();
        let response = self.http.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let json_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t == "application/json");
        let raw = response.into_body().collect().await.unwrap().to_bytes();
        let took = start.elapsed();
        assert!(json_type, "{path}: {status} without a JSON body");
        if !path.ends_with("/report") {
            self.bodies.lock().unwrap().push(raw.clone());
        }
        let json = serde_json::from_slice(&raw).unwrap();
        Reply {
            status,
            headers,
            raw,
            json,
            took,
        }
    }

    /// Rows in `table`. Off the async workers, like every store call (the
    /// synchronous `postgres` client refuses to run inside a runtime).
    async fn count(&self, table: &str) -> usize {
        let (shop, sql) = (self.shop.clone(), format!("SELECT COUNT(*) FROM {table}"));
        tokio::task::spawn_blocking(move || {
            let rows = shop.store().query(&sql, &[], |r| r.get::<i64>(0)).unwrap();
            usize::try_from(rows[0]).unwrap()
        })
        .await
        .unwrap()
    }

    async fn trail(&self) -> Vec<AuditEvent> {
        let shop = self.shop.clone();
        tokio::task::spawn_blocking(move || shop.store().trail().unwrap())
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------------------
// Customers

/// One customer's form values, unique to this run (`tag`), so that finding
/// one anywhere cannot be a coincidence.
#[derive(Clone)]
struct Person {
    name: String,
    email: String,
    street: String,
    address: String,
    phone: String,
    phone_e164: String,
    card: String,
}

impl Person {
    fn new(tag: &str, i: usize) -> Person {
        let street = format!("{} Larkspur Row {tag}", 10 + i);
        Person {
            name: format!("Quentin Marlowe-{tag}{i:02}"),
            email: format!("q.marlowe.{tag}{i:02}@example.org"),
            address: format!("{street}\nYork YO1 7HH\nGB"),
            street,
            phone: format!("+44 20 7946 0{i:03}"),
            phone_e164: format!("+4420794600{i:02}"),
            card: format!("tok_{tag}card{i:02}"),
        }
    }

    fn form(&self) -> Value {
        json!({"name": self.name, "email": self.email, "address": self.address, "phone": self.phone})
    }

    /// What must never appear outside the customer's own report.
    fn secrets(&self) -> Vec<&str> {
        vec![
            &self.name,
            &self.email,
            &self.street,
            &self.phone,
            &self.phone_e164,
            &self.card,
        ]
    }
}

fn tag() -> String {
    SubjectId::random().to_string()[..8].to_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The whole life cycle of one customer, as a client would drive it.
async fn life_cycle(service: Arc<Service>, person: Person, others: Vec<Person>) -> String {
    let s = &service;
    let id = {
        let r = s
            .call(Method::POST, "/customers", Some(person.form()))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json["customer"].as_str().unwrap().to_owned()
    };
    // Login by the email as typed in other case.
    let login = json!({"email": person.email.to_uppercase()});
    let r = s.call(Method::POST, "/login", Some(login.clone())).await;
    assert_eq!(
        (r.status, r.json["customer"].as_str()),
        (StatusCode::OK, Some(&id[..]))
    );
    // A second sign-up with the same email is refused, naming no value.
    let r = s
        .call(Method::POST, "/customers", Some(person.form()))
        .await;
    assert_eq!(
        (r.status, &r.json["field"]),
        (StatusCode::CONFLICT, &json!("email"))
    );

    let mut orders = Vec::new();
    for (product, cents) in [("Data Recovery Pro", 6_995), ("Partition Manager", 3_995)] {
        let order = json!({"customer": id, "product": product, "price_cents": cents,
                           "currency": "USD", "card_token": person.card});
        let r = s.call(Method::POST, "/orders", Some(order)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        assert!(r.json["charge"].as_str().unwrap().starts_with("ch_"));
        orders.push(r.json["order"].as_str().unwrap().to_owned());
    }

    let newsletter = format!("/customers/{id}/newsletter");
    let r = s.call(Method::PUT, &newsletter, None).await;
    assert_eq!(
        (r.status, &r.json),
        (StatusCode::OK, &json!({"newsletter": true}))
    );
    let r = s.call(Method::DELETE, &newsletter, None).await;
    assert_eq!(
        (r.status, &r.json),
        (StatusCode::OK, &json!({"newsletter": false}))
    );

    // The report: the customer's own values, and nobody else's.
    let report = format!("/customers/{id}/report");
    let r = s.call(Method::GET, &report, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let values: Vec<&str> = r.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| rec["value"].as_str().expect("every value is shown"))
        .collect();
    assert_eq!(values.len(), 6, "4 fields and 2 orders");
    assert!(values.contains(&person.name.as_str()));
    assert!(values.contains(&person.email.as_str()));
    assert!(values.contains(&person.phone_e164.as_str()));
    assert!(values.iter().any(|v| v.starts_with(&person.street)));
    for order in &orders {
        assert!(values.iter().any(|v| v.contains(order.as_str())));
    }
    // The card token was handed to the processor, never stored.
    assert!(!contains(&r.raw, &person.card));
    for other in &others {
        for secret in other.secrets() {
            assert!(!contains(&r.raw, secret), "another customer's value");
        }
    }
    let disclosures = r.json["disclosures"].as_array().unwrap();
    assert_eq!(disclosures.len(), 4, "amount and token, twice");
    assert!(disclosures
        .iter()
        .all(|d| d["recipient"] == "payment processor" && d["role"] == "Processor"));
    let consents = &r.json["consents"][0];
    assert_eq!(
        (&consents["purpose"], &consents["granted"]),
        (&json!("Newsletter"), &json!(false))
    );

    // Erasure: the receipt's lookup token leaves the index.
    let r = s
        .call(Method::DELETE, &format!("/customers/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["index_entries_removed"], 1);
    // Login after erasure finds nothing.
    let r = s.call(Method::POST, "/login", Some(login)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The report says when; no value opens any more.
    let r = s.call(Method::GET, &report, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json["erased_at"].is_u64());
    assert!(r.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|rec| rec["value"].is_null() && rec["withheld"] == "erased"));
    for secret in person.secrets() {
        assert!(!contains(&r.raw, secret));
    }
    // Nothing more can be done for an erased customer.
    let order = json!({"customer": id, "product": "Data Recovery Pro", "price_cents": 1,
                       "currency": "USD", "card_token": person.card});
    let r = s.call(Method::POST, "/orders", Some(order)).await;
    assert_eq!(
        (r.status, &r.json["rule"]),
        (StatusCode::GONE, &json!("R11"))
    );
    let r = s.call(Method::PUT, &newsletter, None).await;
    assert_eq!(r.status, StatusCode::GONE);
    id
}

/// 32 customers through the life cycle at once, then the checks of A4
/// (the trail verifies with the public key alone, every stream vouched for
/// to its end) and of A1/A2 (no plaintext in responses, logs or rows).
/// Returns the people, for the caller's own search of the database.
async fn many_life_cycles(service: &Arc<Service>) -> Vec<Person> {
    const CUSTOMERS: usize = 32;
    let tag = tag();
    let people: Vec<Person> = (0..CUSTOMERS).map(|i| Person::new(&tag, i)).collect();
    let tasks: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let others = people
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.clone())
                .collect();
            tokio::spawn(life_cycle(service.clone(), p.clone(), others))
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    assert_eq!(service.shop.charges(), 2 * CUSTOMERS as u32);

    // A4: the trail, checked with the checkpoint public key only.
    let shop = service.shop.clone();
    tokio::task::spawn_blocking(move || shop.shut_down().unwrap())
        .await
        .unwrap();
    let trail = service.trail().await;
    let (store, public_key) = service.shop.checkpoints();
    let checkpoints = store.load().unwrap();
    let report = verify_public(&trail, &public_key, &checkpoints);
    assert!(report.is_intact(), "{report:?}");
    for stream in &report.streams {
        let head = stream.result.unwrap();
        assert_eq!(
            stream.vouched_through,
            Some(head.seq()),
            "vouched to its end"
        );
    }
    let verified = service
        .shop
        .custodian()
        .verify_trail(trail.clone())
        .unwrap();
    assert!(verified.is_fully_vouched());
    let disclosures = trail
        .iter()
        .filter(|e| e.action() == Action::Disclose)
        .filter(|e| {
            e.recipient()
                .is_some_and(|r| &*r.name == "payment processor")
        })
        .count();
    assert_eq!(disclosures, 4 * CUSTOMERS);
    let erasures = trail.iter().filter(|e| e.action() == Action::Erase).count();
    assert_eq!(erasures, CUSTOMERS);

    // A1: no response body (reports aside) and no log line holds a value;
    // the log holds no customer id either (it names route templates).
    let bodies = service.bodies.lock().unwrap();
    let log = service.log.lock().unwrap();
    assert_eq!(log.len(), CUSTOMERS * 13, "one line a request");
    for p in &people {
        for secret in p.secrets() {
            assert!(
                !bodies.iter().any(|b| contains(b, secret)),
                "a response holds a value"
            );
            assert!(
                !log.iter().any(|l| l.contains(secret)),
                "a log line holds a value"
            );
        }
    }
    for id in &ids {
        assert!(!log.iter().any(|l| l.contains(id.as_str())));
    }
    people
}

/// Every file of the test's directory (SQLite file, its `-wal`, the key,
/// checkpoints), as raw bytes: A2 reads no value in any of them.
fn assert_no_plaintext_in_files(service: &Service, people: &[Person]) {
    let mut files = 0;
    let mut stack = vec![service.dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            for p in people {
                for secret in p.secrets() {
                    assert!(
                        !contains(&bytes, secret),
                        "{} holds a value",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(
        files >= 3,
        "the database, its key and a checkpoint at least"
    );
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pp-shop-service-{test}-{}-{}",
        std::process::id(),
        tag()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start_sqlite(test: &str) -> Arc<Service> {
    let dir = temp_dir(test);
    Service::start(Database::Sqlite(dir.join("shop.db")), dir).await
}

fn assert_error(r: &Reply, status: StatusCode, field: Option<&str>, value: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert!(r.json["error"].is_string(), "{}", r.json);
    assert_eq!(r.json["field"].as_str(), field, "{}", r.json);
    assert!(
        !contains(&r.raw, value),
        "the error echoes the value: {}",
        r.json
    );
}

// ---------------------------------------------------------------------------
// Tests

/// The life cycle of 32 customers at once on SQLite: A1 (host code), A2
/// (the database file and its WAL as raw bytes), A4 (the trail with the
/// public key alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_a2_a4_life_cycle_of_32_customers_on_sqlite() {
    let service = start_sqlite("life").await;
    let people = many_life_cycles(&service).await;
    let wal = service.dir.join("shop.db-wal");
    assert!(wal.exists(), "the WAL is searched too");
    assert_no_plaintext_in_files(&service, &people);
    service.stop().await;
}

/// Bad input: a 4xx JSON error that names the field and the rule, never the
/// value, and nothing is collected (the trail does not grow) (A1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_bad_input_is_a_4xx_naming_the_field_never_the_value() {
    let s = start_sqlite("bad").await;
    let good = Person::new(&tag(), 1);
    let r = s.call(Method::POST, "/customers", Some(good.form())).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json["customer"].as_str().unwrap().to_owned();
    let before = s.trail().await.len();

    let with = |field: &str, value: Value| {
        let mut form = good.form();
        form[field] = value;
        form
    };
    for (field, value, rule) in [
        ("email", "zorblax-secret at example.com", "there is no '@'"),
        ("name", "Zorblax\u{7}Secretname", "control character"),
        ("address", "Zorblax Secret Street", "country line"),
        ("phone", "555-0199-zorblax", "international form"),
    ] {
        let r = s
            .call(Method::POST, "/customers", Some(with(field, json!(value))))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field), "zorblax");
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field), "Zorblax");
        assert!(
            r.json["error"].as_str().unwrap().contains(rule),
            "{}",
            r.json
        );
    }
    // Missing, or not a string (the number is not repeated either).
    let mut form = good.form();
    form.as_object_mut().unwrap().remove("phone");
    let r = s.call(Method::POST, "/customers", Some(form)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, Some("phone"), "zorblax");
    let r = s
        .call(
            Method::POST,
            "/customers",
            Some(with("name", json!(987_654_321))),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, Some("name"), "987654321");
    // Not JSON, or not an object: serde's message would quote it; ours does not.
    for body in [
        "zorblax-secret",
        "[\"zorblax-secret\"]",
        "{\"email\": zorblax}",
    ] {
        let r = s.send(Method::POST, "/customers", Bytes::from(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, None, "zorblax");
    }

    let order = json!({"customer": id, "product": "Data Recovery Pro", "price_cents": 6_995,
                       "currency": "USD", "card_token": "tok_zorblax"});
    let with = |field: &str, value: Value| {
        let mut o = order.clone();
        o[field] = value;
        o
    };
    for (field, value, secret) in [
        ("card_token", json!("tok zorblax secret"), "zorblax"),
        ("currency", json!("QQZ"), "QQZ"),
        ("price_cents", json!(-42_424_242), "42424242"),
        ("price_cents", json!("4242zorblax"), "zorblax"),
        ("product", json!("Zorblax\u{0}Suite"), "Zorblax"),
        ("customer", json!("zorblax-not-an-id"), "zorblax"),
    ] {
        let r = s
            .call(Method::POST, "/orders", Some(with(field, value)))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field), secret);
    }
    // A card number where the processor's token belongs: refused under R1,
    // neither collected nor charged.
    for card in [
        "4242424242424242",
        "4242 4242 4242 4242",
        "5555-5555-5555-4444",
        "tok_378282246310005",
    ] {
        let r = s
            .call(
                Method::POST,
                "/orders",
                Some(with("card_token", json!(card))),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("card_token"), card);
        for digits in ["4242", "5555", "3782"] {
            assert!(!contains(&r.raw, digits), "{}", r.json);
        }
        let message = r.json["error"].as_str().unwrap();
        assert!(
            message.contains("R1") && message.contains("card number"),
            "{message}"
        );
    }
    let r = s
        .call(
            Method::POST,
            "/login",
            Some(json!({"email": "zorblax@@example.com"})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, Some("email"), "zorblax");
    for path in ["/customers/zorblax/report", "/customers/zorblax/newsletter"] {
        let method = if path.ends_with("report") {
            Method::GET
        } else {
            Method::PUT
        };
        let r = s.call(method, path, None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("id"), "zorblax");
    }
    // An unknown customer is a 404 (a valid id nobody has).
    let unknown = SubjectId::random().to_string();
    let r = s
        .call(
            Method::PUT,
            &format!("/customers/{unknown}/newsletter"),
            None,
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, None, "zorblax");

    // Nothing was collected, sealed, disclosed or charged.
    assert_eq!(s.trail().await.len(), before);
    assert_eq!(s.shop.charges(), 0);
    assert_eq!(s.count("orders").await, 0);
    assert!(!s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.to_lowercase().contains("zorblax")));
    s.stop().await;
}

/// The audit sink fails: every request that would use personal data is a
/// 503 naming R10, and nothing happened — no row, no charge, no consent,
/// no erasure, no audit entry (A1: host code cannot make a use happen that
/// the sink did not accept). Requests that use no personal data still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_audit_failure_is_503_and_nothing_happened() {
    let s = start_sqlite("fail").await;
    let tag = tag();
    let (ada, bob) = (Person::new(&tag, 1), Person::new(&tag, 2));
    let r = s.call(Method::POST, "/customers", Some(ada.form())).await;
    let id = r.json["customer"].as_str().unwrap().to_owned();
    let before = (
        s.count("customers").await,
        s.count("orders").await,
        s.trail().await.len(),
    );

    s.control.fail.store(true, Ordering::SeqCst);
    let order = json!({"customer": id, "product": "Data Recovery Pro", "price_cents": 6_995,
                       "currency": "USD", "card_token": ada.card});
    let calls = [
        (Method::POST, "/customers".to_owned(), Some(bob.form())),
        (Method::POST, "/orders".to_owned(), Some(order)),
        (Method::PUT, format!("/customers/{id}/newsletter"), None),
        (Method::GET, format!("/customers/{id}/report"), None),
        (Method::DELETE, format!("/customers/{id}"), None),
    ];
    for (method, path, body) in calls {
        let r = s.call(method.clone(), &path, body).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {}",
            r.json
        );
        assert_eq!(r.json["rule"], "R10");
        for secret in ada.secrets().into_iter().chain(bob.secrets()) {
            assert!(!contains(&r.raw, secret));
        }
    }
    // A login uses no personal data (nothing is collected or audited).
    let login = json!({"email": ada.email});
    assert_eq!(
        s.call(Method::POST, "/login", Some(login.clone()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.call(Method::GET, "/healthz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        (
            s.count("customers").await,
            s.count("orders").await,
            s.trail().await.len()
        ),
        before,
        "no row and no audit entry"
    );
    assert_eq!(s.shop.charges(), 0, "nothing reached the processor");
    // The log says why (the sink's message), and no value.
    let log = s.log.lock().unwrap().clone();
    assert!(log
        .iter()
        .any(|l| l.contains(" 503 ") && l.contains("the audit database is down")));

    // The sink is back: Ada was neither subscribed nor erased, Bob never existed.
    s.control.fail.store(false, Ordering::SeqCst);
    let r = s
        .call(Method::GET, &format!("/customers/{id}/report"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["consents"], json!([]));
    assert_eq!(r.json["disclosures"], json!([]));
    assert!(r.json["erased_at"].is_null());
    assert!(r.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["value"].is_string()));
    assert_eq!(
        s.call(Method::POST, "/login", Some(login)).await.status,
        StatusCode::OK
    );
    let r = s
        .call(Method::POST, "/login", Some(json!({"email": bob.email})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A2 edits a customer's consent row in the database (here: flips its
/// `granted` flag), so it no longer authenticates under the consent key.
/// Unsubscribing (and subscribing) is then refused fail closed: a `503`
/// whose JSON names the rule (R7), the refusal is in the trail as denied,
/// and nothing was withdrawn or granted. The service's log — every line it
/// wrote, read through `Shop::with_log` — holds the customer's keyed tag,
/// never their id nor any 8 hex digits of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_tampered_consent_row_is_503_naming_the_rule_and_logs_no_subject_id() {
    use privacy_pledge::audit::Outcome;
    let s = start_sqlite("consent").await;
    let ada = Person::new(&tag(), 1);
    let r = s.call(Method::POST, "/customers", Some(ada.form())).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json["customer"].as_str().unwrap().to_owned();
    let subject: SubjectId = id.parse().unwrap();
    let newsletter = format!("/customers/{id}/newsletter");
    let r = s.call(Method::PUT, &newsletter, None).await;
    assert_eq!(r.status, StatusCode::OK);

    // A2: an edit in place, as the operator's SQL client makes it.
    let shop = s.shop.clone();
    let edited = tokio::task::spawn_blocking(move || {
        shop.store()
            .execute(
                "UPDATE pp_consents SET record = replace(record, '\"granted\":true', '\"granted\":false') WHERE subject = $1",
                &[&subject.to_string()],
            )
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(edited, 1, "the operator changed the row");
    let audited = s.trail().await.len();

    for method in [Method::DELETE, Method::PUT] {
        let r = s.call(method.clone(), &newsletter, None).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method}: {}",
            r.json
        );
        assert_eq!(r.json["rule"], "R7", "{}", r.json);
        assert!(
            r.json["error"].as_str().unwrap().contains("consent"),
            "{}",
            r.json
        );
        assert!(!contains(&r.raw, &id), "the body names the customer");
    }
    // Refused before anything happened: each attempt is in the trail as a
    // denial under R7, and nothing was withdrawn or granted.
    let trail = s.trail().await;
    let attempts: Vec<_> = trail[audited..]
        .iter()
        .filter(|e| e.subject() == subject)
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (e, action) in attempts
        .iter()
        .zip([Action::ConsentWithdrawn, Action::ConsentGranted])
    {
        assert_eq!(
            (e.action(), e.outcome(), e.rule().to_string().as_str()),
            (action, Outcome::Denied, "R7")
        );
    }

    // The log: the customer's tag on the refusals, never their id.
    let tag = s.shop.custodian().subject_tag(subject).to_string();
    let log = s.log.lock().unwrap().clone();
    let refusals: Vec<_> = log.iter().filter(|l| l.contains(" 503 ")).collect();
    assert_eq!(refusals.len(), 2, "{log:#?}");
    for line in &refusals {
        assert!(line.contains("/customers/{id}/newsletter"), "{line}");
        assert!(line.contains(&format!("customer {tag}")), "{line}");
        assert!(line.contains("R7"), "{line}");
    }
    for line in &log {
        for window in id.as_bytes().windows(8) {
            let digits = std::str::from_utf8(window).unwrap();
            assert!(
                !line.contains(digits),
                "a log line names the customer: {line}"
            );
        }
        for secret in ada.secrets() {
            assert!(!line.contains(secret), "a log line holds a value: {line}");
        }
    }
    s.stop().await;
}

/// Two orders whose audit writes take 2 s each, on a runtime of 2 workers:
/// if the crate were called on the async workers, both would be blocked and
/// every other request would wait ~2 s. With `spawn_blocking` they answer
/// at once (A5: a slow disk under one request does not stall the service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a5_a_slow_audit_write_does_not_stall_the_executor() {
    let s = start_sqlite("slow").await;
    let tag = tag();
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = s
            .call(
                Method::POST,
                "/customers",
                Some(Person::new(&tag, i).form()),
            )
            .await;
        ids.push(r.json["customer"].as_str().unwrap().to_owned());
    }
    {
        let mut slow = s.control.slow.lock().unwrap();
        slow.insert(ids[0].parse().unwrap());
        slow.insert(ids[1].parse().unwrap());
    }
    let slow: Vec<_> = ids[..2]
        .iter()
        .map(|id| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move {
                let order = json!({"customer": id, "product": "Data Recovery Pro",
                                   "price_cents": 6_995, "currency": "USD", "card_token": "tok_slow"});
                s.call(Method::POST, "/orders", Some(order)).await
            })
        })
        .collect();
    // Wait until both slow orders are inside the sink. Wall-clock waits:
    // a stalled runtime would stretch its own timers too.
    let waiting = Instant::now();
    while !s.control.slow.lock().unwrap().is_empty() {
        assert!(
            waiting.elapsed() < Duration::from_secs(1),
            "the slow orders did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let launched = Instant::now();
    let mut others = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        let id = ids[2].clone();
        let (known, new) = (Person::new(&tag, 2), Person::new(&tag, 10 + i));
        others.push(tokio::spawn(async move {
            let r = match i % 5 {
                0 | 1 => s.call(Method::GET, "/healthz", None).await,
                2 => {
                    let login = json!({"email": known.email});
                    s.call(Method::POST, "/login", Some(login)).await
                }
                3 => {
                    s.call(Method::GET, &format!("/customers/{id}/report"), None)
                        .await
                }
                _ => s.call(Method::POST, "/customers", Some(new.form())).await,
            };
            (r, launched.elapsed())
        }));
    }
    // Each latency counts from the launch, queueing in a stalled runtime included.
    let mut worst = Duration::ZERO;
    for o in others {
        let (r, done) = o.await.unwrap();
        assert!(r.status.is_success(), "{}", r.json);
        worst = worst.max(done);
    }
    let mut slow_took = Vec::new();
    for o in slow {
        let r = o.await.unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        slow_took.push(r.took);
    }
    eprintln!(
        "while two audit writes slept 2 s: 40 other requests all answered within {worst:?}; \
         the slow orders took {slow_took:?}"
    );
    assert!(
        slow_took.iter().all(|t| *t >= Duration::from_secs(2)),
        "the sink slept"
    );
    assert!(
        worst < Duration::from_millis(1_000),
        "a request waited {worst:?}"
    );
    s.stop().await;
}

/// The life cycle of 32 customers on PostgreSQL (`PP_TEST_PG`, a fresh
/// database), and every row of every table read as the operator (A2) sees
/// it, bytea as raw bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_a2_a4_life_cycle_of_32_customers_on_postgres() {
    let Some(url) = tokio::task::spawn_blocking(|| pg::database("shop_service"))
        .await
        .unwrap()
    else {
        return;
    };
    let dir = temp_dir("pg");
    let database = Database::Postgres {
        url: url.clone(),
        files: dir.join("shop"),
    };
    let service = Service::start(database, dir).await;
    let people = many_life_cycles(&service).await;
    assert_no_plaintext_in_files(&service, &people);
    let rows = tokio::task::spawn_blocking(move || pg_raw_rows(&url))
        .await
        .unwrap();
    assert!(
        rows.len() > 32 * 20,
        "the customers, orders and the trail were read"
    );
    for row in &rows {
        for p in &people {
            for secret in p.secrets() {
                assert!(!contains(row, secret), "a PostgreSQL row holds a value");
            }
        }
    }
    service.stop().await;
}

/// Every row of every table of the database, its text and bytea columns
/// as raw bytes.
fn pg_raw_rows(url: &str) -> Vec<Vec<u8>> {
    use privacy_pledge::store::postgres::postgres::{self, types::Type};
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.iter().any(|t| t == "customers"));
    let mut out = Vec::new();
    for table in tables {
        for row in client
            .query(&format!("SELECT * FROM {table}"), &[])
            .unwrap()
        {
            let mut bytes = Vec::new();
            for (i, column) in row.columns().iter().enumerate() {
                match *column.type_() {
                    Type::BYTEA => {
                        bytes.extend(row.get::<_, Option<Vec<u8>>>(i).unwrap_or_default())
                    }
                    Type::TEXT | Type::VARCHAR => bytes.extend(
                        row.get::<_, Option<String>>(i)
                            .unwrap_or_default()
                            .into_bytes(),
                    ),
                    _ => {}
                }
            }
            out.push(bytes);
        }
    }
    out
}

/// A field the route does not take is refused by name, before anything
/// is collected: a sign-up with `"newsletter": true` is not a customer
/// who silently got no newsletter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_naming_the_field() {
    let s = start_sqlite("unknown").await;
    let ada = Person::new(&tag(), 1);
    let before = (s.count("customers").await, s.trail().await.len());
    let mut form = ada.form();
    form["newsletter"] = json!(true);
    let r = s.call(Method::POST, "/customers", Some(form)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, Some("newsletter"), &ada.email);
    assert!(
        r.json["error"].as_str().unwrap().contains("newsletter"),
        "{}",
        r.json
    );
    for secret in ada.secrets() {
        assert!(!contains(&r.raw, secret), "{}", r.json);
    }
    assert_eq!(
        (s.count("customers").await, s.trail().await.len()),
        before,
        "nothing was collected"
    );

    // On every route that takes a body; the field's value is never repeated.
    let r = s.call(Method::POST, "/customers", Some(ada.form())).await;
    let id = r.json["customer"].as_str().unwrap().to_owned();
    let login = json!({"email": ada.email, "password": "zorblax-secret"});
    let r = s.call(Method::POST, "/login", Some(login)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, Some("password"), "zorblax");
    let order = json!({"customer": id, "product": "Data Recovery Pro", "price_cents": 6_995,
                       "currency": "USD", "card_token": ada.card, "card_number": "4242424242424242"});
    let r = s.call(Method::POST, "/orders", Some(order)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, Some("card_number"), "4242");
    assert_eq!(s.shop.charges(), 0);
    assert_eq!(s.count("orders").await, 0);
    // A key that is not a plain name is refused without repeating it.
    let mut form = Person::new(&tag(), 2).form();
    form["zorblax secret@example.com"] = json!(1);
    let r = s.call(Method::POST, "/customers", Some(form)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, None, "zorblax");
    s.stop().await;
}

/// A customer id in a path that does not even decode (not UTF-8) is a
/// `400` naming `id`, in the service's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_path_id_is_a_400_json_error() {
    let s = start_sqlite("path").await;
    for (method, path) in [
        (Method::GET, "/customers/%FFzorblax/report"),
        (Method::PUT, "/customers/%FFzorblax/newsletter"),
        (Method::DELETE, "/customers/%FFzorblax"),
    ] {
        let r = s.call(method, path, None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("id"), "zorblax");
    }
    s.stop().await;
}

/// An unknown route is a `404` in the service's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_a_404_json_error() {
    let s = start_sqlite("route").await;
    for (method, path) in [
        (Method::GET, "/zorblax"),
        (Method::POST, "/customers/zorblax/orders"),
        (Method::GET, "/"),
    ] {
        let r = s.call(method, path, None).await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "zorblax");
        assert_eq!(r.json, json!({"error": "no such route"}));
    }
    s.stop().await;
}

/// A method a route does not have is a `405` in the service's error shape,
/// with the `Allow` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_a_405_json_error_with_allow() {
    let s = start_sqlite("method").await;
    let id = SubjectId::random().to_string();
    for (method, path, allow) in [
        (Method::POST, "/healthz".to_owned(), "GET,HEAD"),
        (Method::GET, "/customers".to_owned(), "POST"),
        (
            Method::GET,
            format!("/customers/{id}/newsletter"),
            "PUT,DELETE",
        ),
        (Method::PUT, format!("/customers/{id}"), "DELETE"),
    ] {
        let r = s.call(method.clone(), &path, None).await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, None, &id);
        let allowed = r.headers[header::ALLOW].to_str().unwrap();
        assert_eq!(allowed, allow, "{method} {path}");
    }
    s.stop().await;
}

/// A body over the documented limit is a `413` in the service's error
/// shape; one just under it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_a_413_json_error() {
    let s = start_sqlite("limit").await;
    let before = s.trail().await.len();
    let mut form = Person::new(&tag(), 1).form();
    form["name"] = json!(format!("Zorblax {}", "a".repeat(app::BODY_LIMIT)));
    let r = s.call(Method::POST, "/customers", Some(form)).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, None, "Zorblax");
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains(&app::BODY_LIMIT.to_string()),
        "{}",
        r.json
    );
    // Within the limit: read, and refused for what it says.
    let mut form = Person::new(&tag(), 1).form();
    form["name"] = json!("a".repeat(app::BODY_LIMIT - 400));
    let r = s.call(Method::POST, "/customers", Some(form)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["field"], "name");
    assert_eq!(s.trail().await.len(), before);
    s.stop().await;
}

/// A body without `Content-Type: application/json` is a `415` in the
/// service's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_a_415_json_error() {
    let s = start_sqlite("type").await;
    let body = Bytes::from(Person::new(&tag(), 1).form().to_string());
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let r = s
            .send_as(Method::POST, "/customers", body.clone(), content_type)
            .await;
        assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, None, "Marlowe");
    }
    assert_eq!(s.count("customers").await, 0);
    s.stop().await;
}

/// Malformed JSON, an empty body, or JSON that is not an object: a `400`
/// in the service's error shape, which never quotes the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_400_json_error() {
    let s = start_sqlite("malformed").await;
    for (body, message) in [
        ("{\"name\": \"zorblax", "the body is not valid JSON"),
        ("", "the body is not valid JSON"),
        ("{\"email\": zorblax}", "the body is not valid JSON"),
        ("\"zorblax\"", "the body must be a JSON object"),
        ("[\"zorblax\"]", "the body must be a JSON object"),
    ] {
        for path in ["/customers", "/login", "/orders"] {
            let r = s.send(Method::POST, path, Bytes::from(body)).await;
            assert_error(&r, StatusCode::BAD_REQUEST, None, "zorblax");
            assert_eq!(r.json, json!({"error": message}), "{path} {body}");
        }
    }
    s.stop().await;
}

/// The report shows when each consent was given and when it was withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_shows_consent_grant_and_withdrawal_times() {
    let s = start_sqlite("consent-times").await;
    let r = s
        .call(
            Method::POST,
            "/customers",
            Some(Person::new(&tag(), 1).form()),
        )
        .await;
    let id = r.json["customer"].as_str().unwrap().to_owned();
    let (newsletter, report) = (
        format!("/customers/{id}/newsletter"),
        format!("/customers/{id}/report"),
    );
    assert_eq!(
        s.call(Method::PUT, &newsletter, None).await.status,
        StatusCode::OK
    );
    let r = s.call(Method::GET, &report, None).await;
    let live = &r.json["consents"][0];
    assert_eq!(
        (&live["purpose"], &live["granted"]),
        (&json!("Newsletter"), &json!(true))
    );
    let granted_at = live["granted_at"].as_u64().expect("grant time");
    assert!(live["withdrawn_at"].is_null(), "{live}");

    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        s.call(Method::DELETE, &newsletter, None).await.status,
        StatusCode::OK
    );
    let r = s.call(Method::GET, &report, None).await;
    let consents = r.json["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 1, "{consents:?}");
    let c = &consents[0];
    assert_eq!(c["granted"], false);
    assert_eq!(c["granted_at"].as_u64(), Some(granted_at), "{c}");
    let withdrawn_at = c["withdrawn_at"].as_u64().expect("withdrawal time");
    assert!(withdrawn_at > granted_at, "{c}");
    s.stop().await;
}

/// The `shop_service` program, stopped with SIGTERM after serving a few
/// requests, shuts down cleanly (exit 0) and leaves a signed checkpoint
/// covering its stream's last entry: a verifier with the public key alone
/// vouches for the whole stream (A4), with no entry after the checkpoint
/// that could be cut unnoticed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_sigterm_leaves_a_checkpoint_covering_the_last_entry() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    use privacy_pledge::audit::{CheckpointKey, DirCheckpointStore};
    use privacy_pledge::store::sqlite::SqliteStore;

    let dir = temp_dir("sigterm");
    let db = dir.join("shop.db");
    let mut child = Command::new(examples::example_binary("shop_service"))
        .arg("--port")
        .arg("0")
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (base, rest) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base = lines
            .by_ref()
            .map(Result::unwrap)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
            .expect("the service says where it listens");
        (base, lines)
    })
    .await
    .unwrap();

    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let call = |method: Method, path: String, body: Option<Value>| {
        let request = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(
                body.map_or(Bytes::new(), |b| Bytes::from(b.to_string())),
            ))
            .unwrap();
        let http = http.clone();
        async move {
            let response = http.request(request).await.unwrap();
            let status = response.status();
            let raw = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&raw).unwrap())
        }
    };
    let ada = Person::new(&tag(), 1);
    let (status, json) = call(Method::POST, "/customers".into(), Some(ada.form())).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["customer"].as_str().unwrap().to_owned();
    let order = json!({"customer": id, "product": "Data Recovery Pro", "price_cents": 6_995,
                       "currency": "USD", "card_token": ada.card});
    let (status, _) = call(Method::POST, "/orders".into(), Some(order)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(Method::PUT, format!("/customers/{id}/newsletter"), None).await;
    assert_eq!(status, StatusCode::OK);

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, said) = tokio::task::spawn_blocking(move || {
        let said: Vec<String> = rest.map(Result::unwrap).collect();
        (child.wait().unwrap(), said)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}: {said:?}");
    assert!(said.iter().any(|l| l.contains("signed into")), "{said:?}");

    // The database, the checkpoint directory and the public key, as the
    // auditor gets them.
    let trail = SqliteStore::open_read_only(&db).unwrap().trail().unwrap();
    assert!(
        trail.len() >= 10,
        "sign-up, order, consent: {}",
        trail.len()
    );
    let checkpoints = DirCheckpointStore::new(support::checkpoint_dir_for(&db))
        .unwrap()
        .load()
        .unwrap();
    let public_key: CheckpointKey = std::fs::read_to_string(support::public_key_file_for(&db))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let report = verify_public(&trail, &public_key, &checkpoints);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.streams.len(), 1, "one process, one stream");
    let stream = &report.streams[0];
    let head = stream.result.unwrap();
    assert_eq!(head.seq(), trail.len() as u64);
    assert_eq!(
        stream.vouched_through,
        Some(head.seq()),
        "the checkpoint covers the last entry"
    );
    let _ = std::fs::remove_dir_all(dir);
}
