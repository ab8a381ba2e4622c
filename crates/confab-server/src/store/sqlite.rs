//! `Store` on embedded SQLite: WAL mode, one writer thread with group commit
//! (`writer::blocking`) and a small pool of read-only connections, which WAL lets read while
//! the writer writes.
//!
//! SQLite runs in-process through rusqlite, synchronously: a read is one hand-off to a
//! blocking thread and back, a write one job for the writer thread, however many statements
//! they run. (sqlx, which the PostgreSQL store uses, would pass every statement and every row
//! between threads.) Migrations still run through sqlx's migrator, at open.
//!
//! Timestamps are stored as unix milliseconds. Statements number their parameters `?1, ?2, …`;
//! the column lists shared with the PostgreSQL store are written with `$1` and translated by
//! [`positional`].

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use confab_proto::{
    Conversation, Event, Frame, Me, MembershipChange, Message, Participant, Receipt, User,
};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::codec::Codec;
use super::rows::{
    Audience, CONVERSATION_ROW, CONVERSATION_SELECT, ConversationRow, MESSAGE_COLUMNS, MessageRow,
    PARTICIPANT_SELECT, ParticipantRow, UserRow, View, assemble_conversations, frame_text,
    open_row, parse_kind, parse_role, stored_message,
};
use super::writer::blocking::Writer;
use super::writer::{EventSink, Published, Tx};
use super::{
    EventBounds, Membership, NewConversation, NewMessage, NewParticipant, NewSession, NewUser,
    PageCursor, Removal, Rotation, SessionRecord, Store, StoreError, StoreResult, StoredFrame,
    StoredSession, Upserted, UserCredentials,
};
use crate::security::crypto::Keyring;
use crate::time::from_ms;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How many read connections to keep open.
const READERS: usize = 4;
/// How much of the database file each connection maps (address space, not memory).
const MMAP_BYTES: i64 = 1 << 30;
/// Page caches: the writer's and each reader's.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
const READER_CACHE_KIB: i64 = 8 * 1024;
/// How often the checkpointer copies committed pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);
/// The log length (in pages) at which the writer checkpoints in its own commit.
const WRITER_CHECKPOINT_PAGES: i64 = 8192;
/// Events between two fillings of the event log's index tables (migration 0007): the most a
/// replay scans of the log's end.
const INDEX_EVENTS_EVERY: i64 = 512;
/// Prepared statements kept per connection: every statement of this file fits.
const STATEMENT_CACHE: usize = 128;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.into())
    }
}

type WriteTx = Tx<Connection>;

pub struct SqliteStore {
    instance: Arc<str>,
    codec: Codec,
    writer: Writer,
    writer_stopped: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    checkpointer: Checkpointer,
    readers: Arc<Readers>,
    members: Arc<MemberCache>,
}

/// Most (conversation, member) answers [`MemberCache`] keeps; past it, it starts over.
const MEMBER_CACHE_ENTRIES: usize = 100_000;

/// The access check's answers, in memory: every request about a conversation asks whether
/// the caller is a member, and reading it was a fifth of a send's time on the async threads.
///
/// Only "member" answers are kept, and only the removal of a participant can make one wrong
/// (gone, or promoted to admin). A removal marks its conversation before its write is queued
/// and unmarks it once the commit is visible; both drop the conversation's answers. While it
/// is marked nothing is kept about it, and a lookup keeps what it read only if no mark or
/// unmark happened since it began (the generation), so an answer read from the state before a
/// removal cannot outlive it. A removal whose caller went away before the commit leaves its
/// conversation marked: slower from then on, never wrong. SQLite serves one node, whose writer
/// makes every change of membership: nothing changes it behind this cache. (The PostgreSQL
/// store, shared by nodes, reads every time.)
#[derive(Default)]
struct MemberCache {
    inner: Mutex<MemberEntries>,
}

#[derive(Default)]
struct MemberEntries {
    generation: u64,
    count: usize,
    /// Conversation id → member id → the answer.
    by_conversation: HashMap<String, HashMap<String, Membership>>,
    /// Conversations with removals under way, and how many.
    removing: HashMap<String, usize>,
}

impl MemberEntries {
    fn drop_answers(&mut self, conversation_id: &str) {
        self.generation += 1;
        if let Some(members) = self.by_conversation.remove(conversation_id) {
            self.count -= members.len();
        }
    }
}

impl MemberCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, MemberEntries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept answer, or the generation a lookup starts from.
    fn get(&self, conversation_id: &str, user_id: &str) -> Result<Membership, u64> {
        let entries = self.entries();
        match entries.by_conversation.get(conversation_id).and_then(|m| m.get(user_id)) {
            Some(member) => Ok(*member),
            None => Err(entries.generation),
        }
    }

    /// Keeps an answer read since `generation`, unless a removal began or ended in between
    /// or is under way.
    fn keep(&self, generation: u64, conversation_id: &str, user_id: &str, member: Membership) {
        let mut entries = self.entries();
        if entries.generation != generation || entries.removing.contains_key(conversation_id) {
            return;
        }
        if entries.count >= MEMBER_CACHE_ENTRIES {
            entries.by_conversation.clear();
            entries.count = 0;
        }
        let members = entries.by_conversation.entry(conversation_id.to_owned()).or_default();
        if members.insert(user_id.to_owned(), member).is_none() {
            entries.count += 1;
        }
    }

    /// A removal from the conversation is about to be written.
    fn removal_begins(&self, conversation_id: &str) {
        let mut entries = self.entries();
        entries.drop_answers(conversation_id);
        *entries.removing.entry(conversation_id.to_owned()).or_default() += 1;
    }

    /// The removal's commit (or failure) is visible to every reader.
    fn removal_ended(&self, conversation_id: &str) {
        let mut entries = self.entries();
        entries.drop_answers(conversation_id);
        if let Some(under_way) = entries.removing.get_mut(conversation_id) {
            *under_way -= 1;
            if *under_way == 0 {
                entries.removing.remove(conversation_id);
            }
        }
    }
}

/// Read-only connections, each lent to one reader at a time; a permit stands for an idle one.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// An idle connection, for the holder of `permit`.
    fn lend(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> StoreResult<Lent> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = conn.ok_or_else(|| StoreError::Backend(anyhow!("the database is closed")))?;
        Ok(Lent { conn: Some(conn), readers: self.clone(), _permit: permit })
    }
}

/// A borrowed read connection. It goes back to the pool when dropped (even after a panic), and
/// only then is its permit released: the permit travels with the connection, so a read whose
/// caller has gone away still holds both until it ends.
struct Lent {
    conn: Option<Connection>,
    readers: Arc<Readers>,
    _permit: OwnedSemaphorePermit,
}

