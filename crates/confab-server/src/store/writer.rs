//! The single writer, with group commit.
//!
//! SQLite allows one writer at a time. Instead of a pool of connections fighting over the lock
//! (and sleeping in `busy_timeout`), every write is a job sent to one task that owns the only
//! write connection. The task takes the jobs that arrived together, runs them inside one
//! transaction (`BEGIN IMMEDIATE` on SQLite), each under its own savepoint so a failing job
//! does not undo its neighbours, and commits once: one fsync covers the whole batch. Nobody is
//! answered before the commit is durable.
//!
//! PostgreSQL uses the same writer, one per node: its transactions take a cluster-wide
//! advisory lock first ([`WriteConn::begin`]), so the event log's ids commit in increasing
//! order across nodes, as they do on SQLite.
//!
//! Jobs record the real-time events of their changes in the same transaction (`Tx::emit`).
//! After the commit the writer hands them to the [`EventSink`] in id order, before answering
//! anyone: live delivery follows commit order, and a client that saw its own write's answer
//! can rely on the event having been published.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

/// The connection a writer owns: how it opens, moves on within, and ends a batch's
/// transaction.
pub trait WriteConn: Send + 'static {
    /// Starts the batch's transaction and its first savepoint, `job`.
    fn begin(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Runs `sql` (savepoint steps, `COMMIT`) in the open transaction.
    fn step(&mut self, sql: &'static str) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Abandons the open transaction after a failure.
    fn abort(&mut self) -> BoxFuture<'_, ()>;
    fn close(self) -> BoxFuture<'static, ()>;
}

impl WriteConn for SqliteConnection {
    fn begin(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        // Statements go to SQLite's thread one round trip at a time, so the savepoint that
        // ends one job and the one that starts the next travel together.
        Box::pin(async move {
            sqlx::raw_sql("BEGIN IMMEDIATE; SAVEPOINT job").execute(&mut *self).await?;
            Ok(())
        })
    }

    fn step(&mut self, sql: &'static str) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::raw_sql(sql).execute(&mut *self).await?;
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *self).await;
        })
    }

    fn close(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = Connection::close(self).await {
                tracing::warn!(error = ?e, "closing the write connection");
            }
        })
    }
}

use super::codec::Codec;
use super::{StoreError, StoreResult};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A committed durable event, ready for delivery.
#[derive(Debug, Clone)]
pub struct Published {
    /// The event's position: its resume cursor.
    pub id: i64,
    /// The users whose connections receive it.
    pub recipients: Vec<String>,
    /// The whole frame, `{"type", "payload", "cursor"}`, serialized once for everyone.
    pub frame: String,
}

/// Where committed events go (the real-time hub).
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, events: Vec<Published>);
}

/// The open write transaction a job works in.
pub struct Tx<C = SqliteConnection> {
    pub conn: C,
    /// This database's name in cursors.
    pub instance: Arc<str>,
    /// How message content is stored (plain or sealed).
    pub codec: Codec,
    events: Vec<Published>,
}

impl<C> Tx<C> {
    /// Queues an event stored by this transaction for delivery after the commit.
    pub fn emit(&mut self, event: Published) {
        self.events.push(event);
    }
}

/// Delivers a job's result once the batch's commit outcome is known.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A job runs against the open transaction and says whether it succeeded.
type Job<C> = Box<dyn for<'c> FnOnce(&'c mut Tx<C>) -> BoxFuture<'c, (bool, Completion)> + Send>;

/// Most jobs in one transaction: bounds the latency a batch adds to its first job.
const MAX_BATCH: usize = 256;
/// Jobs waiting for the writer; senders wait (backpressure) when it is full.
const QUEUE_DEPTH: usize = 4096;

/// `None` asks the writer to finish what is queued before it and stop.
type Command<C> = Option<Job<C>>;

pub struct Writer<C = SqliteConnection> {
    tx: mpsc::Sender<Command<C>>,
}

impl<C> Clone for Writer<C> {
    fn clone(&self) -> Self {
        Writer { tx: self.tx.clone() }
    }
}

