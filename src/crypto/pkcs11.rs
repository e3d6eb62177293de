//! Key-encryption keys in an HSM: [`Pkcs11Provider`], a [`KeyProvider`]
//! over PKCS#11 (feature `pkcs11`).

use core::fmt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

use super::aead::{NONCE_LEN, TAG_LEN};
use super::keyring::{KeyProvider, Keyring, Wrapped};
use super::{random_array, KeyError};
use crate::Error;

/// The label the master secret of the derived keys is computed from.
const MASTER_INFO: &[u8] = b"privacy-pledge/pkcs11/master/v1";

/// How to reach the token: the PKCS#11 module, the token's label, the
/// user's PIN. The PIN is held as a [`SecretString`] (wiped on drop, never
/// printed).
pub struct Pkcs11Config {
    module: PathBuf,
    token_label: String,
    pin: SecretString,
    label_prefix: String,
    settle: Duration,
    sessions: usize,
}

impl Pkcs11Config {
    /// The module at `module` (e.g. `/usr/lib/softhsm/libsofthsm2.so`), the
    /// initialised token labelled `token_label`, logged in with `pin`.
    pub fn new(module: impl AsRef<Path>, token_label: &str, pin: SecretString) -> Self {
        Pkcs11Config {
            module: module.as_ref().to_owned(),
            token_label: token_label.to_owned(),
            pin,
            label_prefix: "pp-".to_owned(),
            settle: Duration::from_secs(2),
            sessions: 8,
        }
    }

    /// The prefix of the objects' labels (default `pp-`: `pp-kek-v1`,
    /// `pp-master`), so that several services can share a token.
    pub fn label_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.label_prefix);
        self
    }

    /// How old the winner of a new object's label must be before it is used
    /// (default 2 seconds): longer than creating an object on the token
    /// takes, plus the fleet's clock skew. See [`Pkcs11Provider`].
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// How many idle sessions are kept open (default 8, at least 1).
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"[redacted]")
            .field("label_prefix", &self.label_prefix)
            .field("settle", &self.settle)
            .finish()
    }
}

struct Versions {
    current: u32,
    /// The winner of each version's label: what wraps and unwraps first.
    handles: BTreeMap<u32, ObjectHandle>,
    /// The other objects of each version's label (see "Processes starting
    /// together"): unwrapping tries them when the winner's tag fails.
    others: BTreeMap<u32, Vec<ObjectHandle>>,
}