impl Lent {
    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("lent until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, applies migrations and starts the
    /// writer. `synchronous_full` makes each commit survive a power loss, not just a crash.
    pub async fn open(
        path: &Path,
        synchronous_full: bool,
        sink: Arc<dyn EventSink>,
        keys: Option<Arc<Keyring>>,
    ) -> anyhow::Result<SqliteStore> {
        restrict_to_owner(path)
            .with_context(|| format!("restrict the permissions of {}", path.display()))?;
        let mut migrate = SqliteConnection::connect_with(&migrate_options(path))
            .await
            .with_context(|| format!("open SQLite database {}", path.display()))?;
        MIGRATOR
            .run(&mut migrate)
            .await
            .with_context(|| format!("apply migrations to {}", path.display()))?;
        migrate.close().await.context("close the migration connection")?;

        let owned = path.to_owned();
        let (write_conn, readers, instance) = tokio::task::spawn_blocking(move || {
            let write_conn = open_connection(&owned, Some(synchronous_full))?;
            let readers = (0..READERS)
                .map(|_| open_connection(&owned, None))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let instance: String = readers[0]
                .query_row("SELECT instance FROM event_log WHERE id = 1", [], |r| r.get(0))
                .context("read the event log's instance")?;
            anyhow::Ok((write_conn, readers, instance))
        })
        .await??;
        let instance: Arc<str> = instance.into();
        let codec = Codec::new(keys);
        let (writer, stopped) = Writer::spawn(write_conn, instance.clone(), codec.clone(), sink)?;
        // Started last: if it fails, dropping the writer ends the writer thread.
        let checkpointer = Checkpointer::spawn(path)?;
        Ok(SqliteStore {
            instance,
            codec,
            writer,
            writer_stopped: tokio::sync::Mutex::new(Some(stopped)),
            checkpointer,
            readers: Arc::new(Readers {
                idle: Mutex::new(readers),
                permits: Arc::new(Semaphore::new(READERS)),
            }),
            members: Arc::default(),
        })
    }

    /// A store on a database URL such as `sqlite://./data/confab.db` or `sqlite:data.db`.
    pub async fn open_url(
        url: &str,
        synchronous_full: bool,
        sink: Arc<dyn EventSink>,
        keys: Option<Arc<Keyring>>,
    ) -> anyhow::Result<SqliteStore> {
        SqliteStore::open(&path_of(url)?, synchronous_full, sink, keys).await
    }

    /// Runs `f` on a read connection right here, on the async thread, when one is idle;
    /// otherwise as [`SqliteStore::read`] does. Only for reads that take microseconds (an
    /// indexed lookup, a bounded page): a hand-off to a blocking thread and back costs more
    /// than such a query, and two hand-offs per request were most of a send's thread switches.
    /// A WAL reader never waits for the writer.
    async fn read_now<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &Codec) -> StoreResult<R> + Send + 'static,
    {
        let Ok(permit) = self.readers.permits.clone().try_acquire_owned() else {
            return self.read(f).await;
        };
        let lent = self.readers.lend(permit)?;
        f(lent.conn(), &self.codec)
    }

    /// Runs `f` on a read connection in a blocking thread.
    async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &Codec) -> StoreResult<R> + Send + 'static,
    {
        let permit = self.readers.permits.clone().acquire_owned().await;
        let permit = permit.map_err(|_| StoreError::Backend(anyhow!("the database is closed")))?;
        let readers = self.readers.clone();
        let codec = self.codec.clone();
        tokio::task::spawn_blocking(move || {
            let lent = readers.lend(permit)?;
            f(lent.conn(), &codec)
        })
        .await
        .map_err(|e| StoreError::Backend(anyhow!("read task failed: {e}")))?
    }
}

fn path_of(url: &str) -> anyhow::Result<std::path::PathBuf> {
    let opts = SqliteConnectOptions::from_str(url).with_context(|| format!("parse {url}"))?;
    Ok(opts.get_filename().to_path_buf())
}

/// The connection that applies migrations (and creates the file).
/// Makes the database file (created empty here when missing) and its log files readable and
/// writable by their owner only: they hold every message, and the password and session hashes.
/// SQLite creates the log files with the database file's permissions.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            if Path::new(&file).exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The migrations' connection. `secure_delete`, as on every other connection: a migration that
/// rebuilds a table frees the old one's pages, which must not keep its rows.
fn migrate_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .pragma("secure_delete", "ON")
        .busy_timeout(Duration::from_secs(10))
}

/// A connection with the settings every one shares: the writer's when `synchronous_full` is
/// given, read-only otherwise. `secure_delete` overwrites deleted and replaced content with
/// zeros, so an edited or deleted message leaves no old text in free pages.
fn open_connection(path: &Path, synchronous_full: Option<bool>) -> anyhow::Result<Connection> {
    let access = match synchronous_full {
        Some(_) => OpenFlags::SQLITE_OPEN_READ_WRITE,
        None => OpenFlags::SQLITE_OPEN_READ_ONLY,
    };
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("open SQLite database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // A statement's plan never depends on the values bound to it. Without this, the bundled
    // SQLite plans `LIMIT ?` with the bound number written in, and so prepares the statement
    // again whenever that parameter is bound: every history page and every replay parsed and
    // planned its query anew (a sixth of the server's CPU under `history`). Plans checked with
    // `EXPLAIN QUERY PLAN`: the same either way.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Sorts and statement journals stay in memory instead of files created and unlinked for
    // each (the writer's filing of the event index is an `INSERT … SELECT`).
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;",
    )?;
    // Pages come from a shared memory map instead of a copy per read, and the writer keeps
    // the index pages its inserts land on in a larger cache (both grow only as used).
    if synchronous_full.is_none() {
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    }
    let cache_kib = if synchronous_full.is_some() { WRITER_CACHE_KIB } else { READER_CACHE_KIB };
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    if let Some(full) = synchronous_full {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}, not WAL");
        conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
        // The checkpointer thread keeps the log short; the writer checkpoints itself only
        // when the log has grown long anyway (then the log restarts from its beginning).
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
    }
    Ok(conn)
}

/// Copies committed pages from the write-ahead log into the database file, on a thread and a
/// connection of its own, so that commits do not wait for it: in the writer's own commits
/// (SQLite's default) checkpoints were an eighth of the writer's time and its slowest
/// commits. A PASSIVE checkpoint never blocks the writer or the readers.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    stopped: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Checkpointer {
    fn spawn(path: &Path) -> anyhow::Result<Checkpointer> {
        let conn = open_connection(path, Some(true))?;
        // Only this thread's explicit checkpoints, not one in each of its (no) commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped_tx, stopped) = oneshot::channel();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("confab-sqlite-checkpoint".into())
            .spawn(move || {
                let mut warned = false;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = done
                        && !std::mem::replace(&mut warned, true)
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed; the writer's own remain");
                    }
                }
                drop(conn);
                let _ = stopped_tx.send(());
            })
            .context("start the SQLite checkpoint thread")?;
        Ok(Checkpointer { stop, stopped: tokio::sync::Mutex::new(Some(stopped)) })
    }

    async fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(stopped) = self.stopped.lock().await.take() {
            let _ = stopped.await;
        }
    }
}

/// `sql` with PostgreSQL-style `$1` parameters numbered the SQLite way, `?1`.
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The statements built from the column lists shared with the PostgreSQL store.
struct Statements {
    conversations_one: String,
    conversations_all: String,
    participants_of: String,
    participants_scoped: String,
    last_messages: String,
    message_by_id: String,
    message_by_client_id: String,
    page_descending: String,
    page_ascending: String,
    conversation_row: String,
    events_for: String,
    count_events_for: String,
}

static SQL: LazyLock<Statements> = LazyLock::new(|| {
    let page = |order: &str| {
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
              WHERE conversation_id = ?1 AND seq > ?2 AND seq < ?3
              ORDER BY seq {order} LIMIT ?4"
        )
    };
    Statements {
        conversations_one: positional(&format!("{CONVERSATION_SELECT} AND c.id = $2")),
        conversations_all: positional(&format!(
            "{CONVERSATION_SELECT} ORDER BY c.last_activity_at DESC, c.id DESC"
        )),
        participants_of: positional(&format!(
            "{PARTICIPANT_SELECT} WHERE p.conversation_id = $2 ORDER BY p.joined_at, p.id"
        )),
        participants_scoped: positional(&format!(
            "{PARTICIPANT_SELECT}
              WHERE p.conversation_id IN (SELECT conversation_id FROM participants WHERE user_id = $1)
              ORDER BY p.joined_at, p.id"
        )),
        last_messages: format!(
            "SELECT {} FROM participants p
               JOIN conversations c ON c.id = p.conversation_id
               JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
              WHERE p.user_id = ?1 AND (?2 = '' OR p.conversation_id = ?2)",
            MESSAGE_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ")
        ),
        message_by_id: format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
        message_by_client_id: format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
              WHERE conversation_id = ?1 AND sender_id = ?2 AND client_id = ?3"
        ),
        page_descending: page("DESC"),
        page_ascending: page("ASC"),
        conversation_row: positional(CONVERSATION_ROW),
        events_for: format!("SELECT id, type, payload FROM ({VISIBLE_EVENTS}) ORDER BY id LIMIT ?3"),
        count_events_for: format!("SELECT COUNT(*) FROM ({VISIBLE_EVENTS} LIMIT ?3)"),
    }
});

