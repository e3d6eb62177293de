//! The durable audit sink shared by the stores: one stream per sink, group
//! commit, signed checkpoints. Each store supplies only how a batch of rows
//! is written ([`BatchWriter`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::audit::chain::link;
use crate::audit::{
    AuditError, AuditEvent, AuditKey, AuditSink, Checkpoint, CheckpointSigner, CheckpointStore,
    SignedCheckpoint, StreamId,
};
use crate::time::Timestamp;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// How a store writes a batch of audit rows: the one thing the stores'
/// sinks do differently. Sealed: implemented by the stores of this crate.
pub trait BatchWriter: sealed::Sealed + Send + Sync {
    /// Writes `rows` (and, if given, the stream's new signed checkpoint) in
    /// one transaction: all or nothing. Durably before it returns, unless
    /// `durable` is false: then a durable commit the caller makes next on
    /// the same database does it (see [`crate::request::DatabaseId`]).
    fn write(
        &self,
        rows: &[Row<'_>],
        checkpoint: Option<(&SignedCheckpoint, &str)>,
        durable: bool,
    ) -> Result<(), AuditError>;

    /// The database the rows go to.
    fn database(&self) -> crate::request::DatabaseId;

    /// Keeps `checkpoint` as its stream's newest (if it is newer).
    fn upsert_checkpoint(
        &self,
        checkpoint: &SignedCheckpoint,
        json: &str,
    ) -> Result<(), AuditError>;

    /// Whether the last [`write`](Self::write) failed because a batch
    /// written before without a sync may have been lost (a server that
    /// restarted since): then the stream's head as last written is not
    /// known to be in the database, only as last written durably.
    fn lost_unflushed(&self) -> bool {
        false
    }
}

/// One audit row as a store writes it: the event's JSON and the query
/// columns copied from it.
#[derive(Debug)]
pub struct Row<'a> {
    pub(crate) columns: &'a Columns,
    pub(crate) json: &'a str,
}

impl Row<'_> {
    /// The stream id, as text.
    pub fn stream(&self) -> &str {
        &self.columns.stream
    }
    /// The sequence number.
    pub fn seq(&self) -> i64 {
        self.columns.seq
    }
    /// The time, Unix nanoseconds.
    pub fn time(&self) -> i64 {
        self.columns.time
    }
    /// The subject, as text.
    pub fn subject(&self) -> &str {
        &self.columns.subject
    }
    /// The action's name.
    pub fn action(&self) -> &str {
        self.columns.action
    }
    /// The chained event as JSON.
    pub fn json(&self) -> &str {
        self.json
    }
}

/// The query columns of one `pp_audit_log` row, copied from its event.
#[derive(Debug)]
pub(crate) struct Columns {
    pub(crate) stream: String,
    pub(crate) seq: i64,
    pub(crate) time: i64,
    pub(crate) subject: String,
    pub(crate) action: &'static str,
}

impl Columns {
    pub(crate) fn of(event: &AuditEvent) -> Result<Columns, AuditError> {
        let int = |v: u64| {
            i64::try_from(v).map_err(|_| AuditError::new("audit event field out of SQLite range"))
        };
        // Hex straight into a string of the right size: this runs for
        // every event a sink commits.
        let hex = |bytes: &[u8]| {
            let mut out = String::with_capacity(2 * bytes.len());
            crate::subject::push_hex(&mut out, bytes);
            out
        };
        Ok(Columns {
            stream: event
                .stream()
                .map(|s| hex(s.as_bytes()))
                .unwrap_or_default(),
            seq: int(event.seq())?,
            time: int(event.time().unix_nanos())?,
            subject: hex(event.subject().as_bytes()),
            action: event.action().name(),
        })
    }
}

/// An audit row read back: its event, if the JSON is an event and the
/// query columns `stored` (stream, seq, time, subject, action) agree with
/// it. An operator who edits only a column must not go unnoticed by the
/// queries that read it, so a disagreement is an error naming the row.
pub(crate) fn read_row(
    id: i64,
    json: &str,
    stored: (&str, i64, i64, &str, &str),
) -> Result<AuditEvent, super::StoreError> {
    let bad = || super::StoreError::Database(format!("pp_audit_log row {id} was altered"));
    let event: AuditEvent = serde_json::from_str(json).map_err(|_| bad())?;
    let c = Columns::of(&event).map_err(|_| bad())?;
    let copied = (
        c.stream.as_str(),
        c.seq,
        c.time,
        c.subject.as_str(),
        c.action,
    );
    if copied != stored {
        return Err(bad());
    }
    Ok(event)
}

/// The segment an `archive` call moves: its stream and last sequence
/// number (those of `up_to`, once it verifies under `key`), and where it
/// must start (the stream's start, or the head of `after`, the archive base
/// of the segment archived before it, which must verify under `key` too).
pub(crate) struct Segment {
    pub(crate) stream: String,
    pub(crate) last: i64,
    id: crate::audit::StreamId,
    start: crate::audit::Checkpoint,
    head: crate::audit::Checkpoint,
}