/// A [`KeyProvider`] whose key-encryption keys live in an HSM, over PKCS#11
/// (feature `pkcs11`), tested against SoftHSM2.
///
/// Each key-encryption-key (KEK) version is an AES-256 secret key object
/// generated **on the token** — `CKA_TOKEN`, `CKA_SENSITIVE`, not
/// `CKA_EXTRACTABLE`, not modifiable or copyable, `CKA_ENCRYPT`/`CKA_DECRYPT`
/// only — labelled
/// `pp-kek-v{N}` (the `pp-` prefix is [`Pkcs11Config::label_prefix`]). Its
/// bytes never leave the token: a subject data key is wrapped by
/// `C_Encrypt` with `CKM_AES_GCM` on the token (a random 96-bit IV, the
/// subject-and-generation binding as associated data, a 128-bit tag) and
/// unwrapped by `C_Decrypt`. The wrapped bytes have the layout of the local
/// [`Keyring`](super::Keyring)'s: IV, ciphertext, tag (60 bytes).
/// `CKM_AES_KEY_WRAP_KWP` (RFC 5649, which SoftHSM2 implements) is not
/// used: it takes no associated data, so a wrapped key copied to another
/// subject's row would unwrap there.
///
/// [`Pkcs11Provider::rotate`] generates version N+1 on the token;
/// [`retire`](KeyProvider::retire) (through
/// [`Custodian::retire_key_version`](crate::Custodian::retire_key_version),
/// once [`Custodian::rewrap_keys`](crate::Custodian::rewrap_keys) has moved
/// every stored key off it) destroys the version's object with
/// `C_DestroyObject`. From then on no copy of the key store — a backup, a
/// replica, a dump — opens anything wrapped under it, even together with
/// the PIN (threat-model actor A3).
///
/// # What stays in the process
///
/// Pseudonyms, lookup tokens, subject tags, consent rows and the audit
/// chain are computed on every call, in the process; their keys are
/// derived (HKDF-SHA-256, as in [`Keyring`](super::Keyring)) from a master
/// secret. [`Pkcs11Provider::keyring`] computes that master secret **in the
/// token** — `CKM_SHA256_HMAC` of a fixed label under a non-extractable
/// generic-secret object `pp-master` — so every process of the fleet gets
/// the same one and none is ever stored outside the token. But it, and the
/// keys derived from it, are in the process's memory while it runs, like
/// each data key being used. The KEKs never are.
///
/// # Processes starting together (A5)
///
/// PKCS#11 has no "create unless it exists". Objects are created by
/// find-or-create, and every object carries a `CKA_ID` of its creation time
/// (milliseconds since the epoch, big-endian, taken just before it is
/// generated) and 8 random bytes. Of the objects with one label, the one
/// with the lowest `CKA_ID` wins — but only as found by a search that began
/// at least [`settle`](Pkcs11Config::settle) (default 2 s) after its
/// creation time, and, while it is young (less than three settle times
/// old), confirmed by a second search half a settle time later. By then any
/// object that could beat it (one created earlier by a process whose search
/// missed the other) is on the token and seen, provided generating a key
/// takes less than the settle time and the fleet's clocks agree to well
/// within it.
///
/// That is an assumption about time, so nothing lost rests on it: the
/// losers are **never destroyed** by settling. A process whose search
/// missed the winner (a slow generation, or a token file another process
/// was rewriting: both seen with SoftHSM2 on a loaded machine) wraps under
/// a loser, and every process unwraps such a key by trying the version's
/// other objects when the winner's tag does not verify. The extra objects
/// of a version go when the version is retired
/// ([`KeyProvider::retire`] destroys every object of its label). The
/// master secret has no such fallback (a different master gives different
/// pseudonyms), so it is the confirmation that guards it.
/// The wait is paid once per version, by the processes that create it.
///
/// # Sessions
///
/// The provider keeps a small pool of read-write sessions (one per
/// concurrent call, at most [`Pkcs11Config::sessions`] kept idle), logged in
/// as the user once; a session whose call failed is closed rather than
/// reused. Object handles of the versions are cached and looked up again by
/// [`refresh`](KeyProvider::refresh) when another process rotated or
/// retired.
///
/// A child forked after the provider opened holds copies of the parent's
/// sessions, which PKCS#11 forbids it to use (a module that talks to a
/// network HSM would share the parent's connection): every call of the
/// child's that needs the token is refused ([`KeyError::Provider`]), and
/// its copies of the sessions are never closed, so the parent's go on. A
/// child opens a provider of its own.
///
/// ```no_run
/// use std::sync::Arc;
/// use privacy_pledge::Custodian;
/// use privacy_pledge::crypto::{Pkcs11Config, Pkcs11Provider};
///
/// let hsm = Arc::new(Pkcs11Provider::open(Pkcs11Config::new(
///     "/usr/lib/softhsm/libsofthsm2.so",
///     "pp-test",
///     std::env::var("PP_PKCS11_PIN")?.into(),
/// ))?);
/// let custodian = Custodian::builder()
///     .keyring(hsm.keyring()?) // pseudonym, lookup, audit keys
///     .key_provider(hsm.clone()) // KEKs: on the token only
///     .build()?;
///
/// // After erasures: a new version, every key moved to it, the old destroyed.
/// let old = hsm.current_version_on_token()?;
/// hsm.rotate()?;
/// custodian.rewrap_keys(old)?;
/// custodian.retire_key_version(old)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pkcs11Provider {
    ctx: Pkcs11,
    slot: Slot,
    pin: SecretString,
    prefix: String,
    settle: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Session>>,
    versions: RwLock<Versions>,
    /// When `refresh` last searched the token and found nothing new.
    idle_since: Mutex<Option<Instant>>,
    /// The process that opened the sessions (see "Sessions").
    pid: u32,
}

fn provider_error(what: &'static str, e: CkError) -> KeyError {
    // The error names a return value and a function, never key material.
    KeyError::Provider(format!("PKCS#11 {what}: {e}").into())
}

