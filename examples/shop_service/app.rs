//! The shop service's state and routes: the part of `shop_service` that a
//! test or a load generator starts in-process (`router(shop)`), apart from
//! the command line in `main.rs`.
//!
//! Each handler does the same three things:
//!
//! 1. parses the request on the async worker — untrusted text becomes typed
//!    values (`EmailAddress::parse`, …), and bad input is refused before
//!    anything is collected, with a JSON error that names the field and the
//!    rule it broke, never the value;
//! 2. runs every custodian and database call in **one**
//!    [`spawn_blocking`](tokio::task::spawn_blocking) closure
//!    ([`Shop::run`]): the crate's calls are synchronous and wait for the
//!    disk (the audit sink returns only once its event is committed); a
//!    sign-up's and an order's custodian calls run in one request scope
//!    (`Custodian::request`), so their audit events are committed together
//!    — a sign-up's eight in one transaction — before the sealed row leaves
//!    for the database or the card token for the processor;
//! 3. maps the outcome to a status: an audit-sink or store failure, or a
//!    consent row that does not authenticate, is `503` naming the rule, and
//!    nothing happened (the custodian fails closed before the use).

#![allow(dead_code)] // shared by the service, its test and the load generator

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use privacy_pledge::audit::{
    AuditError, AuditSink, CheckpointKey, DirCheckpointStore, SignedCheckpoint,
};
use privacy_pledge::crypto::LookupRef;
use privacy_pledge::data::{
    Amount, EmailAddress, FullName, InvalidData, PaymentToken, PhoneNumber, PostalAddress,
    PurchaseRecord,
};
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::report::StoredRecord;
use privacy_pledge::store::postgres::postgres;
use privacy_pledge::store::sqlite::rusqlite;
use privacy_pledge::store::{CheckpointGuard, Dialect, StoreError};
use privacy_pledge::{
    Custodian, Error, LookupToken, PersonalInfo, PersonalRecord, Sealed, SealedRecord, SubjectId,
};

use crate::support::{self, BoxError, Database, PaymentProcessor};
use privacy_pledge::store::Store;

// ---------------------------------------------------------------------------
// State

/// Everything the service works with; shared by every request (`Arc<Shop>`).
pub struct Shop {
    custodian: Custodian,
    tables: Tables,
    payments: PaymentProcessor,
    checkpoints: DirCheckpointStore,
    public_key: CheckpointKey,
    /// Signs the audit stream's head when the shop is dropped, however the
    /// process gets there (clean shutdown, an error, a panic).
    guard: CheckpointGuard,
    log: Box<dyn Fn(&str) + Send + Sync>,
    stats: Stats,
}

impl Shop {
    /// Opens the database, its keys, consents and a new audit stream, and
    /// builds the custodian. Several processes may serve one database.
    pub fn open(database: &Database) -> Result<Shop, BoxError> {
        Shop::open_with(database, |sink| sink)
    }

    /// Like [`open`](Self::open), with the store's audit sink passed through
    /// `audit` first (a test wraps it in a failing or slow one).
    pub fn open_with(
        database: &Database,
        audit: impl FnOnce(Box<dyn AuditSink>) -> Box<dyn AuditSink>,
    ) -> Result<Shop, BoxError> {
        let opened = support::open_shop_with(database, audit)?;
        // The crate runs the steps once, under a lock, however many
        // processes start together.
        let tables = shop_tables(opened.store.dialect());
        opened.store.migrate("shop", &[&tables])?;
        Ok(Shop {
            checkpoints: opened.store.checkpoint_store().clone(),
            tables: Tables::new(opened.store),
            custodian: opened.custodian,
            payments: PaymentProcessor::default(),
            public_key: opened.public_key,
            guard: opened.guard,
            log: Box::new(|line| eprintln!("{line}")),
            stats: Stats::default(),
        })
    }