impl Segment {
    pub(crate) fn new(
        after: Option<&crate::audit::SignedCheckpoint>,
        up_to: &crate::audit::SignedCheckpoint,
        key: &crate::audit::CheckpointKey,
    ) -> Result<Segment, super::StoreError> {
        let refused = |why: &str| super::StoreError::Database(why.into());
        let (id, head) = up_to
            .verify(key)
            .map_err(|_| refused("the checkpoint does not verify"))?;
        let start = match after {
            None => crate::audit::Checkpoint::GENESIS,
            Some(base) => {
                let (of, start) = base
                    .verify(key)
                    .map_err(|_| refused("the base does not verify"))?;
                if !base.is_base() || of != id || start.seq() >= head.seq() {
                    return Err(refused(
                        "the base is not an archive base of this stream before the checkpoint",
                    ));
                }
                start
            }
        };
        let last =
            i64::try_from(head.seq()).map_err(|_| refused("sequence number out of range"))?;
        Ok(Segment {
            stream: id.to_string(),
            last,
            id,
            start,
            head,
        })
    }

    /// Writes the segment — `(seq, event)` rows of the stream, in order,
    /// from just after its start to `last` — to `out` as JSON lines,
    /// after checking that it is whole: every row there, each the event
    /// its `seq` column says, linked from the segment's start up to the
    /// checkpoint's head (an entry the operator deleted, edited or put in
    /// refuses the archive, so a base is never signed over it). Returns how
    /// many entries were written.
    pub(crate) fn write(
        &self,
        rows: &[(i64, String)],
        out: &mut dyn std::io::Write,
    ) -> Result<usize, super::StoreError> {
        let incomplete = || {
            super::StoreError::Database(
                "the segment to archive is not complete in pp_audit_log".into(),
            )
        };
        let mut events = Vec::with_capacity(rows.len());
        for (seq, json) in rows {
            let event: AuditEvent = serde_json::from_str(json).map_err(|_| incomplete())?;
            if i64::try_from(event.seq()).ok() != Some(*seq) {
                return Err(incomplete());
            }
            events.push(event);
        }
        crate::audit::signed::verify_segment(&events, self.id, self.start, self.head)
            .map_err(|_| incomplete())?;
        // The archive holds the events as this crate writes them, not the
        // rows' text (which the operator can reshape without changing an
        // event: a line break inside, padding past the line limit), and is
        // read back as the verifier reads it before any of it is written:
        // a base is never signed over bytes `verify_archive` cannot read.
        let mut bytes = Vec::with_capacity(rows.iter().map(|(_, j)| j.len() + 1).sum());
        for event in &events {
            serde_json::to_writer(&mut bytes, event).map_err(|_| incomplete())?;
            bytes.push(b'\n');
        }
        let read = crate::audit::read_jsonl(&bytes[..]).map_err(|e| {
            super::StoreError::Database(format!("the segment would not read back: {e}"))
        })?;
        if read != events {
            return Err(incomplete());
        }
        let failed =
            |e: std::io::Error| super::StoreError::Database(format!("archive write failed: {e}"));
        out.write_all(&bytes).map_err(failed)?;
        out.flush().map_err(failed)?;
        Ok(events.len())
    }
}

/// One chained event waiting for its commit.
struct Pending {
    columns: Columns,
    json: String,
    stream: StreamId,
    head: Checkpoint,
    done: Arc<Done>,
    /// Its caller returns only once it is on disk (false: a durable write
    /// of the caller's on the same database follows, see
    /// `request::DatabaseId`).
    durable: bool,
}

/// Where a waiting `record` call learns how its commit went.
#[derive(Default)]
struct Done {
    result: Mutex<Option<Result<(), AuditError>>>,
    cv: Condvar,
}

impl Done {
    fn set(&self, r: Result<(), AuditError>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.cv.notify_all();
    }