fn login_error(e: CkError) -> KeyError {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => {
            KeyError::Provider("PKCS#11 C_Login: the PIN is incorrect".into())
        }
        e => provider_error("C_OpenSession/C_Login", e),
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The creation time (milliseconds) in an object's `CKA_ID`, 0 if it has
/// none of this form (an object made by hand counts as old).
fn born(id: &[u8]) -> u64 {
    id.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Runs a token call again while it fails with `CKR_GENERAL_ERROR`,
/// `CKR_FUNCTION_FAILED` or `CKR_DEVICE_ERROR`, at most 8 times in about
/// half a second: SoftHSM2 reports a token file that another process is
/// rewriting that way.
fn retry<T>(mut call: impl FnMut() -> Result<T, CkError>) -> Result<T, CkError> {
    let mut pause = Duration::from_millis(4);
    for _ in 0..7 {
        match call() {
            Err(CkError::Pkcs11(
                RvError::GeneralError | RvError::FunctionFailed | RvError::DeviceError,
                _,
            )) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(128));
            }
            other => return other,
        }
    }
    call()
}

fn handle_gone(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)
    )
}

/// How many times `retire` destroys what it finds and searches again
/// before it reports the version's objects as still there.
const RETIRE_ROUNDS: usize = 4;

/// How often `refresh` searches the token at most while searching brings
/// nothing new.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// How many providers of this process are open: the module is initialised
/// anew only while there are none.
static LIVE: Mutex<usize> = Mutex::new(0);

impl Versions {
    /// Takes in a version's settled objects and makes the newest version
    /// current; returns whether anything changed.
    fn put(&mut self, version: u32, settled: Settled) -> bool {
        let mut changed = self.handles.insert(version, settled.winner) != Some(settled.winner);
        let others = self.others.entry(version).or_default();
        for h in settled.others {
            if !others.contains(&h) {
                others.push(h);
                changed = true;
            }
        }
        self.current = self.handles.keys().next_back().copied().unwrap_or(0);
        changed
    }
}

/// The objects of one label after settling.
struct Settled {
    winner: ObjectHandle,
    others: Vec<ObjectHandle>,
}

/// What kind of object a label names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kek,
    Master,
}

impl Pkcs11Provider {
    /// Loads the module, finds the token by label, logs in, and reads the
    /// KEK versions on it; on a token with none, generates version 1 (see
    /// [`Pkcs11Provider`] for processes starting together).
    pub fn open(config: Pkcs11Config) -> Result<Self, KeyError> {
        let ctx =
            Pkcs11::new(&config.module).map_err(|e| provider_error("loading the module", e))?;
        // SoftHSM2 reads its tokens at C_Initialize, and may miss one whose
        // files another process is rewriting then: looked for again, and
        // after initialising the module anew if no other provider of this
        // process uses it (finalising ends every session of the process).
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = None;
        let mut first = None;
        for _ in 0..10 {
            let ours = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                Ok(()) => true,
                // Another context of this process (the same module) did it.
                Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
                Err(e) => return Err(provider_error("C_Initialize", e)),
            };
            for _ in 0..5 {
                slot = Self::find_token(&ctx, &config.token_label).unwrap_or(None);
                // A token read mid-rewrite may also say its PIN is not set
                // (and keep saying so in this process): logged in here.
                if let Some(found) = slot {
                    match Self::login_raw(&ctx, found, &config.pin) {
                        Ok(session) => first = Some(session),
                        Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => slot = None,
                        Err(e) => return Err(login_error(e)),
                    }
                }
                if slot.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if slot.is_some() || !ours || *live > 0 {
                break;
            }
            let _ = ctx.clone().finalize();
        }
        let slot = slot.ok_or(KeyError::Provider(
            "PKCS#11: no initialised token with that label".into(),
        ))?;
        *live += 1;
        drop(live);
        let provider = Pkcs11Provider {
            ctx,
            slot,
            pin: config.pin,
            prefix: config.label_prefix,
            settle: config.settle,
            max_idle: config.sessions,
            idle: Mutex::new(first.into_iter().collect()),
            versions: RwLock::new(Versions {
                current: 0,
                handles: BTreeMap::new(),
                others: BTreeMap::new(),
            }),
            idle_since: Mutex::new(None),
            pid: std::process::id(),
        };
        provider.with_session(|s| {
            provider.scan(s)?;
            if provider.read().handles.is_empty() {
                let settled = provider.find_or_create(s, Kind::Kek, 1)?;
                provider.write().put(1, settled);
            }
            Ok(())
        })?;
        Ok(provider)
    }