    /// Sends the access log (one line a request: method, route, status,
    /// time, and for an error its cause and the customer's keyed tag; never
    /// a value or an id) to `log` instead of standard error.
    pub fn with_log(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Shop {
        self.log = Box::new(log);
        self
    }

    /// Clean shutdown: signs the audit stream's head into the checkpoint
    /// directory, so a verifier with the public key vouches for all of it.
    /// (Dropping the shop signs too, through its [`CheckpointGuard`]: this
    /// gives the checkpoint, or the error, in hand.)
    pub fn shut_down(&self) -> Result<SignedCheckpoint, AuditError> {
        self.guard.sign()
    }

    /// The custodian (tests read its trail through it).
    pub fn custodian(&self) -> &Custodian {
        &self.custodian
    }

    /// The database (the shop's tables and the crate's `pp_` tables).
    pub fn store(&self) -> &Store {
        &self.tables.store
    }

    /// The checkpoint directory and the public key that verifies it.
    pub fn checkpoints(&self) -> (&DirCheckpointStore, CheckpointKey) {
        (&self.checkpoints, self.public_key)
    }

    /// How many charges the payment processor received.
    pub fn charges(&self) -> u32 {
        self.payments.charges()
    }

    /// Where request time went, so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot(&self.tables)
    }

    /// Runs `f` — every custodian and database call of one request — on
    /// tokio's blocking thread pool, and waits for it without holding an
    /// async worker.
    ///
    /// The crate's calls are synchronous and block: on SQLite or
    /// PostgreSQL I/O in the key store, consent store and audit sink, and on
    /// group commit (a `record` returns only once its event is durable).
    /// Called on an async worker, one slow commit would stall every request
    /// queued on that worker (and the synchronous `postgres` client under
    /// `PgStore` panics there: it runs a runtime of its own). The closure
    /// runs to its end even if the client goes away, so a request's steps
    /// are never cut in the middle.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Shop) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let shop = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let out = f(&shop);
            add(&shop.stats.blocking, start.elapsed());
            out
        })
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("a request's work panicked")))
    }
}

// ---------------------------------------------------------------------------
// Routes

/// The largest request body the service reads, in bytes (16 KiB: a form
/// is a few hundred). A larger one is a `413` before any of it is parsed.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The service's routes over `shop`.
///
/// | route | body | answer |
/// |---|---|---|
/// | `POST /customers` | `{"name","email","address","phone"}` | `201 {"customer": ID}`; `409` email taken |
/// | `POST /login` | `{"email"}` | `200 {"customer": ID}`; `404` |
/// | `POST /orders` | `{"customer","product","price_cents","currency","card_token"}` | `201 {"order","charge"}`; `404`; `410` erased |
/// | `PUT`/`DELETE /customers/{id}/newsletter` | — | `200 {"newsletter": true/false}` |
/// | `GET /customers/{id}/report` | — | `200` the subject's report (JSON) |
/// | `DELETE /customers/{id}` | — | `200 {"erased_at", "index_entries_removed"}` |
/// | `GET /healthz` | — | `200 {"status": "ok"}` |
///
/// Every error is `{"error": …}` with `"field"` for bad input (`400`; a
/// field the route does not take is refused too, by name) and `"rule"`
/// where a policy rule refused (`503` + `R10`: the audit trail was
/// unavailable and nothing happened; `503` + `R7`: the customer's consent
/// row does not authenticate or cannot be read; `410` + `R11`: erased).
/// The same shape answers an unknown route (`404`), a method the route
/// does not have (`405`, with `Allow`), a body over [`BODY_LIMIT`]
/// (`413`), a body sent without `Content-Type: application/json` (`415`)
/// and one that is not JSON (`400`).
pub fn router(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/customers", post(sign_up))
        .route("/login", post(login))
        .route("/orders", post(place_order))
        .route("/customers/{id}", delete(erase))
        .route(
            "/customers/{id}/newsletter",
            put(subscribe).delete(unsubscribe),
        )
        .route("/customers/{id}/report", get(report))
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(shop.clone(), access_log))
        .with_state(shop)
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "this route does not take this method",
    )
}