fn user_row(r: &Row) -> rusqlite::Result<UserRow> {
    Ok(UserRow { id: r.get(0)?, username: r.get(1)?, created_at: r.get(2)? })
}

/// A row selected with [`MESSAGE_COLUMNS`].
fn message_row(r: &Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        sender_id: r.get(2)?,
        content: r.get(3)?,
        created_at: r.get(4)?,
        seq: r.get(5)?,
        client_id: r.get(6)?,
        reply_to: r.get(7)?,
        edited_at: r.get(8)?,
        deleted: r.get(9)?,
    })
}

fn conversation_row(r: &Row) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        title: r.get(2)?,
        created_at: r.get(3)?,
        last_seq: r.get(4)?,
        last_activity_at: r.get(5)?,
        unread_count: r.get(6)?,
    })
}

fn participant_row(r: &Row) -> rusqlite::Result<ParticipantRow> {
    Ok(ParticipantRow {
        conversation_id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        joined_at: r.get(3)?,
        role: r.get(4)?,
        last_read_seq: r.get(5)?,
        last_delivered_seq: r.get(6)?,
    })
}

/// Every row of `sql` with `params`, mapped by `f`.
fn all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    Ok(conn.prepare_cached(sql)?.query_map(params, f)?.collect::<rusqlite::Result<_>>()?)
}

/// The first row of `sql` with `params`, if any, mapped by `f`.
fn first<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    Ok(conn.prepare_cached(sql)?.query_row(params, f).optional()?)
}

/// The one row of `sql` with `params` (an error if there is none), mapped by `f`.
fn one<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> StoreResult<T> {
    Ok(conn.prepare_cached(sql)?.query_row(params, f)?)
}