    fn find_token(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, KeyError> {
        for s in retry(|| ctx.get_slots_with_initialized_token())
            .map_err(|e| provider_error("listing slots", e))?
        {
            let info =
                retry(|| ctx.get_token_info(s)).map_err(|e| provider_error("C_GetTokenInfo", e))?;
            if info.label().trim_end() == label {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.versions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Versions> {
        self.versions.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a pooled session (a new one, logged in, if none is
    /// idle); the session goes back to the pool only if `f` succeeded.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        if self.forked() {
            return Err(KeyError::Provider(
                "PKCS#11: this process was forked from the one that opened the provider, \
                 whose sessions it may not use: open a provider in this process"
                    .into(),
            ));
        }
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => self.new_session()?,
        };
        let out = f(&session);
        if out.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.max_idle {
                idle.push(session);
            }
        }
        out
    }

    /// Whether this process is not the one that opened the provider.
    fn forked(&self) -> bool {
        std::process::id() != self.pid
    }

    fn new_session(&self) -> Result<Session, KeyError> {
        Self::login(&self.ctx, self.slot, &self.pin)
    }

    fn login(ctx: &Pkcs11, slot: Slot, pin: &SecretString) -> Result<Session, KeyError> {
        Self::login_raw(ctx, slot, pin).map_err(login_error)
    }

    /// A new read-write session, logged in. Logging in is per application:
    /// a session opened after another logged in is logged in already.
    fn login_raw(ctx: &Pkcs11, slot: Slot, pin: &SecretString) -> Result<Session, CkError> {
        let session = retry(|| ctx.open_rw_session(slot))?;
        match retry(|| session.login(UserType::User, Some(pin))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(e),
        }
    }

    fn label(&self, kind: Kind, version: u32) -> String {
        match kind {
            Kind::Kek => format!("{}kek-v{version}", self.prefix),
            Kind::Master => format!("{}master", self.prefix),
        }
    }

    /// The version a KEK label names, if it is one of ours.
    fn version_of(&self, label: &[u8]) -> Option<u32> {
        let rest = label.strip_prefix(self.prefix.as_bytes())?;
        let digits = rest.strip_prefix(b"kek-v")?;
        let text = std::str::from_utf8(digits).ok()?;
        if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().filter(|&v| v > 0)
    }

    /// The secret-key objects labelled `label`, with their `CKA_ID`s.
    /// Whether `h` names an object with the label `label` (`false` for a
    /// handle that names nothing any more).
    fn labelled(&self, s: &Session, h: ObjectHandle, label: &str) -> Result<bool, KeyError> {
        match retry(|| s.get_attributes(h, &[AttributeType::Label])) {
            Ok(attrs) => Ok(attrs
                .iter()
                .any(|a| matches!(a, Attribute::Label(l) if l.as_slice() == label.as_bytes()))),
            Err(e) if handle_gone(&e) => Ok(false),
            Err(e) => Err(provider_error("C_GetAttributeValue", e)),
        }
    }

    fn find(&self, s: &Session, label: &str) -> Result<Vec<(ObjectHandle, Vec<u8>)>, KeyError> {
        let found = retry(|| {
            s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
        })
        .map_err(|e| provider_error("C_FindObjects", e))?;
        let mut out = Vec::with_capacity(found.len());
        for h in found {
            match retry(|| s.get_attributes(h, &[AttributeType::Id])) {
                Ok(attrs) => {
                    let id = attrs
                        .into_iter()
                        .find_map(|a| match a {
                            Attribute::Id(id) => Some(id),
                            _ => None,
                        })
                        .unwrap_or_default();
                    out.push((h, id));
                }
                // Destroyed by another process since the find.
                Err(e) if handle_gone(&e) => {}
                Err(e) => return Err(provider_error("C_GetAttributeValue", e)),
            }
        }
        Ok(out)
    }

    /// Reads every KEK version on the token (settling each, see
    /// [`Pkcs11Provider`]); returns whether anything changed.
    fn scan(&self, s: &Session) -> Result<bool, KeyError> {
        let found = retry(|| {
            s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::KeyType(KeyType::AES),
            ])
        })
        .map_err(|e| provider_error("C_FindObjects", e))?;
        let mut versions = std::collections::BTreeSet::new();
        for h in found {
            match retry(|| s.get_attributes(h, &[AttributeType::Label])) {
                Ok(attrs) => {
                    for a in attrs {
                        if let Attribute::Label(label) = a {
                            versions.extend(self.version_of(&label));
                        }
                    }
                }
                Err(e) if handle_gone(&e) => {}
                Err(e) => return Err(provider_error("C_GetAttributeValue", e)),
            }
        }
        let mut found = BTreeMap::new();
        for v in versions {
            // A winner this process confirmed before needs no second search.
            let known = self.read().handles.get(&v).copied();
            if let Some(settled) = self.settled(s, &self.label(Kind::Kek, v), known)? {
                found.insert(v, settled);
            }
        }
        // Versions are only added here: one is dropped when the token
        // refuses its handle (destroyed), or by this provider's `retire`,
        // never because one search missed it.
        let mut ours = self.write();
        let mut changed = false;
        for (v, settled) in found {
            changed |= ours.put(v, settled);
        }
        Ok(changed)
    }