type Shared = State<Arc<Shop>>;

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// A sign-up form, validated.
struct SignUp {
    name: FullName,
    email: EmailAddress,
    address: PostalAddress,
    phone: PhoneNumber,
}

/// The body of `POST /customers`, as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignUpBody {
    name: Field,
    email: Field,
    address: Field,
    phone: Field,
}

async fn sign_up(
    State(shop): Shared,
    JsonBody(form): JsonBody<SignUpBody>,
) -> Result<Response, ApiError> {
    let sign_up = SignUp {
        name: parse("name", &form.name, FullName::parse)?,
        email: parse("email", &form.email, EmailAddress::parse)?,
        address: parse("address", &form.address, PostalAddress::parse)?,
        phone: parse("phone", &form.phone, PhoneNumber::parse)?,
    };
    let subject = shop.run(move |shop| shop.sign_up(sign_up)).await?;
    Ok(created(json!({"customer": subject.to_string()})))
}

/// The body of `POST /login`, as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: Field,
}

async fn login(
    State(shop): Shared,
    JsonBody(form): JsonBody<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let email = parse("email", &form.email, EmailAddress::parse)?;
    let subject = shop.run(move |shop| shop.login(&email)).await?;
    Ok(Json(json!({"customer": subject.to_string()})))
}

/// An order form, validated (the product is checked with the record).
struct OrderForm {
    customer: SubjectId,
    product: String,
    amount: Amount,
    card_token: PaymentToken,
}

/// The body of `POST /orders`, as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    customer: Field,
    product: Field,
    price_cents: Field,
    currency: Field,
    card_token: Field,
}

async fn place_order(
    State(shop): Shared,
    JsonBody(form): JsonBody<OrderBody>,
) -> Result<Response, ApiError> {
    let order = OrderForm {
        customer: id("customer", &form.customer)?,
        product: text("product", &form.product)?.to_owned(),
        amount: Amount::new(
            number("price_cents", &form.price_cents)?,
            text("currency", &form.currency)?,
        )
        .map_err(|e| ApiError::invalid("currency", e))?,
        card_token: parse("card_token", &form.card_token, PaymentToken::parse)?,
    };
    let (order, charge) = shop.run(move |shop| shop.place_order(order)).await?;
    Ok(created(json!({"order": order, "charge": charge})))
}

async fn subscribe(
    State(shop): Shared,
    CustomerId(subject): CustomerId,
) -> Result<Json<Value>, ApiError> {
    shop.run(move |shop| shop.newsletter(subject, true))
        .await
        .map(Json)
}

async fn unsubscribe(
    State(shop): Shared,
    CustomerId(subject): CustomerId,
) -> Result<Json<Value>, ApiError> {
    shop.run(move |shop| shop.newsletter(subject, false))
        .await
        .map(Json)
}

async fn report(
    State(shop): Shared,
    CustomerId(subject): CustomerId,
) -> Result<Response, ApiError> {
    let json = shop.run(move |shop| shop.report(subject)).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn erase(
    State(shop): Shared,
    CustomerId(subject): CustomerId,
) -> Result<Json<Value>, ApiError> {
    shop.run(move |shop| shop.erase(subject)).await.map(Json)
}

/// One access-log line per request, and the time it took for the load
/// figure. The route template is logged, not the path: no customer id.
async fn access_log(State(shop): Shared, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("?", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let took = start.elapsed();
    shop.stats.request(took);
    // An error names its customer by a keyed tag, never by the id: the
    // tag finds the customer's other lines, and whoever holds the keyring
    // can compute a known customer's tag; a log reader cannot reverse it.
    let (mut about, mut detail) = (String::new(), String::new());
    if let Some(d) = response.extensions().get::<ErrorDetail>() {
        if let Some(subject) = d.subject {
            about = format!(" customer {}", shop.custodian.subject_tag(subject));
        }
        if let Some(text) = &d.detail {
            detail = format!(": {text}");
        }
    }
    (shop.log)(&format!(
        "{method} {route} {} {:.1} ms{about}{detail}",
        response.status().as_u16(),
        took.as_secs_f64() * 1e3
    ));
    response
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The `{id}` of a route: a customer id (32 hex digits), or a `400` in the
/// service's shape naming `id` (axum's own refusal of a path that does not
/// decode is plain text).
struct CustomerId(SubjectId);

impl<S: Send + Sync> FromRequestParts<S> for CustomerId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let bad = || ApiError::field("id", "must be a customer id (32 hex digits)");
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| bad())?;
        id.parse().map(CustomerId).map_err(|_| bad())
    }
}