    fn wait(&self) -> Result<(), AuditError> {
        let mut slot = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.cv.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

struct Chain {
    stream: StreamId,
    head: Checkpoint,
    /// A commit failed: events chained after it can never be stored in this
    /// stream without a gap, so the next event starts a new stream.
    poisoned: bool,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Some thread is committing; new events join its next batch.
    leader: bool,
}

/// The durable audit sink of a store (`pp_audit_log`): chains events in its
/// own stream and commits concurrent `record` calls in one transaction
/// (group commit). Made by the stores, e.g. `SqliteStore::audit_sink`.
///
/// Each call returns only once its event is committed (`synchronous =
/// FULL`: on disk); if the transaction fails, every call in it fails, so the
/// operations they stand for do not happen (R10). Events chained after a
/// failed one cannot be stored without a gap in the stream, so they fail too,
/// and the sink continues in a new stream: no event is lost silently, none is
/// stored twice, and a process killed mid-batch leaves a stream whose stored
/// entries verify (the transaction is all or nothing). With checkpoints, the
/// head of what the old stream committed is signed at the next commit that
/// goes through (or at [`sign_checkpoint`](Self::sign_checkpoint)), so that
/// stream cannot be deleted unseen either.
///
/// While one thread commits, others queue; the first to find no commit
/// running becomes the next committer and takes everything queued. So under
/// load one commit (one `fsync`) serves many events, and with a single caller
/// each event is its own commit.
pub struct AuditStreamSink<W: BatchWriter> {
    writer: W,
    key: AuditKey,
    chain: Mutex<Chain>,
    queue: Mutex<Queue>,
    commits: AtomicU64,
    events: AtomicU64,
    /// The stream and head of the last event committed (written by a
    /// successful batch): what [`sign_checkpoint`](Self::sign_checkpoint)
    /// signs, never an event still queued or in a batch being written.
    written: Mutex<(StreamId, Checkpoint)>,
    /// The stream and head of the last batch committed with a sync: what
    /// a stream left after [`BatchWriter::lost_unflushed`] is signed at.
    written_durable: Mutex<(StreamId, Checkpoint)>,
    /// Heads of streams left after a failed commit, committed but not yet
    /// signed: signed at the next successful commit, or at
    /// [`sign_checkpoint`](Self::sign_checkpoint).
    abandoned: Mutex<Vec<(StreamId, Checkpoint)>>,
    checkpoints: Option<Arc<Checkpoints>>,
}

/// Signing checkpoints: who signs, where they go, how often.
struct Checkpoints {
    signer: CheckpointSigner,
    store: Box<dyn CheckpointStore>,
    every: u64,
    /// Also sign once this much time has passed since the last signature
    /// (checked when a batch commits).
    every_time: Option<std::time::Duration>,
    /// The last sequence number signed (of the current stream), and when.
    last: Mutex<(StreamId, u64)>,
    last_at: Mutex<std::time::Instant>,
    failures: AtomicU64,
    /// A checkpoint signed at a batch written without a sync, waiting for
    /// its request's durable commit before it is kept (see `Waiting`):
    /// later batches count from it, so they do not sign again meanwhile.
    waiting: Mutex<Option<(StreamId, u64)>>,
    /// The newest sequence number kept in `store`, per stream; held while
    /// saving, so saves run one at a time.
    kept: Mutex<std::collections::HashMap<StreamId, u64>>,
}

impl Checkpoints {
    /// Keeps `signed` in the checkpoint store, one save at a time, unless a
    /// newer checkpoint of its stream is kept already. Two signers — a
    /// commit reaching the count, and `sign_checkpoint` on another thread
    /// (a guard at shutdown) — would otherwise write the same file at once,
    /// or put an older checkpoint over a newer one, and the entries between
    /// would lose their vouching.
    fn keep(&self, signed: &SignedCheckpoint) -> Result<(), AuditError> {
        let (stream, seq) = (signed.stream(), signed.checkpoint().seq());
        let mut kept = lock(&self.kept);
        if kept.get(&stream).is_some_and(|&newest| newest > seq) {
            return Ok(());
        }
        self.store.save(signed)?;
        kept.insert(stream, seq);
        let mut last = lock(&self.last);
        if last.0 != stream || last.1 <= seq {
            *last = (stream, seq);
            *lock(&self.last_at) = std::time::Instant::now();
        }
        Ok(())
    }
}

/// A checkpoint waiting for the durable commit of the request whose batch
/// it vouches for: kept by [`keep`](Self::keep) once that commit is made.
/// Dropped unkept (the commit failed), it stops waiting, and the next batch
/// signs one again.
struct Waiting {
    cp: Arc<Checkpoints>,
    signed: Option<SignedCheckpoint>,
}

impl Waiting {
    fn new(cp: Arc<Checkpoints>, signed: SignedCheckpoint) -> Self {
        *lock(&cp.waiting) = Some((signed.stream(), signed.checkpoint().seq()));
        Waiting {
            cp,
            signed: Some(signed),
        }
    }

    fn keep(mut self) {
        if let Some(signed) = self.signed.take() {
            if self.cp.keep(&signed).is_err() {
                self.cp.failures.fetch_add(1, Ordering::Relaxed);
            }
            self.stop(&signed);
        }
    }

    fn stop(&self, signed: &SignedCheckpoint) {
        let mut waiting = lock(&self.cp.waiting);
        if *waiting == Some((signed.stream(), signed.checkpoint().seq())) {
            *waiting = None;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(signed) = self.signed.take() {
            self.stop(&signed);
        }
    }
}

impl<W: BatchWriter> fmt::Debug for AuditStreamSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditStreamSink")
            .field("stream", &self.stream())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<W: BatchWriter> AuditStreamSink<W> {
    /// A sink writing through `writer`, in a fresh stream.
    pub(crate) fn new(writer: W, key: AuditKey) -> Result<Self, AuditError> {
        let stream = StreamId::random().map_err(|_| AuditError::new("random generator failed"))?;
        Ok(AuditStreamSink {
            writer,
            key,
            chain: Mutex::new(Chain {
                stream,
                head: Checkpoint::GENESIS,
                poisoned: false,
            }),
            queue: Mutex::new(Queue::default()),
            commits: AtomicU64::new(0),
            events: AtomicU64::new(0),
            written: Mutex::new((stream, Checkpoint::GENESIS)),
            written_durable: Mutex::new((stream, Checkpoint::GENESIS)),
            abandoned: Mutex::default(),
            checkpoints: None,
        })
    }

    /// The stream this sink writes now (a new one after a failed commit).
    pub fn stream(&self) -> StreamId {
        lock(&self.chain).stream
    }

    /// The stream and head of the last chained event: after every `record`
    /// call has returned `Ok`, the head of what is committed. Keep it (signed,
    /// or somewhere the database's operator cannot write) to detect entries
    /// cut from the end of the stream later.
    pub fn checkpoint(&self) -> (StreamId, Checkpoint) {
        let c = lock(&self.chain);
        (c.stream, c.head)
    }

    /// Signs checkpoints of this sink's stream with `signer` and keeps them
    /// in `store` (outside the database; [`DirCheckpointStore`](crate::audit::DirCheckpointStore)
    /// is the default choice) and in `pp_checkpoints`: one after every
    /// `every` events (at least 1; written in the same transaction as the
    /// event that reaches the count), and one on each
    /// [`sign_checkpoint`](Self::sign_checkpoint) call — at clean shutdown,
    /// say. A verifier then needs only the public key
    /// ([`verify_public`](crate::audit::verify_public)).
    pub fn with_checkpoints(
        mut self,
        signer: CheckpointSigner,
        store: impl CheckpointStore + 'static,
        every: u64,
    ) -> Self {
        let stream = self.stream();
        self.checkpoints = Some(Arc::new(Checkpoints {
            signer,
            store: Box::new(store),
            every: every.max(1),
            every_time: None,
            last: Mutex::new((stream, 0)),
            last_at: Mutex::new(std::time::Instant::now()),
            failures: AtomicU64::new(0),
            waiting: Mutex::default(),
            kept: Mutex::default(),
        }));
        self
    }

    /// Also signs a checkpoint when `period` has passed since the last one
    /// (checked whenever a batch commits), so a quiet stream is still
    /// vouched for. No effect without [`with_checkpoints`](Self::with_checkpoints).
    pub fn checkpoint_every(mut self, period: std::time::Duration) -> Self {
        // Not shared yet: the sink is still being built (only a batch
        // written in a request holds a second handle, until it ends).
        if let Some(cp) = self.checkpoints.as_mut().and_then(Arc::get_mut) {
            cp.every_time = Some(period);
        }
        self
    }

    /// Signs the head of what the sink has committed now, and keeps it in
    /// the checkpoint store and in `pp_checkpoints`. Call it after the last
    /// event at clean shutdown. `Err` if the sink has no signer or a copy
    /// could not be kept.
    ///
    /// Events other threads are committing meanwhile are not covered (a
    /// checkpoint of an event whose commit then fails would vouch for an
    /// entry the trail never holds); the `pp_checkpoints` row is written
    /// durably first, so the log is on disk up to the signed head before
    /// the checkpoint leaves the database.
    pub fn sign_checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let cp = self
            .checkpoints
            .as_ref()
            .ok_or_else(|| AuditError::new("this sink signs no checkpoints"))?;
        self.sign_abandoned(cp)?;
        let (stream, head) = *lock(&self.written);
        self.sign_head(cp, stream, head)
    }

    /// Signs `head` of `stream` and keeps it: first in `pp_checkpoints`,
    /// durably (so the log is on disk up to it), then outside.
    fn sign_head(
        &self,
        cp: &Checkpoints,
        stream: StreamId,
        head: Checkpoint,
    ) -> Result<SignedCheckpoint, AuditError> {
        let signed = cp.signer.sign(stream, head, Timestamp::now());
        let json = serde_json::to_string(&signed)
            .map_err(|_| AuditError::new("checkpoint could not be encoded"))?;
        self.writer.upsert_checkpoint(&signed, &json)?;
        cp.keep(&signed)?;
        Ok(signed)
    }

    /// Signs the heads of the streams left after failed commits: what they
    /// hold was committed — uses that happened — and no later checkpoint
    /// names them, so unsigned they could be deleted, whole or their tail,
    /// with no verifier the wiser (A2). Those that cannot be signed now
    /// stay for the next try.
    fn sign_abandoned(&self, cp: &Checkpoints) -> Result<(), AuditError> {
        let mut abandoned = lock(&self.abandoned);
        while let Some(&(stream, head)) = abandoned.last() {
            if lock(&cp.kept)
                .get(&stream)
                .is_none_or(|&kept| kept < head.seq())
            {
                self.sign_head(cp, stream, head)?;
            }
            abandoned.pop();
        }
        Ok(())
    }

    /// A guard that signs this sink's stream head when it is dropped (see
    /// [`CheckpointGuard`]): keep it for as long as the process uses the
    /// sink, so every way out of that scope — return, `?`, panic — leaves a
    /// checkpoint covering the last committed event.
    pub fn checkpoint_guard(self: &Arc<Self>) -> CheckpointGuard
    where
        W: 'static,
    {
        CheckpointGuard {
            sink: Some(self.clone()),
        }
    }

    /// How many checkpoints signed after a commit could not be kept in the
    /// checkpoint store (the events themselves were committed); counts a
    /// failed signature of a dropped [`CheckpointGuard`] too.
    pub fn checkpoint_failures(&self) -> u64 {
        self.checkpoints
            .as_ref()
            .map_or(0, |c| c.failures.load(Ordering::Relaxed))
    }

    /// How many transactions this sink has committed (with
    /// [`events`](Self::events), how well group commit is batching).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How many events this sink has chained (committed or not).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Chains `events` as one contiguous run of the stream and queues them
    /// together; returns where their result will appear. Nothing is chained
    /// if one of them cannot be (the head moves only once all are), and the
    /// run is queued at once, so one committer takes all of it: one
    /// transaction, with no other call's event inside it.
    fn enqueue(&self, events: &[AuditEvent]) -> Result<Arc<Done>, AuditError> {
        let durable = !crate::request::durability_deferred(self.writer.database());
        let mut chain = lock(&self.chain);
        if chain.poisoned {
            chain.stream =
                StreamId::random().map_err(|_| AuditError::new("random generator failed"))?;
            chain.head = Checkpoint::GENESIS;
            chain.poisoned = false;
        }
        let done = Arc::new(Done::default());
        let mut head = chain.head;
        let mut run = Vec::with_capacity(events.len());
        for event in events {
            let seq = head
                .seq()
                .checked_add(1)
                .ok_or_else(|| AuditError::new("audit stream sequence exhausted"))?;
            let (linked, value) = link(&self.key, Some(chain.stream), &head, event, seq);
            let columns = Columns::of(&linked)?;
            let json = serde_json::to_string(&linked)
                .map_err(|_| AuditError::new("audit event could not be encoded"))?;
            head = Checkpoint::new(seq, value);
            run.push(Pending {
                columns,
                json,
                stream: chain.stream,
                head,
                done: done.clone(),
                durable,
            });
        }
        // Queued under the chain lock: queue order is chain order.
        lock(&self.queue).pending.append(&mut run);
        chain.head = head;
        self.events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(done)
    }

    /// Commits queued events until none is left, if no other thread is
    /// doing so; then waits for this call's own result.
    fn commit_or_wait(&self, done: &Done) -> Result<(), AuditError> {
        let mut queue = lock(&self.queue);
        if queue.leader {
            drop(queue);
            return done.wait();
        }
        queue.leader = true;
        loop {
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            let result = self.write(&batch);
            if result.is_err() {
                self.poison();
            }
            for p in &batch {
                p.done.set(result.clone());
            }
            queue = lock(&self.queue);
            if queue.pending.is_empty() {
                queue.leader = false;
                break;
            }
        }
        drop(queue);
        done.wait()
    }

    /// After a failed commit: fail everything chained after it and start a
    /// new stream with the next event.
    fn poison(&self) {
        let mut chain = lock(&self.chain);
        if !chain.poisoned && self.checkpoints.is_some() {
            // What this stream committed before the failure ends it: its
            // head is signed once a commit goes through again. (No other
            // commit runs meanwhile: this thread is the committer.)
            // If the failure says batches written without a sync may be
            // lost, only what was written with one is known to be there.
            let written = if self.writer.lost_unflushed() {
                *lock(&self.written_durable)
            } else {
                *lock(&self.written)
            };
            if written.0 == chain.stream && written.1.seq() > 0 {
                lock(&self.abandoned).push(written);
            }
        }
        chain.poisoned = true;
        let stranded = std::mem::take(&mut lock(&self.queue).pending);
        drop(chain);
        for p in stranded {
            p.done.set(Err(AuditError::new(
                "an earlier audit commit of this stream failed",
            )));
        }
    }

    fn write(&self, batch: &[Pending]) -> Result<(), AuditError> {
        if batch.is_empty() {
            return Ok(());
        }
        let due = self.due_checkpoint(batch);
        // One caller waiting for the disk: the whole batch is durable.
        let waited_for = batch.iter().any(|p| p.durable);
        // A checkpoint vouches for the rows outside the database, so it is
        // kept only once they are durable: now, or — in a request whose
        // durable commit to this database is still to come, on this thread,
        // later on the same log — after that commit (one flush for both).
        let keep_later = due.is_some()
            && !waited_for
            && crate::request::waits_for_durable(self.writer.database());
        let durable = waited_for || (due.is_some() && !keep_later);
        let rows: Vec<Row<'_>> = batch
            .iter()
            .map(|p| Row {
                columns: &p.columns,
                json: &p.json,
            })
            .collect();
        self.writer
            .write(&rows, due.as_ref().map(|(s, j)| (s, j.as_str())), durable)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        if let Some(last) = batch.last() {
            *lock(&self.written) = (last.stream, last.head);
            if durable {
                *lock(&self.written_durable) = (last.stream, last.head);
            }
        }
        if let Some(cp) = &self.checkpoints {
            if !lock(&self.abandoned).is_empty() && self.sign_abandoned(cp).is_err() {
                cp.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let (Some((signed, _)), Some(cp)) = (due, &self.checkpoints) {
            // The events are committed whatever happens here.
            if keep_later {
                // Never kept if that commit fails (nor, handed back, here:
                // the batch is not durable): the batch may then be lost,
                // and the checkpoint, not kept, is signed again by the next
                // batch (`last` moves only when one is kept).
                let waiting = Waiting::new(cp.clone(), signed);
                let _ = crate::request::after_durable(
                    self.writer.database(),
                    Box::new(move || waiting.keep()),
                );
            } else if cp.keep(&signed).is_err() {
                cp.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// A signed checkpoint of the batch's last event, if one is due.
    fn due_checkpoint(&self, batch: &[Pending]) -> Option<(SignedCheckpoint, String)> {
        let cp = self.checkpoints.as_ref()?;
        let last = batch.last()?;
        let (stream, signed) = *lock(&cp.last);
        let mut since = if stream == last.stream { signed } else { 0 };
        if let Some((stream, waiting)) = *lock(&cp.waiting) {
            if stream == last.stream {
                since = since.max(waiting);
            }
        }
        let by_count = last.head.seq().saturating_sub(since) >= cp.every;
        let by_time = cp
            .every_time
            .is_some_and(|t| lock(&cp.last_at).elapsed() >= t && last.head.seq() > since);
        if !by_count && !by_time {
            return None;
        }
        let signed = cp.signer.sign(last.stream, last.head, Timestamp::now());
        let json = serde_json::to_string(&signed).ok()?;
        Some((signed, json))
    }
}

impl<W: BatchWriter> AuditSink for AuditStreamSink<W> {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let done = self.enqueue(std::slice::from_ref(event))?;
        self.commit_or_wait(&done)
    }

    /// Chains `events` as one contiguous run of the stream and commits them
    /// in one transaction (with whatever other calls are queued then): all
    /// durable when this returns `Ok`, none stored when it returns `Err`.
    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let done = self.enqueue(events)?;
        self.commit_or_wait(&done)
    }

    /// `true`: a batch is one transaction, so a custodian's
    /// [request scope](crate::Custodian::request) commits its events here
    /// once.
    fn atomic_batches(&self) -> bool {
        true
    }

    /// The store's database: its key store's writes inside a request scope
    /// are made durable by the scope's commit here.
    fn database(&self) -> Option<crate::request::DatabaseId> {
        Some(self.writer.database())
    }
}

/// What a [`CheckpointGuard`] signs through: a sink of any store.
trait SignsCheckpoints: Send + Sync {
    fn sign(&self) -> Result<SignedCheckpoint, AuditError>;
    fn sign_failed(&self);
}

impl<W: BatchWriter> SignsCheckpoints for AuditStreamSink<W> {
    fn sign(&self) -> Result<SignedCheckpoint, AuditError> {
        self.sign_checkpoint()
    }

    fn sign_failed(&self) {
        if let Some(cp) = &self.checkpoints {
            cp.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Signs an audit stream's head when dropped, so that a process that stops
/// — at the end of `main`, on an error returned with `?`, or unwinding from
/// a panic — leaves a signed checkpoint covering its last committed event,
/// and a verifier with the public key vouches for the whole stream
/// ([`verify_public`](crate::audit::verify_public)). Without one, the
/// entries after the last periodic checkpoint can be cut from the end of
/// the stream unnoticed.
///
/// Made by [`AuditStreamSink::checkpoint_guard`] on a sink that signs
/// checkpoints ([`with_checkpoints`](AuditStreamSink::with_checkpoints)).
/// [`finish`](Self::finish) signs now and returns the checkpoint (or the
/// error); a drop signs the same way and, having no caller to tell, counts
/// a failure in [`AuditStreamSink::checkpoint_failures`].
///
/// A drop does not run when the process is killed outright (`SIGKILL`,
/// `std::process::exit`, an abort) or on a signal the process does not
/// handle: a service catches `SIGINT`/`SIGTERM` (e.g. `tokio::signal`),
/// shuts down, and lets the guard sign on the way out.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use std::sync::Arc;
/// use privacy_pledge::audit::{verify_public, CheckpointStore, DirCheckpointStore};
/// use privacy_pledge::crypto::Keyring;
/// use privacy_pledge::store::sqlite::SqliteStore;
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::purpose::Transaction;
/// use privacy_pledge::{Custodian, SubjectId};
///
/// # let dir = std::env::temp_dir().join(format!("pp-guard-doc-{}", SubjectId::random()));
/// let keyring = Arc::new(Keyring::generate()?);
/// let store = SqliteStore::open_in_memory()?;
/// let signer = keyring.checkpoint_signer()?;
/// let public_key = signer.public_key();
/// let checkpoints = DirCheckpointStore::new(&dir)?; // outside the database
/// let sink = Arc::new(
///     store
///         .audit_sink(keyring.audit_key())?
///         .with_checkpoints(signer, checkpoints.clone(), 1_000),
/// );
/// {
///     // Signs on the way out of this scope, however it is left.
///     let _guard = sink.checkpoint_guard();
///     let custodian = Custodian::builder()
///         .keyring(keyring)
///         .audit(sink.clone())
///         .build()?;
///     let email = custodian.collect::<EmailAddress, Transaction>(
///         SubjectId::random(),
///         EmailAddress::parse("ada@example.com")?,
///     )?;
///     let _row = custodian.seal(&email)?; // audited events, committed
/// }
/// let report = verify_public(&store.trail()?, &public_key, &checkpoints.load()?);
/// assert!(report.is_intact());
/// let stream = &report.streams[0];
/// let head = stream.result.as_ref().expect("the stream is intact");
/// assert_eq!(stream.vouched_through, Some(head.seq()), "vouched to its end");
/// # std::fs::remove_dir_all(&dir)?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the guard signs when it is dropped: bind it to a name (`_guard`, not `_`)"]
pub struct CheckpointGuard {
    sink: Option<Arc<dyn SignsCheckpoints>>,
}

impl CheckpointGuard {
    /// Signs the stream's head now and keeps the guard: a later drop signs
    /// again, covering what came after.
    pub fn sign(&self) -> Result<SignedCheckpoint, AuditError> {
        match &self.sink {
            Some(sink) => sink.sign(),
            None => Err(AuditError::new("this guard has finished")),
        }
    }

    /// Signs the stream's head now and disarms the guard: the clean
    /// shutdown that wants the checkpoint, or the error, in hand.
    pub fn finish(mut self) -> Result<SignedCheckpoint, AuditError> {
        match self.sink.take() {
            Some(sink) => sink.sign(),
            None => Err(AuditError::new("this guard has finished")),
        }
    }
}

impl Drop for CheckpointGuard {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            if sink.sign().is_err() {
                sink.sign_failed();
            }
        }
    }
}

impl fmt::Debug for CheckpointGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointGuard")
            .field("armed", &self.sink.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, MemoryCheckpointStore};
    use crate::crypto::Keyring;
    use std::sync::mpsc;

    /// A batch writer whose `write` waits for the test's word (`Ok` or a
    /// failure) and counts the rows it stored.
    struct Gate {
        id: Arc<()>,
        entered: mpsc::SyncSender<()>,
        verdict: Mutex<mpsc::Receiver<bool>>,
        stored: AtomicU64,
    }

    impl sealed::Sealed for Gate {}

    impl BatchWriter for Gate {
        fn write(
            &self,
            rows: &[Row<'_>],
            _: Option<(&SignedCheckpoint, &str)>,
            _: bool,
        ) -> Result<(), AuditError> {
            self.entered.send(()).unwrap();
            if !lock(&self.verdict).recv().unwrap() {
                return Err(AuditError::new("test: the commit failed"));
            }
            self.stored.fetch_add(rows.len() as u64, Ordering::SeqCst);
            Ok(())
        }
        fn database(&self) -> crate::request::DatabaseId {
            crate::request::DatabaseId::of(&self.id)
        }
        fn upsert_checkpoint(&self, _: &SignedCheckpoint, _: &str) -> Result<(), AuditError> {
            Ok(())
        }
    }

    /// A4 (the auditor reading the checkpoints): `sign_checkpoint` on one
    /// thread while another thread's event is being committed signs only
    /// what is committed. The event's commit then fails, so the trail never
    /// holds it: a checkpoint of it would make an intact trail read as cut.
    #[test]
    fn a4_a_checkpoint_never_vouches_for_an_event_still_being_committed() {
        let (entered, wait_entered) = mpsc::sync_channel(0);
        let (verdict, verdicts) = mpsc::channel();
        let gate = Gate {
            id: Arc::new(()),
            entered,
            verdict: Mutex::new(verdicts),
            stored: AtomicU64::new(0),
        };
        let keyring = Keyring::generate().unwrap();
        let kept = MemoryCheckpointStore::new();
        let sink = Arc::new(
            AuditStreamSink::new(gate, keyring.audit_key())
                .unwrap()
                .with_checkpoints(keyring.checkpoint_signer().unwrap(), kept.clone(), 1_000),
        );
        let event = || {
            AuditEvent::new(
                Timestamp::now(),
                crate::SubjectId::random(),
                Action::Collect,
                crate::policy::RuleId::R1,
            )
        };

        let first = std::thread::spawn({
            let sink = sink.clone();
            move || sink.record(&event())
        });
        wait_entered.recv().unwrap();
        verdict.send(true).unwrap();
        first.join().unwrap().unwrap();

        let second = std::thread::spawn({
            let sink = sink.clone();
            move || sink.record(&event())
        });
        wait_entered.recv().unwrap(); // the second event is being written
        let signed = sink.sign_checkpoint().unwrap();
        verdict.send(false).unwrap();
        assert!(second.join().unwrap().is_err());

        assert_eq!(sink.writer.stored.load(Ordering::SeqCst), 1);
        assert_eq!(signed.checkpoint().seq(), 1, "only the committed event");
        assert_eq!(kept.load().unwrap()[0].checkpoint().seq(), 1);
    }

    /// Per batch: whether it was made durable, whether it carried a
    /// checkpoint.
    type BatchLog = Arc<Mutex<Vec<(bool, bool)>>>;

    /// A writer that logs, per batch, whether it was made durable and
    /// whether it carried a checkpoint.
    struct Logged {
        id: Arc<()>,
        log: BatchLog,
    }

    impl sealed::Sealed for Logged {}

    impl BatchWriter for Logged {
        fn write(
            &self,
            _: &[Row<'_>],
            checkpoint: Option<(&SignedCheckpoint, &str)>,
            durable: bool,
        ) -> Result<(), AuditError> {
            lock(&self.log).push((durable, checkpoint.is_some()));
            Ok(())
        }
        fn database(&self) -> crate::request::DatabaseId {
            crate::request::DatabaseId::of(&self.id)
        }
        fn upsert_checkpoint(&self, _: &SignedCheckpoint, _: &str) -> Result<(), AuditError> {
            Ok(())
        }
    }

    /// A checkpoint store that notes how many batches were written when
    /// each checkpoint was saved.
    struct SavedAfter {
        log: BatchLog,
        saved_at: Mutex<Vec<usize>>,
    }

    impl crate::audit::CheckpointStore for Arc<SavedAfter> {
        fn save(&self, _: &SignedCheckpoint) -> Result<(), AuditError> {
            let written = lock(&self.log).len();
            lock(&self.saved_at).push(written);
            Ok(())
        }
        fn load(&self) -> Result<Vec<SignedCheckpoint>, AuditError> {
            Ok(Vec::new())
        }
    }

    /// A sink over a [`Logged`] writer signing a checkpoint every two
    /// events into a [`SavedAfter`] store sharing its log, and an event.
    fn logged_sink() -> (
        AuditStreamSink<Logged>,
        BatchLog,
        Arc<SavedAfter>,
        AuditEvent,
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = Logged {
            id: Arc::new(()),
            log: log.clone(),
        };
        let keyring = Keyring::generate().unwrap();
        let saves = Arc::new(SavedAfter {
            log: log.clone(),
            saved_at: Mutex::default(),
        });
        let sink = AuditStreamSink::new(writer, keyring.audit_key())
            .unwrap()
            .with_checkpoints(keyring.checkpoint_signer().unwrap(), saves.clone(), 2);
        let event = AuditEvent::new(
            Timestamp::now(),
            crate::SubjectId::random(),
            Action::Collect,
            crate::policy::RuleId::R1,
        );
        (sink, log, saves, event)
    }

    /// A5 (a power cut) against A4's view: where writes defer their sync
    /// but no durable commit of the thread's request is to follow (a key
    /// store call inside a scope), a batch that a checkpoint is due for is
    /// still written durably, and the checkpoint is saved (out of the
    /// database, where a power cut cannot take it back) only after it: a
    /// cut can never leave a checkpoint naming entries the log lost, which
    /// a verifier would report as a cut trail.
    #[test]
    fn a5_a_batch_a_checkpoint_vouches_for_is_durable_even_when_deferred() {
        let (sink, log, saves, event) = logged_sink();
        let db = sink.writer.database();
        crate::request::with_deferred(db, || {
            for _ in 0..4 {
                sink.record(&event).unwrap();
            }
        });
        // (durable, carries a checkpoint) per batch: only those a
        // checkpoint vouches for are durable.
        assert_eq!(
            *lock(&log),
            [(false, false), (true, true), (false, false), (true, true)]
        );
        // Each checkpoint saved after its own batch was written.
        assert_eq!(*lock(&saves.saved_at), [2, 4]);
    }

    /// A5 against A4's view, in a request whose durable commit to the same
    /// database is still to come (`commit_request`): the batch a checkpoint
    /// is due for is written without a sync of its own, and the checkpoint
    /// is saved only once that commit is made (later batches meanwhile
    /// count from it, and do not sign again); if that commit is never made,
    /// the checkpoint is never saved, and the next batch signs one again.
    #[test]
    fn a5_a_a_checkpoint_due_in_a_request_is_kept_only_after_its_durable_commit() {
        use crate::request::{with_deferred, AfterDurable};
        let (sink, log, saves, event) = logged_sink();
        let db = sink.writer.database();
        let request = |events: usize| {
            let after = AfterDurable::begin(db);
            with_deferred(db, || {
                for _ in 0..events {
                    sink.record(&event).unwrap();
                }
            });
            after
        };
        // The durable commit made: the checkpoint is saved after it. The
        // third batch, 3 events after the last kept checkpoint (none), is
        // not signed: it counts from the one waiting.
        let after = request(3);
        assert_eq!(*lock(&log), [(false, false), (false, true), (false, false)]);
        assert!(lock(&saves.saved_at).is_empty(), "saved before the commit");
        after.run();
        assert_eq!(*lock(&saves.saved_at), [3]);
        // The durable commit failed: never saved, and no longer waiting.
        drop(request(1));
        assert_eq!(lock(&log)[3..], [(false, true)]);
        assert_eq!(*lock(&saves.saved_at), [3]);
        // Another database's commit to come does not count.
        let other = Arc::new(());
        let after = AfterDurable::begin(crate::request::DatabaseId::of(&other));
        with_deferred(db, || sink.record(&event).unwrap());
        after.run();
        // Signed again (the last kept is event 2's), durably this time.
        assert_eq!(lock(&log)[4..], [(true, true)]);
        assert_eq!(*lock(&saves.saved_at), [3, 5]);
    }
}