/// How many rows `sql` changed.
fn execute<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> StoreResult<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Conversations as `view` sees them (all of the member's, or `only` one), with participants
/// and last messages: three queries in all, whatever the number of conversations.
fn conversations_on(
    conn: &Connection,
    codec: &Codec,
    view: View<'_>,
    only: Option<&str>,
) -> StoreResult<Vec<Conversation>> {
    let (viewer, reveal_reads_of) = match view {
        View::Member(user) => (user, user),
        View::Shared(user) => (user, ""),
    };
    let rows = match only {
        Some(id) => all(conn, &SQL.conversations_one, params![viewer, id], conversation_row)?,
        None => all(conn, &SQL.conversations_all, params![viewer], conversation_row)?,
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // `?2` (the one conversation, or empty) is unused by the query of all of them.
    let only = only.unwrap_or_default();
    let participants = match only {
        "" => all(
            conn,
            &SQL.participants_scoped,
            params![viewer, only, reveal_reads_of],
            participant_row,
        )?,
        _ => all(
            conn,
            &SQL.participants_of,
            params![viewer, only, reveal_reads_of],
            participant_row,
        )?,
    };
    let last_messages = all(conn, &SQL.last_messages, params![viewer, only], message_row)?
        .into_iter()
        .map(|m| open_row(codec, m))
        .collect::<StoreResult<_>>()?;
    Ok(assemble_conversations(view, rows, participants, last_messages))
}

/// The conversation as put in an event all members receive (see [`View::Shared`]).
fn conversation_on(
    conn: &Connection,
    codec: &Codec,
    conversation_id: &str,
    built_by: &str,
) -> StoreResult<Conversation> {
    conversations_on(conn, codec, View::Shared(built_by), Some(conversation_id))?
        .pop()
        .ok_or(StoreError::NotFound)
}

fn insert_members(
    conn: &Connection,
    conversation_id: &str,
    members: &[NewParticipant],
) -> StoreResult<Vec<String>> {
    let mut added = Vec::with_capacity(members.len());
    for m in members {
        let done = execute(
            conn,
            "INSERT INTO participants (id, conversation_id, user_id, joined_at, role)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (conversation_id, user_id) DO NOTHING",
            params![m.id, conversation_id, m.user_id, m.joined_at_ms, m.role.as_str()],
        )?;
        if done == 1 {
            added.push(m.user_id.clone());
        }
    }
    Ok(added)
}

/// Opens a replay span: `user_id` sees the conversation's events from `from_event` on.
fn open_membership(
    conn: &Connection,
    conversation_id: &str,
    user_id: &str,
    from_event: i64,
) -> StoreResult<()> {
    execute(
        conn,
        "INSERT INTO memberships (conversation_id, user_id, from_event) VALUES (?1, ?2, ?3)",
        params![conversation_id, user_id, from_event],
    )?;
    Ok(())
}

fn message_on(conn: &Connection, codec: &Codec, message_id: &str) -> StoreResult<Message> {
    let row = first(conn, &SQL.message_by_id, [message_id], message_row)?;
    open_row(codec, row.ok_or(StoreError::NotFound)?)
}

/// The events after `?2` that user `?1` may replay: those of the conversations they were a
/// member of while the event happened, but not those meant for someone else. Filed events are
/// found through `event_index`, the newer ones by scanning the log's end (`CROSS JOIN` keeps
/// that scan outermost: once, not once per conversation of the user).
const VISIBLE_EVENTS: &str = "
    SELECT e.id, e.type, e.payload FROM memberships s
      JOIN event_index x ON x.conversation_id = s.conversation_id
      JOIN events e ON e.id = x.id
     WHERE s.user_id = ?1 AND (s.to_event IS NULL OR s.to_event > ?2)
       AND x.id > ?2 AND x.id >= s.from_event AND (s.to_event IS NULL OR x.id <= s.to_event)
       AND (e.audience IS NULL OR e.audience = ?1)
    UNION ALL
    SELECT e.id, e.type, e.payload FROM events e
      CROSS JOIN memberships s ON s.conversation_id = e.conversation_id AND s.user_id = ?1
     WHERE e.id > MAX(?2, (SELECT indexed FROM event_log WHERE id = 1))
       AND e.id >= s.from_event AND (s.to_event IS NULL OR e.id <= s.to_event)
       AND (e.audience IS NULL OR e.audience = ?1)";

/// Files the events not yet in `event_index` and `event_refs` there (see migration 0007): in
/// the commit of every [`INDEX_EVENTS_EVERY`]th event, and before anything looks events up by
/// message. A replay finds the newer ones by scanning the log's end.
fn index_events(conn: &Connection) -> StoreResult<()> {
    execute(
        conn,
        "INSERT INTO event_index (conversation_id, id)
         SELECT conversation_id, id FROM events
          WHERE id > (SELECT indexed FROM event_log WHERE id = 1)",
        [],
    )?;
    execute(
        conn,
        "INSERT INTO event_refs (ref_id, id)
         SELECT ref_id, id FROM events
          WHERE id > (SELECT indexed FROM event_log WHERE id = 1) AND ref_id IS NOT NULL",
        [],
    )?;
    execute(
        conn,
        "UPDATE event_log SET indexed = MAX(indexed, COALESCE((SELECT MAX(id) FROM events), 0))
          WHERE id = 1",
        [],
    )?;
    Ok(())
}

/// Appends `event` to the log in the current transaction and queues it for delivery after the
/// commit. `ref_id` names the message whose content the payload holds (to erase on delete).
fn emit(
    tx: &mut WriteTx,
    conversation_id: &str,
    event: &Event,
    ref_id: Option<&str>,
    audience: Audience<'_>,
) -> StoreResult<i64> {
    let frame = Frame::new(event, None);
    let payload = serde_json::to_string(&frame.payload).context("encode event payload")?;
    let stored = match tx.codec.keys() {
        Some(_) => tx.codec.seal_payload(&frame.payload)?,
        None => payload.clone(),
    };
    let only = match audience {
        Audience::Only(user) => Some(user),
        _ => None,
    };
    execute(
        &tx.conn,
        "INSERT INTO events (conversation_id, type, ref_id, audience, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![conversation_id, frame.kind, ref_id, only, stored, crate::time::now_ms()],
    )?;
    // The row just inserted: one connection, one writer (no RETURNING, see insert_message).
    let id = tx.conn.last_insert_rowid();
    if id % INDEX_EVENTS_EVERY == 0 {
        index_events(&tx.conn)?;
    }
    let mut recipients = match audience {
        Audience::Only(user) => vec![user.to_owned()],
        Audience::Members | Audience::MembersAnd(_) => all(
            &tx.conn,
            "SELECT user_id FROM participants WHERE conversation_id = ?1",
            [conversation_id],
            |r| r.get(0),
        )?,
    };
    if let Audience::MembersAnd(extra) = audience
        && !recipients.iter().any(|r| r == extra)
    {
        recipients.push(extra.to_owned());
    }
    let frame = frame_text(&frame.kind, &payload, &tx.instance, id);
    tx.emit(Published { id, recipients, frame });
    Ok(id)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_user(&self, user: NewUser) -> StoreResult<User> {
        self.writer
            .write(move |tx| {
                // The single writer makes the skeleton check and the insert atomic.
                let row = first(
                    &tx.conn,
                    "INSERT INTO users (id, username, username_key, password_hash, created_at,
                                        username_skeleton)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6
                      WHERE NOT EXISTS (SELECT 1 FROM users WHERE username_skeleton = ?6)
                     ON CONFLICT (username_key) DO NOTHING
                     RETURNING id, username, created_at",
                    params![
                        user.id,
                        user.username,
                        user.username_key,
                        user.password_hash,
                        user.created_at_ms,
                        user.username_skeleton
                    ],
                    user_row,
                )?;
                row.map(User::from).ok_or(StoreError::Conflict("username is taken"))
            })
            .await
    }

    async fn user_credentials(&self, username_key: &str) -> StoreResult<Option<UserCredentials>> {
        let key = username_key.to_owned();
        self.read(move |conn, _| {
            first(
                conn,
                "SELECT id, username, created_at, password_hash FROM users WHERE username_key = ?1",
                [key],
                |r| Ok(UserCredentials { user: user_row(r)?.into(), password_hash: r.get(3)? }),
            )
        })
        .await
    }

    async fn users_by_prefix(&self, prefix_key: &str, limit: i64) -> StoreResult<Vec<User>> {
        // A range on the unique index instead of LIKE: `_` is a LIKE wildcard and a legal
        // username character. Every username character sorts below U+007F.
        let lower = prefix_key.to_owned();
        let upper = format!("{prefix_key}\u{7f}");
        self.read(move |conn, _| {
            let rows = all(
                conn,
                "SELECT id, username, created_at FROM users
                  WHERE username_key >= ?1 AND username_key < ?2 ORDER BY username_key LIMIT ?3",
                params![lower, upper, limit],
                user_row,
            )?;
            Ok(rows.into_iter().map(User::from).collect())
        })
        .await
    }

    async fn users_by_ids(&self, ids: &[String]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let json = serde_json::to_string(ids).context("encode ids")?;
        self.read(move |conn, _| {
            let rows = all(
                conn,
                "SELECT id, username, created_at FROM users
                  WHERE id IN (SELECT value FROM json_each(?1))",
                [json],
                user_row,
            )?;
            Ok(rows.into_iter().map(User::from).collect())
        })
        .await
    }

    async fn me(&self, user_id: &str) -> StoreResult<Option<Me>> {
        let user = user_id.to_owned();
        self.read_now(move |conn, _| {
            first(
                conn,
                "SELECT id, username, created_at, share_read_receipts FROM users WHERE id = ?1",
                [user],
                |r| {
                    Ok(Me {
                        id: r.get(0)?,
                        username: r.get(1)?,
                        created_at: from_ms(r.get(2)?),
                        share_read_receipts: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    async fn set_share_read_receipts(&self, user_id: &str, share: bool) -> StoreResult<()> {
        let user = user_id.to_owned();
        self.writer
            .write(move |tx| {
                execute(
                    &tx.conn,
                    "UPDATE users SET share_read_receipts = ?2 WHERE id = ?1",
                    params![user, share],
                )?;
                Ok(())
            })
            .await
    }

    async fn set_last_seen(&self, user_id: &str, at_ms: i64) -> StoreResult<()> {
        let user = user_id.to_owned();
        self.writer
            .write(move |tx| {
                execute(
                    &tx.conn,
                    "UPDATE users SET last_seen_at = ?2 WHERE id = ?1",
                    params![user, at_ms],
                )?;
                Ok(())
            })
            .await
    }

    async fn last_seen(&self, user_id: &str) -> StoreResult<Option<i64>> {
        let user = user_id.to_owned();
        self.read(move |conn, _| {
            let at = first(conn, "SELECT last_seen_at FROM users WHERE id = ?1", [user], |r| {
                r.get::<_, Option<i64>>(0)
            })?;
            Ok(at.flatten())
        })
        .await
    }

    async fn contacts(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user = user_id.to_owned();
        self.read(move |conn, _| {
            all(
                conn,
                "SELECT DISTINCT other.user_id FROM participants mine
                   JOIN participants other ON other.conversation_id = mine.conversation_id
                  WHERE mine.user_id = ?1",
                [user],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn insert_session(&self, session: NewSession) -> StoreResult<()> {
        self.writer
            .write(move |tx| {
                execute(
                    &tx.conn,
                    "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, id,
                                           last_used_at, user_agent, ip)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?3, ?6, ?7)",
                    params![
                        session.token_hash,
                        session.user_id,
                        session.created_at_ms,
                        session.expires_at_ms,
                        session.id,
                        session.user_agent,
                        session.ip
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let token_hash = token_hash.to_owned();
        self.read_now(move |conn, _| {
            first(
                conn,
                "SELECT u.id, u.username, u.created_at, s.expires_at,
                        COALESCE(s.last_used_at, s.created_at)
                   FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
                [token_hash],
                |r| {
                    Ok(SessionRecord {
                        user: user_row(r)?.into(),
                        expires_at_ms: r.get(3)?,
                        last_used_at_ms: r.get(4)?,
                    })
                },
            )
        })
        .await
    }

    async fn touch_session(&self, token_hash: &str, at_ms: i64) -> StoreResult<bool> {
        let token_hash = token_hash.to_owned();
        self.writer
            .write(move |tx| {
                let done = execute(
                    &tx.conn,
                    "UPDATE sessions SET last_used_at = ?2 WHERE token_hash = ?1",
                    params![token_hash, at_ms],
                )?;
                Ok(done == 1)
            })
            .await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        self.writer
            .write(move |tx| {
                execute(&tx.conn, "DELETE FROM sessions WHERE token_hash = ?1", [&token_hash])?;
                Ok(())
            })
            .await
    }

    async fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<StoredSession>> {
        let user = user_id.to_owned();
        self.read(move |conn, _| {
            all(
                conn,
                "SELECT id, token_hash, created_at, COALESCE(last_used_at, created_at) AS used,
                        expires_at, user_agent, ip
                   FROM sessions WHERE user_id = ?1 ORDER BY used DESC, created_at DESC",
                [user],
                |r| {
                    Ok(StoredSession {
                        id: r.get(0)?,
                        token_hash: r.get(1)?,
                        created_at_ms: r.get(2)?,
                        last_used_at_ms: r.get(3)?,
                        expires_at_ms: r.get(4)?,
                        user_agent: r.get(5)?,
                        ip: r.get(6)?,
                    })
                },
            )
        })
        .await
    }

    async fn delete_session_by_id(&self, user_id: &str, id: &str) -> StoreResult<Option<String>> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.writer
            .write(move |tx| {
                first(
                    &tx.conn,
                    "DELETE FROM sessions WHERE user_id = ?1 AND id = ?2 RETURNING token_hash",
                    params![user_id, id],
                    |r| r.get(0),
                )
            })
            .await
    }

    async fn delete_other_sessions(&self, user_id: &str, keep: &str) -> StoreResult<Vec<String>> {
        let (user_id, keep) = (user_id.to_owned(), keep.to_owned());
        self.writer
            .write(move |tx| {
                all(
                    &tx.conn,
                    "DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2
                     RETURNING token_hash",
                    params![user_id, keep],
                    |r| r.get(0),
                )
            })
            .await
    }

    async fn delete_stale_sessions(&self, now_ms: i64, idle_before_ms: i64) -> StoreResult<u64> {
        self.writer
            .write(move |tx| {
                let done = execute(
                    &tx.conn,
                    "DELETE FROM sessions
                      WHERE expires_at <= ?1 OR COALESCE(last_used_at, created_at) < ?2",
                    params![now_ms, idle_before_ms],
                )?;
                Ok(done as u64)
            })
            .await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let (user_id, hash) = (user_id.to_owned(), password_hash.to_owned());
        self.writer
            .write(move |tx| {
                execute(
                    &tx.conn,
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![user_id, hash],
                )?;
                Ok(())
            })
            .await
    }

    async fn insert_conversation(&self, conv: NewConversation) -> StoreResult<Upserted<String>> {
        self.writer
            .write(move |tx| {
                if let Some(key) = &conv.direct_key {
                    let existing = first(
                        &tx.conn,
                        "SELECT id FROM conversations WHERE direct_key = ?1",
                        [key],
                        |r| r.get(0),
                    )?;
                    if let Some(id) = existing {
                        return Ok(Upserted { value: id, created: false });
                    }
                }
                execute(
                    &tx.conn,
                    "INSERT INTO conversations
                        (id, type, title, created_at, created_by, direct_key, last_activity_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?4)",
                    params![
                        conv.id,
                        conv.kind.as_str(),
                        conv.title,
                        conv.created_at_ms,
                        conv.created_by,
                        conv.direct_key
                    ],
                )?;
                let added = insert_members(&tx.conn, &conv.id, &conv.members)?;
                let snapshot = conversation_on(&tx.conn, &tx.codec, &conv.id, &conv.created_by)?;
                let event = Event::ConversationCreated(snapshot);
                let at = emit(tx, &conv.id, &event, None, Audience::Members)?;
                for user in &added {
                    open_membership(&tx.conn, &conv.id, user, at)?;
                }
                Ok(Upserted { value: conv.id.clone(), created: true })
            })
            .await
    }

    async fn membership(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<Membership>> {
        let generation = match self.members.get(conversation_id, user_id) {
            Ok(member) => return Ok(Some(member)),
            Err(generation) => generation,
        };
        let (conv, user) = (conversation_id.to_owned(), user_id.to_owned());
        let found = self
            .read_now(move |conn, _| {
                first(
                    conn,
                    "SELECT c.type, p.role
                       FROM participants p JOIN conversations c ON c.id = p.conversation_id
                      WHERE p.conversation_id = ?1 AND p.user_id = ?2",
                    params![conv, user],
                    |r| {
                        Ok(Membership {
                            kind: parse_kind(&r.get::<_, String>(0)?),
                            role: parse_role(&r.get::<_, String>(1)?),
                        })
                    },
                )
            })
            .await?;
        if let Some(member) = found {
            self.members.keep(generation, conversation_id, user_id, member);
        }
        Ok(found)
    }

    async fn conversation_for(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<Conversation>> {
        let (conv, user) = (conversation_id.to_owned(), user_id.to_owned());
        self.read(move |conn, codec| {
            Ok(conversations_on(conn, codec, View::Member(&user), Some(&conv))?.pop())
        })
        .await
    }

    async fn conversations_for(&self, user_id: &str) -> StoreResult<Vec<Conversation>> {
        let user = user_id.to_owned();
        self.read(move |conn, codec| conversations_on(conn, codec, View::Member(&user), None)).await
    }

    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<Participant>> {
        let conv = conversation_id.to_owned();
        self.read(move |conn, _| {
            let rows = all(conn, &SQL.participants_of, params!["", conv, ""], participant_row)?;
            Ok(rows.into_iter().map(Participant::from).collect())
        })
        .await
    }

    async fn participant_ids(&self, conversation_id: &str) -> StoreResult<Vec<String>> {
        let conv = conversation_id.to_owned();
        self.read(move |conn, _| {
            all(conn, "SELECT user_id FROM participants WHERE conversation_id = ?1", [conv], |r| {
                r.get(0)
            })
        })
        .await
    }

    async fn rename_conversation(
        &self,
        conversation_id: &str,
        title: &str,
        actor: &str,
    ) -> StoreResult<()> {
        let (id, title, actor) = (conversation_id.to_owned(), title.to_owned(), actor.to_owned());
        self.writer
            .write(move |tx| {
                let done = execute(
                    &tx.conn,
                    "UPDATE conversations SET title = ?2 WHERE id = ?1",
                    params![id, title],
                )?;
                if done == 0 {
                    return Err(StoreError::NotFound);
                }
                let snapshot = conversation_on(&tx.conn, &tx.codec, &id, &actor)?;
                let last = snapshot.last_message.as_ref().map(|m| m.id.clone());
                let event = Event::ConversationUpdated(snapshot);
                emit(tx, &id, &event, last.as_deref(), Audience::Members)?;
                Ok(())
            })
            .await
    }

    async fn insert_participants(
        &self,
        conversation_id: &str,
        members: Vec<NewParticipant>,
        actor: &str,
    ) -> StoreResult<Vec<String>> {
        let (id, actor) = (conversation_id.to_owned(), actor.to_owned());
        self.writer
            .write(move |tx| {
                let added = insert_members(&tx.conn, &id, &members)?;
                if added.is_empty() {
                    return Ok(added);
                }
                let snapshot = conversation_on(&tx.conn, &tx.codec, &id, &actor)?;
                let last = snapshot.last_message.as_ref().map(|m| m.id.clone());
                for user in &added {
                    let username = snapshot
                        .participants
                        .iter()
                        .find(|p| &p.user_id == user)
                        .map(|p| p.username.clone())
                        .unwrap_or_default();
                    let event = Event::ParticipantAdded(MembershipChange {
                        conversation_id: id.clone(),
                        user_id: user.clone(),
                        username,
                        by: actor.clone(),
                        conversation: snapshot.clone(),
                    });
                    let at = emit(tx, &id, &event, last.as_deref(), Audience::Members)?;
                    open_membership(&tx.conn, &id, user, at)?;
                }
                Ok(added)
            })
            .await
    }

    async fn delete_participant(
        &self,
        conversation_id: &str,
        user_id: &str,
        actor: &str,
    ) -> StoreResult<Removal> {
        let (conv, user, actor) =
            (conversation_id.to_owned(), user_id.to_owned(), actor.to_owned());
        self.members.removal_begins(conversation_id);
        let removed = self
            .writer
            .write(move |tx| {
                let username: Option<String> = first(
                    &tx.conn,
                    "SELECT u.username FROM participants p JOIN users u ON u.id = p.user_id
                      WHERE p.conversation_id = ?1 AND p.user_id = ?2",
                    params![conv, user],
                    |r| r.get(0),
                )?;
                let username = username.ok_or(StoreError::NotFound)?;
                execute(
                    &tx.conn,
                    "DELETE FROM participants WHERE conversation_id = ?1 AND user_id = ?2",
                    params![conv, user],
                )?;
                let promoted: Option<String> = first(
                    &tx.conn,
                    "UPDATE participants SET role = 'admin'
                      WHERE id = (SELECT id FROM participants WHERE conversation_id = ?1
                                   ORDER BY joined_at, id LIMIT 1)
                        AND NOT EXISTS (SELECT 1 FROM participants
                                         WHERE conversation_id = ?1 AND role = 'admin')
                      RETURNING user_id",
                    [&conv],
                    |r| r.get(0),
                )?;
                // The snapshot is seen by the remover, or by a remaining member when the last
                // one left (then nobody but the leaver receives it).
                let snapshot = match conversation_on(&tx.conn, &tx.codec, &conv, &actor) {
                    Ok(c) => c,
                    Err(StoreError::NotFound) => {
                        let viewer: Option<String> = first(
                            &tx.conn,
                            "SELECT user_id FROM participants WHERE conversation_id = ?1 LIMIT 1",
                            [&conv],
                            |r| r.get(0),
                        )?;
                        match viewer {
                            Some(v) => conversation_on(&tx.conn, &tx.codec, &conv, &v)?,
                            None => empty_conversation(&tx.conn, &conv)?,
                        }
                    }
                    Err(e) => return Err(e),
                };
                let last = snapshot.last_message.as_ref().map(|m| m.id.clone());
                let event = Event::ParticipantRemoved(MembershipChange {
                    conversation_id: conv.clone(),
                    user_id: user.clone(),
                    username,
                    by: actor.clone(),
                    conversation: snapshot,
                });
                let at = emit(tx, &conv, &event, last.as_deref(), Audience::MembersAnd(&user))?;
                execute(
                    &tx.conn,
                    "UPDATE memberships SET to_event = ?3
                      WHERE conversation_id = ?1 AND user_id = ?2 AND to_event IS NULL",
                    params![conv, user, at],
                )?;
                Ok(Removal { promoted })
            })
            .await;
        self.members.removal_ended(conversation_id);
        removed
    }

    async fn insert_message(&self, msg: NewMessage) -> StoreResult<Upserted<Message>> {
        self.writer
            .write(move |tx| {
                // `seq` is the conversation's `last_seq + 1`: the writer is the only one
                // inserting, so it is gapless. The sender must be a member when the row is
                // written, not only when the request was let in. Plain statements, one row
                // each: `INSERT … SELECT`, `RETURNING` and triggers make SQLite keep a
                // statement journal and open a scratch table for every send.
                let last_seq: Option<i64> = first(
                    &tx.conn,
                    "SELECT last_seq FROM conversations
                      WHERE id = ?1 AND EXISTS (SELECT 1 FROM participants
                                                 WHERE conversation_id = ?1 AND user_id = ?2)",
                    params![msg.conversation_id, msg.sender_id],
                    |r| r.get(0),
                )?;
                let seq = last_seq.ok_or(StoreError::NotFound)? + 1;
                // A repeated client_id inserts nothing (the unique index); then the first
                // message is the answer.
                let inserted = execute(
                    &tx.conn,
                    "INSERT INTO messages
                        (id, conversation_id, sender_id, content, created_at, seq, client_id, reply_to)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (conversation_id, sender_id, client_id)
                        WHERE client_id IS NOT NULL DO NOTHING",
                    params![
                        msg.id,
                        msg.conversation_id,
                        msg.sender_id,
                        tx.codec.seal(&msg.id, &msg.content),
                        msg.created_at_ms,
                        seq,
                        msg.client_id,
                        msg.reply_to
                    ],
                )?;
                if inserted == 0 {
                    let earlier = match &msg.client_id {
                        Some(client_id) => first(
                            &tx.conn,
                            &SQL.message_by_client_id,
                            params![msg.conversation_id, msg.sender_id, client_id],
                            message_row,
                        )?,
                        None => None,
                    };
                    let earlier = earlier.ok_or(StoreError::NotFound)?;
                    let value = open_row(&tx.codec, earlier)?;
                    return Ok(Upserted { value, created: false });
                }
                // The conversation's sequence and activity, and the sender has read what
                // they sent.
                execute(
                    &tx.conn,
                    "UPDATE conversations SET last_seq = ?2, last_activity_at = ?3 WHERE id = ?1",
                    params![msg.conversation_id, seq, msg.created_at_ms],
                )?;
                execute(
                    &tx.conn,
                    "UPDATE participants SET last_read_seq = ?3
                      WHERE conversation_id = ?1 AND user_id = ?2 AND last_read_seq < ?3",
                    params![msg.conversation_id, msg.sender_id, seq],
                )?;
                let message = stored_message(&msg, seq);
                let event = Event::NewMessage(message.clone());
                emit(tx, &message.conversation_id, &event, Some(&message.id), Audience::Members)?;
                Ok(Upserted { value: message, created: true })
            })
            .await
    }

    async fn message(&self, message_id: &str) -> StoreResult<Option<Message>> {
        let id = message_id.to_owned();
        self.read_now(move |conn, codec| {
            first(conn, &SQL.message_by_id, [id], message_row)?
                .map(|r| open_row(codec, r))
                .transpose()
        })
        .await
    }

    async fn messages_page(
        &self,
        conversation_id: &str,
        reader: &str,
        cursor: PageCursor,
        limit: i64,
    ) -> StoreResult<Option<(Vec<Message>, bool)>> {
        // Fetch one more than asked: its presence is `has_more`.
        let (lower, upper, descending) = match cursor {
            PageCursor::Latest => (0, i64::MAX, true),
            PageCursor::Before(before) => (0, before, true),
            PageCursor::After(after) => (after, i64::MAX, false),
            PageCursor::Between { after, before } => (after, before, false),
        };
        let (conv, reader) = (conversation_id.to_owned(), reader.to_owned());
        self.read_now(move |conn, codec| {
            let member = first(
                conn,
                "SELECT 1 FROM participants WHERE conversation_id = ?1 AND user_id = ?2",
                params![conv, reader],
                |_| Ok(()),
            )?;
            if member.is_none() {
                return Ok(None);
            }
            let sql = if descending { &SQL.page_descending } else { &SQL.page_ascending };
            let mut rows = all(conn, sql, params![conv, lower, upper, limit + 1], message_row)?;
            let has_more = rows.len() as i64 > limit;
            rows.truncate(limit as usize);
            if descending {
                rows.reverse();
            }
            let messages =
                rows.into_iter().map(|r| open_row(codec, r)).collect::<StoreResult<Vec<_>>>()?;
            Ok(Some((messages, has_more)))
        })
        .await
    }

    async fn update_message_content(
        &self,
        message_id: &str,
        content: &str,
        edited_at_ms: i64,
    ) -> StoreResult<Message> {
        let (id, content) = (message_id.to_owned(), content.to_owned());
        self.writer
            .write(move |tx| {
                let stored = tx.codec.seal(&id, &content);
                let done = execute(
                    &tx.conn,
                    "UPDATE messages SET content = ?2, edited_at = ?3 WHERE id = ?1 AND deleted = 0",
                    params![id, stored, edited_at_ms],
                )?;
                if done == 0 {
                    // Deleted between the service's check and now, or gone.
                    return Err(StoreError::Conflict("message is deleted"));
                }
                // Earlier events carried the old text: they get the new one, so an edit keeps
                // no old version anywhere.
                index_events(&tx.conn)?;
                execute(
                    &tx.conn,
                    "UPDATE events SET payload = CASE
                        WHEN type IN ('new_message', 'message_updated') THEN
                            json_set(payload, '$.content', ?2)
                        WHEN type IN ('conversation_created', 'conversation_updated') THEN
                            json_set(payload, '$.last_message.content', ?2)
                        WHEN type IN ('participant_added', 'participant_removed') THEN
                            json_set(payload, '$.conversation.last_message.content', ?2)
                        ELSE payload END
                      WHERE id IN (SELECT id FROM event_refs WHERE ref_id = ?1)",
                    params![id, stored],
                )?;
                let message = message_on(&tx.conn, &tx.codec, &id)?;
                let event = Event::MessageUpdated(message.clone());
                emit(tx, &message.conversation_id, &event, Some(&id), Audience::Members)?;
                Ok(message)
            })
            .await
    }

    async fn tombstone_message(&self, message_id: &str) -> StoreResult<Message> {
        let id = message_id.to_owned();
        self.writer
            .write(move |tx| {
                // The content is overwritten, not just flagged, here and in every event that
                // carried it: deleted text leaves the database.
                execute(
                    &tx.conn,
                    "UPDATE messages SET content = '', deleted = 1 WHERE id = ?1",
                    [&id],
                )?;
                index_events(&tx.conn)?;
                execute(
                    &tx.conn,
                    "UPDATE events SET payload = CASE
                        WHEN type IN ('new_message', 'message_updated') THEN
                            json_set(payload, '$.content', '', '$.deleted', json('true'))
                        WHEN type IN ('conversation_created', 'conversation_updated') THEN
                            json_set(payload, '$.last_message.content', '',
                                     '$.last_message.deleted', json('true'))
                        WHEN type IN ('participant_added', 'participant_removed') THEN
                            json_set(payload, '$.conversation.last_message.content', '',
                                     '$.conversation.last_message.deleted', json('true'))
                        ELSE payload END
                      WHERE id IN (SELECT id FROM event_refs WHERE ref_id = ?1)",
                    [&id],
                )?;
                let message = message_on(&tx.conn, &tx.codec, &id)?;
                let event = Event::MessageDeleted(message.clone());
                emit(tx, &message.conversation_id, &event, None, Audience::Members)?;
                Ok(message)
            })
            .await
    }

    async fn mark_read(&self, conversation_id: &str, user_id: &str, seq: i64) -> StoreResult<i64> {
        self.move_watermark(conversation_id, user_id, seq, Watermark::Read).await
    }

    async fn mark_delivered(
        &self,
        conversation_id: &str,
        user_id: &str,
        seq: i64,
    ) -> StoreResult<i64> {
        self.move_watermark(conversation_id, user_id, seq, Watermark::Delivered).await
    }

    async fn event_bounds(&self) -> StoreResult<EventBounds> {
        let (floor, head): (i64, i64) = self
            .read(|conn, _| {
                one(
                    conn,
                    "SELECT (SELECT floor FROM event_log WHERE id = 1),
                            COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await?;
        Ok(EventBounds { instance: self.instance.clone(), floor, head })
    }

    async fn events_for(
        &self,
        user_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<StoredFrame>> {
        let user = user_id.to_owned();
        let instance = self.instance.clone();
        self.read(move |conn, codec| {
            let rows: Vec<(i64, String, String)> =
                all(conn, &SQL.events_for, params![user, after, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            rows.into_iter()
                .map(|(id, kind, payload)| {
                    let payload = codec.open_payload(payload)?;
                    Ok(StoredFrame { id, frame: frame_text(&kind, &payload, &instance, id) })
                })
                .collect()
        })
        .await
    }

    async fn event_ids_between(&self, after: i64, upto: i64) -> StoreResult<Vec<i64>> {
        self.read(move |conn, _| {
            all(
                conn,
                "SELECT id FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id",
                params![after, upto],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn count_events_for(&self, user_id: &str, after: i64, cap: i64) -> StoreResult<i64> {
        let user = user_id.to_owned();
        self.read(move |conn, _| {
            one(conn, &SQL.count_events_for, params![user, after, cap], |r| r.get(0))
        })
        .await
    }

    async fn prune_events(&self, before_ms: i64) -> StoreResult<u64> {
        self.writer
            .write(move |tx| {
                let newest: Option<i64> = one(
                    &tx.conn,
                    "SELECT MAX(id) FROM events WHERE created_at < ?1",
                    [before_ms],
                    |r| r.get(0),
                )?;
                let Some(newest) = newest else { return Ok(0) };
                // The index tables' entries go first, found through the events they name.
                execute(
                    &tx.conn,
                    "DELETE FROM event_index WHERE id <= ?1 AND conversation_id IN
                        (SELECT DISTINCT conversation_id FROM events WHERE id <= ?1)",
                    [newest],
                )?;
                execute(
                    &tx.conn,
                    "DELETE FROM event_refs WHERE id <= ?1 AND ref_id IN
                        (SELECT ref_id FROM events WHERE id <= ?1 AND ref_id IS NOT NULL)",
                    [newest],
                )?;
                let done = execute(&tx.conn, "DELETE FROM events WHERE id <= ?1", [newest])?;
                execute(
                    &tx.conn,
                    "UPDATE event_log SET floor = MAX(floor, ?1), indexed = MAX(indexed, ?1)
                      WHERE id = 1",
                    [newest],
                )?;
                execute(
                    &tx.conn,
                    "DELETE FROM memberships WHERE to_event IS NOT NULL AND to_event <= ?1",
                    [newest],
                )?;
                Ok(done as u64)
            })
            .await
    }

    async fn close(&self) {
        // Queued writes commit first. Then the connections close with the writer's last, so
        // that it checkpoints everything and removes the log: the next start has nothing to
        // recover.
        self.writer.drain().await;
        self.checkpointer.stop().await;
        // Reads still running finish first: every permit is taken back before the connections
        // are dropped.
        if let Ok(permits) = self.readers.permits.acquire_many(READERS as u32).await {
            permits.forget();
        }
        self.readers.permits.close();
        self.readers.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.writer.close().await;
        if let Some(stopped) = self.writer_stopped.lock().await.take() {
            let _ = stopped.await;
        }
    }
}

#[derive(Clone, Copy)]
enum Watermark {
    Read,
    Delivered,
}

impl SqliteStore {
    /// Moves a participant's read or delivered watermark forward (never back, never past the
    /// last message) and emits the receipt when it moved.
    async fn move_watermark(
        &self,
        conversation_id: &str,
        user_id: &str,
        seq: i64,
        which: Watermark,
    ) -> StoreResult<i64> {
        let (conv, user) = (conversation_id.to_owned(), user_id.to_owned());
        self.writer
            .write(move |tx| {
                // The watermark only moves forward, and never past the last message.
                let (before_sql, update_sql) = match which {
                    Watermark::Read => (
                        "SELECT p.last_read_seq, c.last_seq
                           FROM participants p JOIN conversations c ON c.id = p.conversation_id
                          WHERE p.conversation_id = ?1 AND p.user_id = ?2",
                        "UPDATE participants SET last_read_seq = ?3
                          WHERE conversation_id = ?1 AND user_id = ?2",
                    ),
                    Watermark::Delivered => (
                        "SELECT p.last_delivered_seq, c.last_seq
                           FROM participants p JOIN conversations c ON c.id = p.conversation_id
                          WHERE p.conversation_id = ?1 AND p.user_id = ?2",
                        "UPDATE participants SET last_delivered_seq = ?3
                          WHERE conversation_id = ?1 AND user_id = ?2",
                    ),
                };
                let found: Option<(i64, i64)> =
                    first(&tx.conn, before_sql, params![conv, user], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                let (before, last_seq) = found.ok_or(StoreError::NotFound)?;
                let after = before.max(seq.min(last_seq));
                if after > before {
                    execute(&tx.conn, update_sql, params![conv, user, after])?;
                    let receipt = Receipt {
                        conversation_id: conv.clone(),
                        user_id: user.clone(),
                        seq: after,
                    };
                    let (event, audience) = match which {
                        Watermark::Read => {
                            let shares: bool = one(
                                &tx.conn,
                                "SELECT share_read_receipts FROM users WHERE id = ?1",
                                [&user],
                                |r| r.get(0),
                            )?;
                            let audience =
                                if shares { Audience::Members } else { Audience::Only(&user) };
                            (Event::Read(receipt), audience)
                        }
                        Watermark::Delivered => (Event::Delivered(receipt), Audience::Members),
                    };
                    emit(tx, &conv, &event, None, audience)?;
                }
                Ok(after)
            })
            .await
    }
}

/// A conversation nobody is in any more, for the event of its last member leaving.
fn empty_conversation(conn: &Connection, id: &str) -> StoreResult<Conversation> {
    let row = first(conn, &SQL.conversation_row, [id], conversation_row)?;
    let row = row.ok_or(StoreError::NotFound)?;
    Ok(assemble_conversations(View::Shared(""), vec![row], Vec::new(), Vec::new()).remove(0))
}

/// Re-encrypts every message and event payload not yet under the current key of `keys`
/// (including plain text stored before encryption was enabled), in small `BEGIN IMMEDIATE`
/// transactions that read and rewrite each row together, so a server using the database at the
/// same time only waits a few milliseconds for each batch and no concurrent edit is lost.
pub async fn rotate_keys(url: &str, keys: Arc<Keyring>) -> anyhow::Result<Rotation> {
    let path = path_of(url)?;
    if !path.exists() {
        anyhow::bail!("no database at {}", path.display());
    }
    tokio::task::spawn_blocking(move || {
        let mut conn = open_connection(&path, Some(true))?;
        rotate_on(&mut conn, keys)
    })
    .await?
}

fn rotate_on(conn: &mut Connection, keys: Arc<Keyring>) -> anyhow::Result<Rotation> {
    const BATCH: i64 = 256;
    let codec = Codec::new(Some(keys.clone()));
    let mut done = Rotation::default();

    // In id order (the table's own order is by conversation). A message the running server
    // stores meanwhile is sealed with the new key already, wherever its id falls.
    let mut after = String::new();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows = all(
            &tx,
            "SELECT id, content FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
            params![after, BATCH],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        let Some(last) = rows.last().map(|r| r.0.clone()) else { break };
        for (id, content) in rows {
            if !keys.needs_rotation(&content) {
                continue;
            }
            let plain = codec.open(&id, content)?;
            execute(
                &tx,
                "UPDATE messages SET content = ?2 WHERE id = ?1",
                params![id, keys.seal(&id, &plain)],
            )?;
            done.messages += 1;
        }
        tx.commit()?;
        after = last;
    }

    let mut after = 0_i64;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows = all(
            &tx,
            "SELECT id, payload FROM events WHERE id > ?1 AND ref_id IS NOT NULL
              ORDER BY id LIMIT ?2",
            params![after, BATCH],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        let Some(last) = rows.last().map(|r| r.0) else { break };
        for (id, payload) in rows {
            if let Some(resealed) = codec.reseal_payload(&payload)? {
                execute(
                    &tx,
                    "UPDATE events SET payload = ?2 WHERE id = ?1",
                    params![id, resealed],
                )?;
                done.events += 1;
            }
        }
        tx.commit()?;
        after = last;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use confab_proto::{ConversationType, Role};

    use rusqlite::StatementStatus;

    use super::{MemberCache, Membership, SQL, open_connection};

    const MEMBER: Membership = Membership { kind: ConversationType::Group, role: Role::Member };

    #[test]
    fn an_answer_read_before_or_during_a_removal_is_not_kept() {
        let cache = MemberCache::default();
        let Err(before) = cache.get("c", "bob") else { panic!("nothing kept yet") };
        // Bob is being removed while lookups read the state before it.
        cache.removal_begins("c");
        let Err(during) = cache.get("c", "bob") else { panic!("nothing kept yet") };
        cache.keep(before, "c", "bob", MEMBER);
        cache.keep(during, "c", "bob", MEMBER);
        assert!(cache.get("c", "bob").is_err());

        cache.removal_ended("c");
        cache.keep(during, "c", "bob", MEMBER);
        assert!(cache.get("c", "bob").is_err());
        // After the removal, answers are kept again.
        let Err(after) = cache.get("c", "carol") else { panic!("nothing kept yet") };
        cache.keep(after, "c", "carol", MEMBER);
        assert_eq!(cache.get("c", "carol"), Ok(MEMBER));
    }

    #[test]
    fn a_removal_drops_the_answers_about_its_conversation_only() {
        let cache = MemberCache::default();
        for (conversation, user) in [("c", "bob"), ("c", "carol"), ("d", "bob")] {
            let Err(generation) = cache.get(conversation, user) else { panic!("not kept yet") };
            cache.keep(generation, conversation, user, MEMBER);
        }
        assert_eq!(cache.get("c", "bob"), Ok(MEMBER));

        cache.removal_begins("c");

        assert!(cache.get("c", "bob").is_err() && cache.get("c", "carol").is_err());
        assert_eq!(cache.get("d", "bob"), Ok(MEMBER));
        assert_eq!(cache.entries().count, 1);
    }

    #[test]
    fn a_history_page_query_is_prepared_once_whatever_its_limit() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pages.db");
        // The migrations create the file in the server; the store's connections only open it.
        drop(rusqlite::Connection::open(&path)?);
        let writer = open_connection(&path, Some(true))?;
        writer.execute_batch(
            "CREATE TABLE messages (id TEXT, conversation_id TEXT, sender_id TEXT, content TEXT,
                 created_at INTEGER, seq INTEGER, client_id TEXT, reply_to TEXT,
                 edited_at INTEGER, deleted INTEGER,
                 PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID;
             WITH RECURSIVE n(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM n WHERE seq < 9)
             INSERT INTO messages SELECT 'm' || seq, 'c', 'u', 'hi', seq, seq, NULL, NULL, NULL, 0
               FROM n;",
        )?;
        let reader = open_connection(&path, None)?;
        let mut page = reader.prepare(&SQL.page_descending)?;
        for limit in [3_i64, 5, 2, 5] {
            let rows = page.query_map(rusqlite::params!["c", 0, 100, limit], |_| Ok(()))?;
            assert_eq!(rows.count() as i64, limit);
        }
        // Planned with the first limit and run with each of them, never parsed and planned anew.
        assert_eq!(page.get_status(StatementStatus::RePrepare), 0);
        assert_eq!(page.get_status(StatementStatus::Run), 4);
        Ok(())
    }

    #[test]
    fn a_removal_that_never_ends_leaves_its_conversation_uncached() {
        let cache = MemberCache::default();
        cache.removal_begins("c");
        let Err(generation) = cache.get("c", "carol") else { panic!("nothing kept yet") };
        cache.keep(generation, "c", "carol", MEMBER);
        assert!(cache.get("c", "carol").is_err());
    }
}