// ---------------------------------------------------------------------------
// What each request does (synchronous: runs inside `Shop::run`)

impl Shop {
    /// Collects the form's values for `Transaction`, seals each into the
    /// `customers` row and indexes the email by its lookup token.
    fn sign_up(&self, form: SignUp) -> Result<SubjectId, ApiError> {
        let c = &self.custodian;
        // Refused before anything is collected.
        if self
            .tables
            .find_by_email(&c.lookup_token_of(&form.email))?
            .is_some()
        {
            return Err(email_taken());
        }
        // A new id: its first key is made without reading the key store.
        let subject = c.new_subject()?;
        // One request, one durable commit: the eight audit events (a collect
        // and a seal per field), the new key and the email's lookup token
        // are committed first, then the sealed row, in the one transaction
        // that waits for the disk.
        self.tables.commit_request(c, || -> Result<_, ApiError> {
            let customer = Customer {
                name: c.collect(subject, form.name)?,
                email: c.collect(subject, form.email)?,
                address: c.collect(subject, form.address)?,
                phone: c.collect(subject, form.phone)?,
            };
            // One audited seal per field, and the email's lookup token.
            Ok(c.seal_record(&customer)?)
        })?;
        Ok(subject)
    }

    /// Finds the customer by the email as typed: nothing collected, nothing
    /// written, nothing audited.
    fn login(&self, email: &EmailAddress) -> Result<SubjectId, ApiError> {
        let token = self.custodian.lookup_token_of(email);
        self.tables
            .find_by_email(&token)?
            .ok_or_else(|| ApiError::not_found("no customer has this email address"))
    }

    /// Records the purchase (sealed into `orders`) and charges the card:
    /// the processor receives the amount and the card token, each
    /// hand-over recorded with its name before it happens.
    fn place_order(&self, form: OrderForm) -> Result<(String, String), ApiError> {
        let c = &self.custodian;
        let subject = form.customer;
        self.known_customer(subject)?;
        let order_id = new_order_id()?;
        let record = PurchaseRecord::new(&order_id, &form.product, form.amount, c.today())
            .map_err(|e| ApiError::invalid("product", e))?;
        // One request scope: the collects and the seal are staged, and the
        // first disclosure commits them with its own event before the
        // processor sees anything; the charge's disclosure commits its own.
        let (sealed, charge) = c.request(|| -> Result<_, ApiError> {
            let purchase: PersonalInfo<PurchaseRecord, Transaction> = c.collect(subject, record)?;
            let token: PersonalInfo<PaymentToken, Transaction> =
                c.collect(subject, form.card_token)?;
            let sealed = c.seal(&purchase)?;
            let amount = c.disclose(&purchase, &self.payments, |p| p.amount())?;
            let charge = c.disclose(&token, &self.payments, |t| self.payments.charge(t, amount))?;
            Ok((sealed, charge))
        })?;
        // A real shop refunds the charge if this insert fails.
        self.tables.insert_order(subject, &sealed, &charge)?;
        Ok((order_id, charge))
    }

    /// Grants or withdraws the newsletter subscription (consent, audited).
    fn newsletter(&self, subject: SubjectId, subscribe: bool) -> Result<Value, ApiError> {
        self.known_customer(subject)?;
        let consents = self.custodian.consents();
        if subscribe {
            consents.grant::<Newsletter>(subject)?;
        } else {
            consents.withdraw::<Newsletter>(subject)?;
        }
        Ok(json!({"newsletter": subscribe}))
    }