    /// The objects labelled `label` once settled: the winner (the lowest
    /// `CKA_ID` among those found, at least the settle time old, and found
    /// again by a second search while young) and the others, oldest first.
    /// Nothing is destroyed (see [`Pkcs11Provider`]). `None` if there is none.
    /// `confirmed`: a winner of this label found twice already.
    fn settled(
        &self,
        s: &Session,
        label: &str,
        confirmed: Option<ObjectHandle>,
    ) -> Result<Option<Settled>, KeyError> {
        let settle = self.settle.as_millis() as u64;
        let mut candidate = confirmed;
        loop {
            // The time before the search: a winner ripe then was ripe for
            // the whole search, so every object that could beat it was seen.
            let searched = now_millis();
            let mut found = self.find(s, label)?;
            found.sort_by(|a, b| a.1.cmp(&b.1));
            let Some((winner, id)) = found.first().cloned() else {
                return Ok(None);
            };
            let born = born(&id);
            let ripe = born.saturating_add(settle);
            if searched < ripe {
                candidate = None;
                std::thread::sleep(Duration::from_millis(ripe - searched));
                continue;
            }
            let young = searched < born.saturating_add(settle.saturating_mul(3));
            if young && candidate != Some(winner) {
                // Ripe but young: found again half a settle time later
                // before it counts (a search that missed an object being
                // written, or a slow generation, is not believed alone).
                candidate = Some(winner);
                std::thread::sleep(Duration::from_millis((settle / 2).max(1)));
                continue;
            }
            return Ok(Some(Settled {
                winner,
                others: found.into_iter().skip(1).map(|(h, _)| h).collect(),
            }));
        }
    }

    /// The settled object `kind`/`version`, generated on the token first if
    /// there is none.
    fn find_or_create(&self, s: &Session, kind: Kind, version: u32) -> Result<Settled, KeyError> {
        let label = self.label(kind, version);
        loop {
            if let Some(settled) = self.settled(s, &label, None)? {
                return Ok(settled);
            }
            // Its creation time, taken just before it is generated: a
            // generation takes less than the settle time (the assumption).
            let mut id = now_millis().to_be_bytes().to_vec();
            id.extend_from_slice(&random_array::<8>().map_err(|_| KeyError::Random)?);
            let mut template = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Modifiable(false),
                Attribute::Copyable(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
                Attribute::ValueLen(32.into()),
            ];
            let mechanism = match kind {
                Kind::Kek => {
                    template.extend([
                        Attribute::KeyType(KeyType::AES),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Sign(false),
                        Attribute::Derive(false),
                    ]);
                    Mechanism::AesKeyGen
                }
                Kind::Master => {
                    template.extend([
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                        Attribute::Sign(true),
                        Attribute::Verify(false),
                        Attribute::Encrypt(false),
                        Attribute::Decrypt(false),
                        Attribute::Derive(false),
                    ]);
                    Mechanism::GenericSecretKeyGen
                }
            };
            // SoftHSM2 has been seen to refuse this (constant) template as
            // inconsistent once in a while when other processes write the
            // token at the same time: tried again, a few times.
            let mut generated = retry(|| s.generate_key(&mechanism, &template));
            for _ in 0..4 {
                if !matches!(
                    generated,
                    Err(CkError::Pkcs11(RvError::TemplateInconsistent, _))
                ) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                generated = retry(|| s.generate_key(&mechanism, &template));
            }
            generated.map_err(|e| provider_error("C_GenerateKey", e))?;
            // Settled (and raced) on the next turn.
        }
    }