impl<C: WriteConn> Writer<C> {
    /// Starts the writer task on `conn`. The task ends, closing the connection, after
    /// [`Writer::close`] or when every `Writer` clone is dropped; the handle resolves then.
    pub fn spawn(
        conn: C,
        instance: Arc<str>,
        codec: Codec,
        sink: Arc<dyn EventSink>,
    ) -> (Writer<C>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = tokio::spawn(run(Tx { conn, instance, codec, events: Vec::new() }, sink, rx));
        (Writer { tx }, handle)
    }

    /// Runs `f` inside the writer's transaction and answers after the commit is on disk.
    /// If `f` fails, its own changes are rolled back and the rest of the batch still commits.
    pub async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx<C>) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job<C> = Box::new(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let answer = match commit {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Backend(anyhow!("commit failed: {e}"))),
                    };
                    // The caller may have gone away (request cancelled); the write stands.
                    let _ = done_tx.send(answer);
                });
                (ok, completion)
            })
        });
        self.tx
            .send(Some(job))
            .await
            .map_err(|_| StoreError::Backend(anyhow!("the database is closed")))?;
        done_rx.await.map_err(|_| StoreError::Backend(anyhow!("the write was not carried out")))?
    }

    /// Asks the writer to commit what is queued and close the connection. Writes sent later
    /// fail with "the database is closed".
    pub async fn close(&self) {
        let _ = self.tx.send(None).await;
    }
}