    /// The subject's report, as JSON: their values (each opening recorded
    /// as a disclosure to them), who received what, consents, retention;
    /// the trail it quotes verified first, stream by stream.
    fn report(&self, subject: SubjectId) -> Result<String, ApiError> {
        let row = self
            .tables
            .customer(subject)?
            .ok_or_else(|| ApiError::not_found("no such customer"))?;
        let orders = self.tables.orders(subject)?;
        let mut records: Vec<&dyn StoredRecord> = row.records();
        records.extend(orders.iter().map(|o| o as &dyn StoredRecord));
        // The custodian reads its checkpoints before the trail: a checkpoint
        // signed in between would name entries the trail read earlier does
        // not have.
        let trail = self
            .custodian
            .verify_trail_with(|| Ok::<_, ApiError>(self.tables.store.trail()?))?;
        let report = self.custodian.subject_report(subject, &records, &trail)?;
        let json = report
            .to_json()
            .map_err(|_| ApiError::internal("the report could not be encoded"))?;
        // The response body is a plain copy: the socket needs one.
        Ok(json.as_str().to_owned())
    }

    /// Erases the customer (their keys are destroyed: every sealed copy,
    /// backups included, stops opening) and deletes the index entries the
    /// receipt lists, so a login by their email finds nothing.
    fn erase(&self, subject: SubjectId) -> Result<Value, ApiError> {
        if !self.tables.customer_exists(subject)? {
            return Err(ApiError::not_found("no such customer"));
        }
        let receipt = self.custodian.erase(subject)?;
        let mut removed = 0;
        for token in receipt.lookup_tokens() {
            removed += self.tables.forget_index(token)?;
        }
        Ok(json!({
            "erased_at": receipt.at().to_string(),
            "index_entries_removed": removed,
        }))
    }

    /// `404` for an unknown customer, `410` for an erased one.
    fn known_customer(&self, subject: SubjectId) -> Result<(), ApiError> {
        if !self.tables.customer_exists(subject)? {
            return Err(ApiError::not_found("no such customer"));
        }
        if self.custodian.is_erased(subject)? {
            return Err(Error::Erased { subject, at: None }.into());
        }
        Ok(())
    }
}

/// A fresh order number: random, so processes serving one database never
/// hand out the same one and the database needs no counter.
fn new_order_id() -> Result<String, ApiError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal("the random generator failed"))?;
    Ok(format!("ORD-{}", support::hex(&bytes)))
}

fn email_taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        Some("email"),
        "a customer with this email address exists",
    )
}

// ---------------------------------------------------------------------------
// Request bodies and errors

/// A field of a request body as sent: any JSON value, or none. The
/// functions below check it and name the field in their error, never what
/// it held (serde's own messages quote the input: none is passed on).
type Field = Option<Value>;

fn text<'a>(field: &'static str, value: &'a Field) -> Result<&'a str, ApiError> {
    match value {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::field(field, "is missing")),
        Some(_) => Err(ApiError::field(field, "must be a string")),
    }
}

fn number(field: &'static str, value: &Field) -> Result<u64, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::field(field, "is missing")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ApiError::field(field, "must be a whole number of at least 0")),
    }
}

fn id(field: &'static str, value: &Field) -> Result<SubjectId, ApiError> {
    text(field, value)?
        .parse()
        .map_err(|_| ApiError::field(field, "must be a customer id (32 hex digits)"))
}

/// The field parsed as a data kind: the kind's error names the rule
/// ("invalid email address: there is no '@'"), never the value.
fn parse<T>(
    field: &'static str,
    value: &Field,
    parse: impl FnOnce(&str) -> Result<T, InvalidData>,
) -> Result<T, ApiError> {
    parse(text(field, value)?).map_err(|e| ApiError::invalid(field, e))
}