    /// The live KEK versions on the token, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.read().handles.keys().copied().collect()
    }

    /// The newest version on the token now (read again from the token,
    /// taking in what another process rotated or retired).
    pub fn current_version_on_token(&self) -> Result<u32, KeyError> {
        self.with_session(|s| self.scan(s))?;
        Ok(self.read().current)
    }

    /// Generates the next KEK version on the token and makes it current;
    /// returns it. Versions another process made are read first, and two
    /// processes rotating at once agree on one object (see [`Pkcs11Provider`]). Data keys wrapped under older versions still unwrap until
    /// [`Custodian::rewrap_keys`](crate::Custodian::rewrap_keys) moves them
    /// and [`Custodian::retire_key_version`](crate::Custodian::retire_key_version)
    /// destroys the old object.
    pub fn rotate(&self) -> Result<u32, KeyError> {
        let next = self
            .current_version_on_token()?
            .checked_add(1)
            .ok_or(KeyError::Unsupported { version: u32::MAX })?;
        self.rotate_to(next)?;
        Ok(next)
    }

    /// Makes `version` current, generating it on the token unless it is
    /// there already: the processes of a fleet that agree on the number
    /// (e.g. from the key store) agree on one object, however many of them
    /// call this at once. Refused ([`KeyError::Unsupported`]) for 0 and for
    /// a version older than the newest held.
    pub fn rotate_to(&self, version: u32) -> Result<(), KeyError> {
        if version == 0 || version < self.current_version() {
            return Err(KeyError::Unsupported { version });
        }
        self.with_session(|s| {
            let settled = self.find_or_create(s, Kind::Kek, version)?;
            self.write().put(version, settled);
            Ok(())
        })
    }

    /// A [`Keyring`] whose master secret is computed in the token
    /// (`CKM_SHA256_HMAC` under the non-extractable object `pp-master`,
    /// generated on first use): the pseudonym, lookup, audit, consent and
    /// checkpoint keys of every process of the fleet, the same in each. Give
    /// it to [`CustodianBuilder::keyring`](crate::CustodianBuilder::keyring)
    /// together with this provider as
    /// [`key_provider`](crate::CustodianBuilder::key_provider): the
    /// custodian then wraps nothing under the keyring's own (derived) KEK.
    /// The master secret is in this process's memory (see [`Pkcs11Provider`]).
    pub fn keyring(&self) -> Result<Keyring, Error> {
        let mut mac = self.with_session(|s| {
            let h = self.find_or_create(s, Kind::Master, 0)?.winner;
            retry(|| s.sign(&Mechanism::Sha256Hmac, h, MASTER_INFO))
                .map_err(|e| provider_error("C_Sign", e))
        })?;
        let mut master = [0u8; 32];
        let ok = mac.len() == 32;
        if ok {
            master.copy_from_slice(&mac);
        }
        mac.zeroize();
        if !ok {
            return Err(KeyError::Provider("PKCS#11 C_Sign: not 32 bytes".into()).into());
        }
        let keyring = Keyring::from_master(master, [1]);
        master.zeroize();
        keyring
    }

    fn handle(&self, version: u32) -> Result<ObjectHandle, KeyError> {
        self.read()
            .handles
            .get(&version)
            .copied()
            .ok_or(KeyError::Retired { version })
    }

    fn wrap_once(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError> {
        let version = self.current_version();
        let key = self.handle(version)?;
        let mut iv = random_array::<NONCE_LEN>().map_err(|_| KeyError::Random)?;
        let sealed = self.with_session(|s| {
            let encrypt = || {
                let params = GcmParams::new(&mut iv, context, ((TAG_LEN * 8) as u64).into())?;
                s.encrypt(&Mechanism::AesGcm(params), key, data_key)
            };
            match retry(encrypt) {
                Err(e) if handle_gone(&e) => {
                    self.forget(version);
                    Err(KeyError::Retired { version })
                }
                other => other.map_err(|e| provider_error("C_Encrypt", e)),
            }
        })?;
        if sealed.len() != 32 + TAG_LEN {
            return Err(KeyError::Provider(
                "PKCS#11 C_Encrypt: unexpected length".into(),
            ));
        }
        let mut bytes = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
        bytes.extend_from_slice(&iv);
        bytes.extend_from_slice(&sealed);
        Ok(Wrapped {
            kek_version: version,
            bytes,
        })
    }

    /// `wrapped` decrypted under the object `key`; `None` if its tag does
    /// not verify (altered bytes, another subject's, or another object of
    /// the version), or if `key` is one of a version's other objects and is
    /// gone.
    fn decrypt_under(
        &self,
        key: ObjectHandle,
        version: u32,
        winner: bool,
        wrapped: &Wrapped,
        context: &[u8],
    ) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
        let mut iv = [0u8; NONCE_LEN];
        iv.copy_from_slice(&wrapped.bytes[..NONCE_LEN]);
        // A tag that does not verify (altered, or another subject's) is the
        // caller's bytes at fault, not the session's: it goes back to the pool.
        let plain = self.with_session(|s| {
            // SoftHSM2 reports a tag that does not verify as
            // CKR_GENERAL_ERROR (the standard says CKR_ENCRYPTED_DATA_INVALID),
            // as it does a token file being rewritten: tried three times.
            let mut decrypt = || {
                let params = GcmParams::new(&mut iv, context, ((TAG_LEN * 8) as u64).into())?;
                s.decrypt(&Mechanism::AesGcm(params), key, &wrapped.bytes[NONCE_LEN..])
            };
            let mut out = decrypt();
            for _ in 0..2 {
                if !matches!(out, Err(CkError::Pkcs11(RvError::GeneralError, _))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                out = decrypt();
            }
            match out {
                Ok(p) => Ok(Some(Zeroizing::new(p))),
                Err(e) if handle_gone(&e) && winner => {
                    self.forget(version);
                    Err(KeyError::Retired { version })
                }
                Err(e) if handle_gone(&e) => Ok(None),
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                    _,
                )) => Ok(None),
                Err(e) => Err(provider_error("C_Decrypt", e)),
            }
        })?;
        Ok(plain.filter(|p| p.len() == 32).map(|p| {
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(&p);
            out
        }))
    }

    /// A handle found invalid: the object was destroyed (by another
    /// process's retirement).
    fn forget(&self, version: u32) {
        let mut v = self.write();
        v.handles.remove(&version);
        v.others.remove(&version);
        v.current = v.handles.keys().next_back().copied().unwrap_or(0);
    }
}