async fn run<C: WriteConn>(
    mut tx: Tx<C>,
    sink: Arc<dyn EventSink>,
    mut rx: mpsc::Receiver<Command<C>>,
) {
    let mut commands = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    while !closing && rx.recv_many(&mut commands, MAX_BATCH).await > 0 {
        for command in commands.drain(..) {
            match command {
                Some(job) if !closing => batch.push(job),
                // After a close, queued jobs are dropped unrun: their callers get an error.
                Some(_) => {}
                None => closing = true,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        let outcome = run_batch(&mut tx, &mut batch, &mut completions).await;
        let events = std::mem::take(&mut tx.events);
        match &outcome {
            Ok(()) if !events.is_empty() => sink.publish(events),
            Ok(()) => {}
            Err(e) => tracing::error!(error = ?e, jobs = completions.len(), "write batch failed"),
        }
        let outcome = outcome.map_err(|e| format!("{e:#}"));
        for done in completions {
            done(outcome.clone());
        }
    }
    rx.close();
    tx.conn.close().await;
    tracing::debug!("database writer stopped");
}

async fn run_batch<C: WriteConn>(
    tx: &mut Tx<C>,
    batch: &mut Vec<Job<C>>,
    completions: &mut Vec<Completion>,
) -> anyhow::Result<()> {
    if let Err(e) = tx.conn.begin().await {
        tx.conn.abort().await;
        // Dropping a job unrun drops its answer channel: its caller gets an error.
        batch.clear();
        return Err(e).context("begin transaction");
    }
    let count = batch.len();
    for (index, job) in batch.drain(..).enumerate() {
        let events_before = tx.events.len();
        let (ok, completion) = job(tx).await;
        completions.push(completion);
        if !ok {
            // The job's changes are rolled back, and so are its events.
            tx.events.truncate(events_before);
        }
        let last = index + 1 == count;
        if let Err(e) = tx.conn.step(step_after(ok, last)).await {
            // The transaction is broken: nothing of the batch is kept, and the jobs not yet
            // run are dropped with the drain (their callers get an error).
            tx.conn.abort().await;
            return Err(e).context(if last { "commit" } else { "savepoint" });
        }
    }
    Ok(())
}

/// What ends a job's savepoint: kept or rolled back, then the next job's savepoint, or the
/// commit after the last job.
fn step_after(ok: bool, last: bool) -> &'static str {
    match (ok, last) {
        (true, false) => "RELEASE job; SAVEPOINT job",
        (false, false) => "ROLLBACK TO job; RELEASE job; SAVEPOINT job",
        (true, true) => "RELEASE job; COMMIT",
        (false, true) => "ROLLBACK TO job; RELEASE job; COMMIT",
    }
}

/// The SQLite writer: the same group commit on a thread of its own, which owns the write
/// connection and runs every job's statements synchronously. An async writer would pay two
/// thread hand-offs per statement (sqlx runs SQLite on a worker thread); here a job costs one
/// channel send and one answer, whatever the number of its statements.
///
/// A batch first runs without savepoints: SQLite copies every page a savepoint's statements
/// touch into a journal, and that copying was a sixth of the writer's time. Jobs are
/// re-runnable (`FnMut`, their inputs fixed before they are queued), so when one fails the
/// whole transaction is rolled back and the batch runs again, this time with a savepoint
/// around each job as the async writer does: the failed job's changes are undone and its
/// neighbours still commit.
pub mod blocking {
    use super::*;
    use rusqlite::Connection;

    /// A queued write: run (possibly twice), then told the batch's outcome once.
    trait Job: Send {
        /// Runs the job in the open transaction, keeping its result; true if it succeeded.
        fn run(&mut self, tx: &mut Tx<Connection>) -> bool;
        /// Answers the caller with the kept result, or the commit's failure.
        fn finish(self: Box<Self>, commit: Result<(), String>);
    }

    struct Write<F, R> {
        f: F,
        result: Option<StoreResult<R>>,
        done: oneshot::Sender<StoreResult<R>>,
    }

    impl<F, R> Job for Write<F, R>
    where
        F: FnMut(&mut Tx<Connection>) -> StoreResult<R> + Send,
        R: Send,
    {
        fn run(&mut self, tx: &mut Tx<Connection>) -> bool {
            let result = (self.f)(tx);
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        }

        fn finish(self: Box<Self>, commit: Result<(), String>) {
            let answer = match (commit, self.result) {
                (Ok(()), Some(result)) => result,
                (Ok(()), None) => Err(StoreError::Backend(anyhow!("the write was not run"))),
                (Err(e), _) => Err(StoreError::Backend(anyhow!("commit failed: {e}"))),
            };
            // The caller may have gone away (request cancelled); the write stands.
            let _ = self.done.send(answer);
        }
    }

    type Command = Option<Box<dyn Job>>;

    #[derive(Clone)]
    pub struct Writer {
        tx: mpsc::Sender<Command>,
    }

    impl Writer {
        /// Starts the writer thread on `conn`. The returned receiver resolves when the thread
        /// has committed its last batch and closed the connection, and every caller has been
        /// answered.
        pub fn spawn(
            conn: Connection,
            instance: Arc<str>,
            codec: Codec,
            sink: Arc<dyn EventSink>,
        ) -> anyhow::Result<(Writer, oneshot::Receiver<()>)> {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let (stopped_tx, stopped) = oneshot::channel();
            let (finished_tx, finished) = mpsc::unbounded_channel();
            std::thread::Builder::new()
                .name("confab-sqlite-writer".into())
                .spawn(move || {
                    run(Tx { conn, instance, codec, events: Vec::new() }, finished_tx, rx);
                })
                .context("start the SQLite writer thread")?;
            tokio::spawn(async move {
                deliver(finished, sink).await;
                // The thread has closed the connection, and every answer has been given.
                let _ = stopped_tx.send(());
            });
            Ok((Writer { tx }, stopped))
        }

        /// Runs `f` inside the writer's transaction and answers after the commit is on disk.
        /// If `f` fails, its own changes are rolled back and the rest of the batch still
        /// commits. `f` may run twice (see the module's notes): it must not consume what it
        /// captured, and everything it decides must come from the database or its inputs.
        pub async fn write<R, F>(&self, f: F) -> StoreResult<R>
        where
            R: Send + 'static,
            F: FnMut(&mut Tx<Connection>) -> StoreResult<R> + Send + 'static,
        {
            let (done, answer) = oneshot::channel::<StoreResult<R>>();
            let job = Box::new(Write { f, result: None, done });
            self.tx
                .send(Some(job))
                .await
                .map_err(|_| StoreError::Backend(anyhow!("the database is closed")))?;
            answer
                .await
                .map_err(|_| StoreError::Backend(anyhow!("the write was not carried out")))?
        }

        /// How many writes wait for the writer thread.
        #[cfg(test)]
        pub fn queued(&self) -> usize {
            self.tx.max_capacity() - self.tx.capacity()
        }

        /// Waits until every write queued before this call has committed.
        pub async fn drain(&self) {
            let _ = self.write(|_| Ok(())).await;
        }

        /// Asks the writer to commit what is queued and close the connection.
        pub async fn close(&self) {
            let _ = self.tx.send(None).await;
        }
    }

    /// A batch whose outcome is known: its events to publish and its callers to answer.
    struct Finished {
        outcome: Result<(), String>,
        events: Vec<Published>,
        jobs: Vec<Box<dyn Job>>,
    }

    /// Publishes each finished batch's events, then answers its callers, in commit order. On
    /// the runtime, not the writer thread: waking a thousand sockets' tasks from a foreign
    /// thread costs a cross-thread notification each, and meanwhile the writer goes on with
    /// the next batch.
    async fn deliver(mut finished: mpsc::UnboundedReceiver<Finished>, sink: Arc<dyn EventSink>) {
        while let Some(batch) = finished.recv().await {
            if batch.outcome.is_ok() && !batch.events.is_empty() {
                sink.publish(batch.events);
            }
            for job in batch.jobs {
                job.finish(batch.outcome.clone());
            }
        }
    }

    fn run(
        mut tx: Tx<Connection>,
        finished: mpsc::UnboundedSender<Finished>,
        mut rx: mpsc::Receiver<Command>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut closing = false;
        while !closing {
            let Some(first) = rx.blocking_recv() else { break };
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Some(job) if !closing => batch.push(job),
                    // After a close, queued jobs are dropped unrun: their callers get an error.
                    Some(_) => {}
                    None => closing = true,
                }
                next = if batch.len() < MAX_BATCH { rx.try_recv().ok() } else { None };
            }
            if batch.is_empty() {
                continue;
            }
            let outcome = match run_batch(&mut tx, &mut batch) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    tx.events.clear();
                    run_batch_isolated(&mut tx, &mut batch)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &outcome {
                tracing::error!(error = ?e, jobs = batch.len(), "write batch failed");
            }
            let done = Finished {
                outcome: outcome.map_err(|e| format!("{e:#}")),
                events: std::mem::take(&mut tx.events),
                jobs: std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH)),
            };
            // Fails only when the runtime is gone, and with it everyone waiting for an answer.
            let _ = finished.send(done);
        }
        rx.close();
        if let Err((_, e)) = tx.conn.close() {
            tracing::warn!(error = ?e, "closing the write connection");
        }
        tracing::debug!("database writer stopped");
    }

    /// Runs the `;`-separated statements of `sql` (prepared once per connection).
    fn steps(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
        for statement in sql.split("; ") {
            conn.prepare_cached(statement)?.execute([])?;
        }
        Ok(())
    }

    /// Runs the batch in one transaction and commits it; `Ok(false)`, with everything rolled
    /// back, when a job failed after changing something.
    fn run_batch(tx: &mut Tx<Connection>, batch: &mut [Box<dyn Job>]) -> anyhow::Result<bool> {
        steps(&tx.conn, "BEGIN IMMEDIATE").context("begin transaction")?;
        for job in batch.iter_mut() {
            let before = (tx.conn.total_changes(), tx.events.len());
            if !job.run(tx) {
                // Most failures (not found, a taken name) change nothing: the batch goes on.
                // A failed statement's own changes are undone and not counted.
                if (tx.conn.total_changes(), tx.events.len()) == before {
                    continue;
                }
                steps(&tx.conn, "ROLLBACK").context("roll back")?;
                return Ok(false);
            }
        }
        if let Err(e) = steps(&tx.conn, "COMMIT") {
            let _ = tx.conn.execute_batch("ROLLBACK");
            return Err(e).context("commit");
        }
        Ok(true)
    }

    /// Runs the batch with each job under its own savepoint, so a failing job's changes are
    /// undone and the others commit.
    fn run_batch_isolated(
        tx: &mut Tx<Connection>,
        batch: &mut [Box<dyn Job>],
    ) -> anyhow::Result<()> {
        if let Err(e) = steps(&tx.conn, "BEGIN IMMEDIATE; SAVEPOINT job") {
            let _ = tx.conn.execute_batch("ROLLBACK");
            return Err(e).context("begin transaction");
        }
        let count = batch.len();
        for (index, job) in batch.iter_mut().enumerate() {
            let events_before = tx.events.len();
            let ok = job.run(tx);
            if !ok {
                // The job's changes are rolled back, and so are its events.
                tx.events.truncate(events_before);
            }
            let last = index + 1 == count;
            if let Err(e) = steps(&tx.conn, step_after(ok, last)) {
                let _ = tx.conn.execute_batch("ROLLBACK");
                return Err(e).context(if last { "commit" } else { "savepoint" });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rusqlite::Connection;

    use super::blocking::Writer;
    use super::*;

    struct Nowhere;
    impl EventSink for Nowhere {
        fn publish(&self, _: Vec<Published>) {}
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Outcome {
        Commits,
        /// Inserts, then fails.
        FailsAfterWriting,
        /// Fails before writing anything.
        FailsAtOnce,
    }

    /// A write that inserts `n` (unless it fails at once), counting its runs.
    fn insert(
        n: i64,
        outcome: Outcome,
        runs: Arc<AtomicUsize>,
    ) -> impl FnMut(&mut Tx<Connection>) -> StoreResult<()> + Send + 'static {
        move |tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            if outcome == Outcome::FailsAtOnce {
                return Err(StoreError::NotFound);
            }
            tx.conn.execute("INSERT INTO t (n) VALUES (?1)", [n]).map_err(anyhow::Error::from)?;
            match outcome {
                Outcome::FailsAfterWriting => Err(StoreError::Conflict("refused")),
                _ => Ok(()),
            }
        }
    }

    struct BatchRun {
        answers: Vec<StoreResult<()>>,
        runs: Vec<usize>,
        stored: Vec<i64>,
    }

    #[tokio::test]
    async fn a_failed_write_is_undone_and_the_rest_of_its_batch_commits() {
        let run = batch_of_three(Outcome::FailsAfterWriting).await;
        assert!(run.answers[0].is_ok() && run.answers[2].is_ok(), "{:?}", run.answers);
        assert!(matches!(run.answers[1], Err(StoreError::Conflict("refused"))));
        // The batch ran without savepoints until the failure, then again with them.
        assert_eq!(run.runs, [2, 2, 1]);
        assert_eq!(run.stored, [1, 3]);
    }

    #[tokio::test]
    async fn a_write_that_fails_before_changing_anything_does_not_rerun_its_batch() {
        let run = batch_of_three(Outcome::FailsAtOnce).await;
        assert!(run.answers[0].is_ok() && run.answers[2].is_ok(), "{:?}", run.answers);
        assert!(matches!(run.answers[1], Err(StoreError::NotFound)));
        assert_eq!(run.runs, [1, 1, 1]);
        assert_eq!(run.stored, [1, 3]);
    }

    /// Writes 1, 2 and 3 in one batch, the second with `middle`'s outcome.
    async fn batch_of_three(middle: Outcome) -> BatchRun {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("writer.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER)")
            .expect("schema");
        let (writer, stopped) =
            Writer::spawn(conn, "test".into(), Codec::default(), Arc::new(Nowhere)).expect("spawn");

        // A first write holds the writer until the three below are queued: they make one batch.
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let hold = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(move |_| {
                        let _ = started_tx.send(());
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv()).await.expect("join").expect("started");
        let runs: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
        let mut writes = Vec::new();
        for (n, outcome) in [(1, Outcome::Commits), (2, middle), (3, Outcome::Commits)] {
            let (queued, runs) = (writer.clone(), runs[n as usize - 1].clone());
            writes.push(tokio::spawn(async move { queued.write(insert(n, outcome, runs)).await }));
            while writer.queued() < n as usize {
                tokio::task::yield_now().await;
            }
        }
        release.send(()).expect("release");
        hold.await.expect("join").expect("hold");
        let mut answers = Vec::new();
        for w in writes {
            answers.push(w.await.expect("join"));
        }
        writer.close().await;
        stopped.await.expect("stopped");
        let conn = Connection::open(&path).expect("open");
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").expect("prepare");
        let stored = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        BatchRun { answers, runs: runs.iter().map(|r| r.load(Ordering::SeqCst)).collect(), stored }
    }
}