/// A request body: a JSON object (`Content-Type: application/json`, at
/// most [`BODY_LIMIT`] bytes) with no field `T` does not name. Every way
/// it can fail is an [`ApiError`] in the service's shape, and none repeats
/// what the body held.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(object) = Json::<Map<String, Value>>::from_request(request, state)
            .await
            .map_err(rejected_body)?;
        // `T` denies unknown fields; every field is an `Option<Value>`, so
        // an unknown one is the only way this can fail.
        T::deserialize(Value::Object(object))
            .map(JsonBody)
            .map_err(|e| unknown_field(&e))
    }
}

/// axum's refusal of a body, in the service's shape (axum's own text
/// quotes serde's message, which may quote the input).
fn rejected_body(rejection: JsonRejection) -> ApiError {
    let (status, message) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json".to_owned(),
        ),
        JsonRejection::JsonSyntaxError(_) => (
            StatusCode::BAD_REQUEST,
            "the body is not valid JSON".to_owned(),
        ),
        JsonRejection::JsonDataError(_) => (
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object".to_owned(),
        ),
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {BODY_LIMIT} bytes"),
        ),
        r => (r.status(), "the body could not be read".to_owned()),
    };
    ApiError::new(status, None, &message)
}

/// A field the route does not take. The answer names it when it is a
/// plain name (letters, digits, `_`, `-`, at most 64): it is the client's
/// own key, not a value.
fn unknown_field(e: &serde_json::Error) -> ApiError {
    let message = e.to_string();
    let name = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    match name {
        Some(name) => {
            let mut a = ApiError::new(
                StatusCode::BAD_REQUEST,
                None,
                &format!("{name} is not a field of this request"),
            );
            a.body["field"] = name.into();
            a
        }
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            None,
            "the body has a field this request does not take",
        ),
    }
}

/// An error answer: a status and `{"error", "field"?, "rule"?}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    /// For the log only (crate and database errors name no value, and the
    /// crate's name no subject id).
    detail: Option<String>,
    /// The customer the error is about, logged as a keyed tag.
    subject: Option<SubjectId>,
}

/// For the access log: the cause of a `5xx`, and the customer an error is
/// about (logged as its tag).
#[derive(Clone)]
struct ErrorDetail {
    detail: Option<String>,
    subject: Option<SubjectId>,
}

impl ApiError {
    fn new(status: StatusCode, field: Option<&'static str>, message: &str) -> Self {
        let mut body = json!({"error": message});
        if let Some(field) = field {
            body["field"] = field.into();
        }
        ApiError {
            status,
            body,
            detail: None,
            subject: None,
        }
    }

    fn field(field: &'static str, rule: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some(field),
            &format!("{field} {rule}"),
        )
    }

    fn invalid(field: &'static str, e: InvalidData) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), &e.to_string())
    }

    fn not_found(message: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, None, message)
    }

    fn internal(detail: &str) -> Self {
        let mut e = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error");
        e.detail = Some(detail.to_owned());
        e
    }

    fn unavailable(detail: String) -> Self {
        ApiError::fail_closed(
            "R10",
            "the audit trail or key store is unavailable, so nothing was done",
            detail,
        )
    }

    /// `503`: something the custodian depends on failed or cannot be
    /// trusted, so it refused before anything happened; `rule` is the rule
    /// that made it refuse.
    fn fail_closed(rule: &str, message: &str, detail: String) -> Self {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, message);
        e.body["rule"] = rule.into();
        e.detail = Some(detail);
        e
    }

    /// The status (tests and the load generator read it).
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let subject = e.subject();
        let mut a = match e {
            // A consent row edited or written without the consent key, or a
            // consent store that cannot be read: consent counts as not given,
            // and a change is refused before it is recorded (R7).
            e @ (Error::ConsentTampered { .. } | Error::ConsentStore(_)) => ApiError::fail_closed(
                "R7",
                "the customer's consent record cannot be read or trusted, so nothing was done",
                e.to_string(),
            ),
            // Fail closed: the sink or a store refused, the use did not happen.
            e if e.is_unavailable() => ApiError::unavailable(e.to_string()),
            Error::Erased { .. } => {
                let mut a = ApiError::new(StatusCode::GONE, None, "this customer was erased");
                a.body["rule"] = "R11".into();
                a
            }
            // Messages name kinds, purposes and rules: never a value, never
            // a subject id (the log gets the subject's tag).
            e => ApiError::internal(&e.to_string()),
        };
        a.subject = subject;
        a
    }
}