impl KeyProvider for Pkcs11Provider {
    fn current_version(&self) -> u32 {
        self.read().current
    }

    fn versions(&self) -> Vec<u32> {
        Pkcs11Provider::versions(self)
    }

    /// Generates `version` on the token (or finds the object another
    /// process generated) and makes it current.
    fn rotate_to(&self, version: u32) -> Result<(), KeyError> {
        Pkcs11Provider::rotate_to(self, version)
    }

    /// Wraps under the current version; if its object is gone (another
    /// process retired it after rotating), reads the versions again and
    /// wraps under the newest, once.
    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError> {
        match self.wrap_once(data_key, context) {
            Err(KeyError::Retired { .. }) if self.with_session(|s| self.scan(s))? => {
                self.wrap_once(data_key, context)
            }
            other => other,
        }
    }

    /// Unwraps under the version's winning object; if its tag does not
    /// verify, under the version's other objects (a process that missed
    /// the winner when it started wrapped under one: see
    /// [`Pkcs11Provider`]), read from the token again at most every 100 ms.
    fn unwrap(&self, wrapped: &Wrapped, context: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let version = wrapped.kek_version;
        let key = self.handle(version)?;
        if wrapped.bytes.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(KeyError::Unwrap);
        }
        if let Some(key) = self.decrypt_under(key, version, true, wrapped, context)? {
            return Ok(key);
        }
        let mut tried = vec![key];
        for fresh in [false, true] {
            if fresh && !self.refresh()? {
                break;
            }
            // The winner too: a refresh may have found an older one.
            let candidates: Vec<ObjectHandle> = {
                let v = self.read();
                let winner = v.handles.get(&version).copied();
                let others = v.others.get(&version).into_iter().flatten().copied();
                winner.into_iter().chain(others).collect()
            };
            for h in candidates {
                if tried.contains(&h) {
                    continue;
                }
                tried.push(h);
                if let Some(key) = self.decrypt_under(h, version, false, wrapped, context)? {
                    return Ok(key);
                }
            }
        }
        Err(KeyError::Unwrap)
    }

    /// Destroys the version's object on the token (every object of its
    /// label). Refused for the current version.
    fn retire(&self, version: u32) -> Result<(), KeyError> {
        if version == self.current_version() {
            return Err(KeyError::InUse { version, keys: 0 });
        }
        let label = self.label(Kind::Kek, version);
        self.with_session(|s| {
            // The objects a search finds, and those this provider holds
            // handles of (a search has been seen to miss objects under
            // load): a handle is destroyed only while it still names an
            // object of this label, never one a stale handle now names.
            let cached: Vec<ObjectHandle> = {
                let v = self.read();
                let winner = v.handles.get(&version).copied();
                let others = v.others.get(&version).into_iter().flatten().copied();
                winner.into_iter().chain(others).collect()
            };
            let mut doomed: Vec<ObjectHandle> =
                self.find(s, &label)?.into_iter().map(|(h, _)| h).collect();
            for h in cached {
                if !doomed.contains(&h) && self.labelled(s, h, &label)? {
                    doomed.push(h);
                }
            }
            if doomed.is_empty() {
                // Retired elsewhere since this provider saw it: gone.
                if self.read().handles.contains_key(&version) {
                    self.forget(version);
                    return Ok(());
                }
                return Err(KeyError::Retired { version });
            }
            // Searched again until none is left: an object a search missed
            // would stay on the token, and the next scan would bring the
            // retired version back (A3 with a copy of the token).
            for _ in 0..RETIRE_ROUNDS {
                for h in doomed {
                    match retry(|| s.destroy_object(h)) {
                        Err(e) if !handle_gone(&e) => {
                            return Err(provider_error("C_DestroyObject", e));
                        }
                        _ => {}
                    }
                }
                doomed = self.find(s, &label)?.into_iter().map(|(h, _)| h).collect();
                if doomed.is_empty() {
                    self.forget(version);
                    return Ok(());
                }
            }
            Err(KeyError::Provider(
                "PKCS#11: objects of the retired version are still on the token after it \
                 destroyed them"
                    .into(),
            ))
        })
    }

    /// Reads the versions on the token again (another process rotated or
    /// retired).
    fn refresh(&self) -> Result<bool, KeyError> {
        // A key store row naming a version nobody has (an operator's edit)
        // cannot make every open search the token.
        let mut idle = self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        if idle.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
            return Ok(false);
        }
        let changed = self.with_session(|s| self.scan(s))?;
        *idle = if changed { None } else { Some(Instant::now()) };
        Ok(changed)
    }
}

impl Drop for Pkcs11Provider {
    fn drop(&mut self) {
        if self.forked() {
            // The parent's sessions: left open (see "Sessions"), and the
            // module loaded, as the parent has them.
            let idle = self.idle.get_mut().unwrap_or_else(|p| p.into_inner());
            std::mem::forget(std::mem::take(idle));
            std::mem::forget(self.ctx.clone());
            return;
        }
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        *live = live.saturating_sub(1);
    }
}

impl fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("slot", &self.slot.id())
            .field("label_prefix", &self.prefix)
            .field("versions", &self.versions())
            .field("pin", &"[redacted]")
            .finish()
    }
}