impl From<BoxError> for ApiError {
    fn from(e: BoxError) -> Self {
        db_error(e)
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.detail.is_some() || self.subject.is_some() {
            response.extensions_mut().insert(ErrorDetail {
                detail: self.detail,
                subject: self.subject,
            });
        }
        response
    }
}

// ---------------------------------------------------------------------------
// The shop's own tables

/// The shop's tables, in `d`'s column types (`BLOB` or `BYTEA`, the row id
/// or `BIGSERIAL`).
fn shop_tables(d: Dialect) -> String {
    let (bytes, key) = (d.bytes(), d.serial_key());
    format!(
        "
CREATE TABLE IF NOT EXISTS customers (
    subject     {bytes} PRIMARY KEY,  -- a random id, not derived from any value
    name        {bytes} NOT NULL,     -- sealed envelopes
    email       {bytes} NOT NULL,
    address     {bytes} NOT NULL,
    phone       {bytes} NOT NULL,
    email_index {bytes} UNIQUE        -- the email's lookup token; NULL once erased
);
CREATE TABLE IF NOT EXISTS orders (
    id      {key},
    subject {bytes} NOT NULL REFERENCES customers (subject),
    record  {bytes} NOT NULL,         -- sealed purchase record
    charge  TEXT NOT NULL             -- the processor's charge id
);
CREATE INDEX IF NOT EXISTS orders_subject ON orders (subject);
"
    )
}

/// A customer: every field collected for the purchase, sealed as a whole
/// into a `customers` row (`SealedCustomer`), the email's lookup token in
/// `email_index`.
#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    email: PersonalInfo<EmailAddress, Transaction>,
    address: PersonalInfo<PostalAddress, Transaction>,
    phone: PersonalInfo<PhoneNumber, Transaction>,
}

/// The columns of a `SealedCustomer` under the names its row constructors
/// read (`SealedRecord::COLUMNS`): the table calls the lookup column
/// `email_index`, and an erased customer's is empty (the receipt's token
/// was removed), read as `$2`, 32 zero bytes: the token of no address.
const CUSTOMER_COLUMNS: &str =
    "subject, name, email, COALESCE(email_index, $2) AS email_lookup, address, phone";

/// The shop's statements, the same SQL on both databases (`$1`, `$2`, …);
/// `Sealed` and `LookupToken` are column types of both drivers, bound and
/// read as they are.
pub struct Tables {
    store: Store,
    /// Time spent in the shop's own statements, for the load figure.
    nanos: AtomicU64,
}

impl Tables {
    fn new(store: Store) -> Tables {
        Tables {
            store,
            nanos: AtomicU64::new(0),
        }
    }

    /// Runs the shop's own statements, timed.
    fn timed<R, E: Into<BoxError>>(
        &self,
        f: impl FnOnce(&Store) -> Result<R, E>,
    ) -> Result<R, ApiError> {
        let start = Instant::now();
        let out = f(&self.store);
        add(&self.nanos, start.elapsed());
        out.map_err(|e| db_error(e.into()))
    }

    /// `f`'s sealed customer, inserted in the transaction that commits the
    /// request durably.
    fn commit_request(
        &self,
        custodian: &privacy_pledge::Custodian,
        f: impl FnOnce() -> Result<SealedCustomer, ApiError>,
    ) -> Result<SealedCustomer, ApiError> {
        self.store.commit_request(custodian, f, |tx, row| {
            let start = Instant::now();
            let inserted = tx.execute(
                "INSERT INTO customers (subject, name, email, address, phone, email_index)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &row.subject,
                    &row.name,
                    &row.email,
                    &row.address,
                    &row.phone,
                    &row.email_lookup,
                ],
            );
            add(&self.nanos, start.elapsed());
            inserted.map(drop).map_err(|e| db_error(e.into()))
        })
    }

    fn find_by_email(
        &self,
        index: &LookupToken<EmailAddress>,
    ) -> Result<Option<SubjectId>, ApiError> {
        let found = self.timed(|db| {
            db.query(
                "SELECT subject FROM customers WHERE email_index = $1",
                &[index],
                |r| r.get::<SubjectId>(0),
            )
        })?;
        Ok(found.first().copied())
    }

    fn customer_exists(&self, subject: SubjectId) -> Result<bool, ApiError> {
        let found = self.timed(|db| {
            db.query(
                "SELECT subject FROM customers WHERE subject = $1",
                &[&subject],
                |_| Ok(()),
            )
        })?;
        Ok(!found.is_empty())
    }

    /// The customer's row, mapped by column name with the constructors
    /// `#[derive(PersonalRecord)]` generates.
    fn customer(&self, subject: SubjectId) -> Result<Option<SealedCustomer>, ApiError> {
        let mut rows = self.timed(|db| {
            db.query(
                &format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE subject = $1"),
                &[&subject, &&[0_u8; 32][..]],
                SealedCustomer::from_store_row,
            )
        })?;
        Ok(rows.pop())
    }

    fn insert_order(
        &self,
        subject: SubjectId,
        record: &Sealed<PurchaseRecord, Transaction>,
        charge: &str,
    ) -> Result<(), ApiError> {
        self.timed(|db| {
            db.execute(
                "INSERT INTO orders (subject, record, charge) VALUES ($1, $2, $3)",
                &[&subject, record, &charge],
            )
        })
        .map(drop)
    }

    fn orders(
        &self,
        subject: SubjectId,
    ) -> Result<Vec<Sealed<PurchaseRecord, Transaction>>, ApiError> {
        self.timed(|db| {
            db.query(
                "SELECT record FROM orders WHERE subject = $1 ORDER BY id",
                &[&subject],
                |r| r.get(0),
            )
        })
    }

    /// Applies one entry of an erasure receipt: clears the index entries
    /// holding `token`. Returns how many.
    fn forget_index(&self, token: &LookupRef) -> Result<u64, ApiError> {
        self.timed(|db| {
            db.execute(
                "UPDATE customers SET email_index = NULL WHERE email_index = $1",
                &[token],
            )
        })
    }
}

/// A statement of the shop's own failed: a unique email index is `409`,
/// anything else `500`, logged with the database's message and code (for
/// PostgreSQL never its DETAIL, which may quote a row).
fn db_error(e: BoxError) -> ApiError {
    if let Some(StoreError::Constraint(_)) = e.downcast_ref::<StoreError>() {
        return email_taken();
    }
    if let Some(e) = e.downcast_ref::<rusqlite::Error>() {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
            return email_taken();
        }
    }
    if let Some(db) = e
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::as_db_error)
    {
        if *db.code() == postgres::error::SqlState::UNIQUE_VIOLATION {
            return email_taken();
        }
        return ApiError::internal(&format!("{} (SQLSTATE {})", db.message(), db.code().code()));
    }
    ApiError::internal(&e.to_string())
}

// ---------------------------------------------------------------------------
// Where request time goes

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    request: AtomicU64,
    blocking: AtomicU64,
}

fn add(counter: &AtomicU64, d: Duration) {
    counter.fetch_add(
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

impl Stats {
    fn request(&self, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        add(&self.request, took);
    }

    fn snapshot(&self, tables: &Tables) -> StatsSnapshot {
        let d = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed));
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            request: d(&self.request),
            blocking: d(&self.blocking),
            shop_sql: d(&tables.nanos),
        }
    }
}

/// Totals since start: requests answered, their time (in the service, from
/// routing to the response), the time of their blocking closures, and of
/// the shop's own SQL inside those. The crate's share is
/// `(blocking - shop_sql) / request`: custodian calls with their key store,
/// consent store and audit sink.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub request: Duration,
    pub blocking: Duration,
    pub shop_sql: Duration,
}
