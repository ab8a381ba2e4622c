//! `Store` on embedded SQLite: WAL mode, one writer task with group commit (`writer.rs`) and a
//! small pool of read-only connections, which WAL lets read while the writer writes.
//!
//! Timestamps are stored as unix milliseconds. Placeholders are `$1, $2, …`, which SQLite and
//! PostgreSQL both accept, so most statements can be shared by a PostgreSQL store.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use confab_proto::{
    Conversation, Event, Frame, Me, MembershipChange, Message, Participant, Receipt, User,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, FromRow, SqliteConnection};
use tokio::sync::Mutex;

use super::codec::Codec;
use super::rows::{
    Audience, CONVERSATION_ROW, CONVERSATION_SELECT, ConversationRow, MESSAGE_COLUMNS, MessageRow,
    PARTICIPANT_SELECT, ParticipantRow, UserRow, View, assemble_conversations, frame_text,
    open_row, parse_kind, parse_role,
};
use super::writer::{EventSink, Published, Tx, Writer};
use super::{
    EventBounds, Membership, NewConversation, NewMessage, NewParticipant, NewSession, NewUser,
    PageCursor, Removal, Rotation, SessionRecord, Store, StoreError, StoreResult, StoredFrame,
    StoredSession, Upserted, UserCredentials,
};
use crate::security::crypto::Keyring;
use crate::time::from_ms;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How many read connections to keep open.
const READERS: u32 = 4;

pub struct SqliteStore {
    instance: Arc<str>,
    codec: Codec,
    writer: Writer,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    read: SqlitePool,
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
        let base = connect_options(path);
        let write_opts = base.clone().create_if_missing(true).synchronous(if synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        });
        let mut write_conn = SqliteConnection::connect_with(&write_opts)
            .await
            .with_context(|| format!("open SQLite database {}", path.display()))?;
        MIGRATOR
            .run(&mut write_conn)
            .await
            .with_context(|| format!("apply migrations to {}", path.display()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(1)
            .connect_with(base.read_only(true))
            .await
            .context("open SQLite read pool")?;
        let instance: String = sqlx::query_scalar("SELECT instance FROM event_log WHERE id = 1")
            .fetch_one(&read)
            .await
            .context("read the event log's instance")?;
        let instance: Arc<str> = instance.into();
        let codec = Codec::new(keys);
        let (writer, task) = Writer::spawn(write_conn, instance.clone(), codec.clone(), sink);
        Ok(SqliteStore { instance, codec, writer, writer_task: Mutex::new(Some(task)), read })
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
}

fn path_of(url: &str) -> anyhow::Result<std::path::PathBuf> {
    let opts = SqliteConnectOptions::from_str(url).with_context(|| format!("parse {url}"))?;
    Ok(opts.get_filename().to_path_buf())
}

/// Options every connection shares. `secure_delete` overwrites deleted and replaced content
/// with zeros, so an edited or deleted message leaves no old text in free pages.
fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("secure_delete", "on")
}

/// Conversations as `view` sees them (all of the member's, or `only` one), with participants
/// and last messages: three queries in all, whatever the number of conversations.
async fn conversations_on(
    conn: &mut SqliteConnection,
    codec: &Codec,
    view: View<'_>,
    only: Option<&str>,
) -> StoreResult<Vec<Conversation>> {
    let (viewer, reveal_reads_of) = match view {
        View::Member(user) => (user, user),
        View::Shared(user) => (user, ""),
    };
    let rows: Vec<ConversationRow> = match only {
        Some(id) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{CONVERSATION_SELECT} AND c.id = $2")))
                .bind(viewer)
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{CONVERSATION_SELECT} ORDER BY c.last_activity_at DESC, c.id DESC"
            )))
            .bind(viewer)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // With `only`, `$2` narrows both queries to one conversation; otherwise it is unused.
    let scope = if only.is_some() {
        "p.conversation_id = $2"
    } else {
        "p.conversation_id IN (SELECT conversation_id FROM participants WHERE user_id = $1)"
    };
    let participants: Vec<ParticipantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PARTICIPANT_SELECT} WHERE {scope} ORDER BY p.joined_at, p.id"
    )))
    .bind(viewer)
    .bind(only.unwrap_or_default())
    .bind(reveal_reads_of)
    .fetch_all(&mut *conn)
    .await?;
    let last_messages: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM participants p
           JOIN conversations c ON c.id = p.conversation_id
           JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
          WHERE p.user_id = $1 AND ($2 = '' OR p.conversation_id = $2)",
        MESSAGE_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ")
    )))
    .bind(viewer)
    .bind(only.unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;

    let last_messages =
        last_messages.into_iter().map(|m| open_row(codec, m)).collect::<StoreResult<_>>()?;
    Ok(assemble_conversations(view, rows, participants, last_messages))
}

/// The conversation as put in an event all members receive (see [`View::Shared`]).
async fn conversation_on(
    conn: &mut SqliteConnection,
    codec: &Codec,
    conversation_id: &str,
    built_by: &str,
) -> StoreResult<Conversation> {
    conversations_on(conn, codec, View::Shared(built_by), Some(conversation_id))
        .await?
        .pop()
        .ok_or(StoreError::NotFound)
}

async fn insert_members(
    conn: &mut SqliteConnection,
    conversation_id: &str,
    members: &[NewParticipant],
) -> StoreResult<Vec<String>> {
    let mut added = Vec::with_capacity(members.len());
    for m in members {
        let done = sqlx::query(
            "INSERT INTO participants (id, conversation_id, user_id, joined_at, role)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )
        .bind(&m.id)
        .bind(conversation_id)
        .bind(&m.user_id)
        .bind(m.joined_at_ms)
        .bind(m.role.as_str())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            added.push(m.user_id.clone());
        }
    }
    Ok(added)
}

/// Opens a replay span: `user_id` sees the conversation's events from `from_event` on.
async fn open_membership(
    conn: &mut SqliteConnection,
    conversation_id: &str,
    user_id: &str,
    from_event: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO memberships (conversation_id, user_id, from_event) VALUES ($1, $2, $3)",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(from_event)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn message_on(
    conn: &mut SqliteConnection,
    codec: &Codec,
    message_id: &str,
) -> StoreResult<Message> {
    let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
    )))
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    open_row(codec, row.ok_or(StoreError::NotFound)?)
}

/// Appends `event` to the log in the current transaction and queues it for delivery after the
/// commit. `ref_id` names the message whose content the payload holds (to erase on delete).
async fn emit(
    tx: &mut Tx,
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
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO events (conversation_id, type, ref_id, audience, payload, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(conversation_id)
    .bind(&frame.kind)
    .bind(ref_id)
    .bind(only)
    .bind(&stored)
    .bind(crate::time::now_ms())
    .fetch_one(&mut tx.conn)
    .await?;
    let mut recipients = match audience {
        Audience::Only(user) => vec![user.to_owned()],
        Audience::Members | Audience::MembersAnd(_) => {
            sqlx::query_scalar("SELECT user_id FROM participants WHERE conversation_id = $1")
                .bind(conversation_id)
                .fetch_all(&mut tx.conn)
                .await?
        }
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
                Box::pin(async move {
                    // The single writer makes the skeleton check and the insert atomic.
                    let row: Option<UserRow> = sqlx::query_as(
                        "INSERT INTO users (id, username, username_key, password_hash, created_at,
                                            username_skeleton)
                         SELECT $1, $2, $3, $4, $5, $6
                          WHERE NOT EXISTS (SELECT 1 FROM users WHERE username_skeleton = $6)
                         ON CONFLICT (username_key) DO NOTHING
                         RETURNING id, username, created_at",
                    )
                    .bind(&user.id)
                    .bind(&user.username)
                    .bind(&user.username_key)
                    .bind(&user.password_hash)
                    .bind(user.created_at_ms)
                    .bind(&user.username_skeleton)
                    .fetch_optional(&mut tx.conn)
                    .await?;
                    row.map(User::from).ok_or(StoreError::Conflict("username is taken"))
                })
            })
            .await
    }

    async fn user_credentials(&self, username_key: &str) -> StoreResult<Option<UserCredentials>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            password_hash: String,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, username, created_at, password_hash FROM users WHERE username_key = $1",
        )
        .bind(username_key)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| UserCredentials { user: r.user.into(), password_hash: r.password_hash }))
    }

    async fn users_by_prefix(&self, prefix_key: &str, limit: i64) -> StoreResult<Vec<User>> {
        // A range on the unique index instead of LIKE: `_` is a LIKE wildcard and a legal
        // username character. Every username character sorts below U+007F.
        let upper = format!("{prefix_key}\u{7f}");
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, username, created_at FROM users
              WHERE username_key >= $1 AND username_key < $2 ORDER BY username_key LIMIT $3",
        )
        .bind(prefix_key)
        .bind(upper)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    async fn users_by_ids(&self, ids: &[String]) -> StoreResult<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let json = serde_json::to_string(ids).context("encode ids")?;
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, username, created_at FROM users WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    async fn me(&self, user_id: &str) -> StoreResult<Option<Me>> {
        let row: Option<(String, String, i64, bool)> = sqlx::query_as(
            "SELECT id, username, created_at, share_read_receipts FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|(id, username, created_at, share_read_receipts)| Me {
            id,
            username,
            created_at: from_ms(created_at),
            share_read_receipts,
        }))
    }

    async fn set_share_read_receipts(&self, user_id: &str, share: bool) -> StoreResult<()> {
        let user = user_id.to_owned();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query("UPDATE users SET share_read_receipts = $2 WHERE id = $1")
                        .bind(&user)
                        .bind(share)
                        .execute(&mut tx.conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn set_last_seen(&self, user_id: &str, at_ms: i64) -> StoreResult<()> {
        let user = user_id.to_owned();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
                        .bind(&user)
                        .bind(at_ms)
                        .execute(&mut tx.conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn last_seen(&self, user_id: &str) -> StoreResult<Option<i64>> {
        let row: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT last_seen_at FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.and_then(|(at,)| at))
    }

    async fn contacts(&self, user_id: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT other.user_id FROM participants mine
               JOIN participants other ON other.conversation_id = mine.conversation_id
              WHERE mine.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn insert_session(&self, session: NewSession) -> StoreResult<()> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, id,
                                               last_used_at, user_agent, ip)
                         VALUES ($1, $2, $3, $4, $5, $3, $6, $7)",
                    )
                    .bind(&session.token_hash)
                    .bind(&session.user_id)
                    .bind(session.created_at_ms)
                    .bind(session.expires_at_ms)
                    .bind(&session.id)
                    .bind(&session.user_agent)
                    .bind(&session.ip)
                    .execute(&mut tx.conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            expires_at: i64,
            last_used_at: i64,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT u.id, u.username, u.created_at, s.expires_at,
                    COALESCE(s.last_used_at, s.created_at) AS last_used_at
               FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| SessionRecord {
            user: r.user.into(),
            expires_at_ms: r.expires_at,
            last_used_at_ms: r.last_used_at,
        }))
    }

    async fn touch_session(&self, token_hash: &str, at_ms: i64) -> StoreResult<bool> {
        let token_hash = token_hash.to_owned();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let done =
                        sqlx::query("UPDATE sessions SET last_used_at = $2 WHERE token_hash = $1")
                            .bind(&token_hash)
                            .bind(at_ms)
                            .execute(&mut tx.conn)
                            .await?;
                    Ok(done.rows_affected() == 1)
                })
            })
            .await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                        .bind(&token_hash)
                        .execute(&mut tx.conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<StoredSession>> {
        #[derive(FromRow)]
        struct Row {
            id: String,
            token_hash: String,
            created_at: i64,
            last_used_at: i64,
            expires_at: i64,
            user_agent: Option<String>,
            ip: Option<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, token_hash, created_at, COALESCE(last_used_at, created_at) AS last_used_at,
                    expires_at, user_agent, ip
               FROM sessions WHERE user_id = $1 ORDER BY last_used_at DESC, created_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredSession {
                id: r.id,
                token_hash: r.token_hash,
                created_at_ms: r.created_at,
                last_used_at_ms: r.last_used_at,
                expires_at_ms: r.expires_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    async fn delete_session_by_id(&self, user_id: &str, id: &str) -> StoreResult<Option<String>> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    Ok(sqlx::query_scalar(
                        "DELETE FROM sessions WHERE user_id = $1 AND id = $2 RETURNING token_hash",
                    )
                    .bind(&user_id)
                    .bind(&id)
                    .fetch_optional(&mut tx.conn)
                    .await?)
                })
            })
            .await
    }

    async fn delete_other_sessions(&self, user_id: &str, keep: &str) -> StoreResult<Vec<String>> {
        let (user_id, keep) = (user_id.to_owned(), keep.to_owned());
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    Ok(sqlx::query_scalar(
                        "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2
                         RETURNING token_hash",
                    )
                    .bind(&user_id)
                    .bind(&keep)
                    .fetch_all(&mut tx.conn)
                    .await?)
                })
            })
            .await
    }

    async fn delete_stale_sessions(&self, now_ms: i64, idle_before_ms: i64) -> StoreResult<u64> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM sessions
                          WHERE expires_at <= $1 OR COALESCE(last_used_at, created_at) < $2",
                    )
                    .bind(now_ms)
                    .bind(idle_before_ms)
                    .execute(&mut tx.conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let (user_id, hash) = (user_id.to_owned(), password_hash.to_owned());
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                        .bind(&user_id)
                        .bind(&hash)
                        .execute(&mut tx.conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn insert_conversation(&self, conv: NewConversation) -> StoreResult<Upserted<String>> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(key) = &conv.direct_key {
                        let existing: Option<(String,)> =
                            sqlx::query_as("SELECT id FROM conversations WHERE direct_key = $1")
                                .bind(key)
                                .fetch_optional(&mut tx.conn)
                                .await?;
                        if let Some((id,)) = existing {
                            return Ok(Upserted { value: id, created: false });
                        }
                    }
                    sqlx::query(
                        "INSERT INTO conversations
                            (id, type, title, created_at, created_by, direct_key, last_activity_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $4)",
                    )
                    .bind(&conv.id)
                    .bind(conv.kind.as_str())
                    .bind(&conv.title)
                    .bind(conv.created_at_ms)
                    .bind(&conv.created_by)
                    .bind(&conv.direct_key)
                    .execute(&mut tx.conn)
                    .await?;
                    let added = insert_members(&mut tx.conn, &conv.id, &conv.members).await?;
                    let snapshot =
                        conversation_on(&mut tx.conn, &tx.codec, &conv.id, &conv.created_by)
                            .await?;
                    let event = Event::ConversationCreated(snapshot);
                    let at = emit(tx, &conv.id, &event, None, Audience::Members).await?;
                    for user in &added {
                        open_membership(&mut tx.conn, &conv.id, user, at).await?;
                    }
                    Ok(Upserted { value: conv.id, created: true })
                })
            })
            .await
    }

    async fn membership(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<Membership>> {
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT c.type, p.role, p.last_read_seq, c.last_seq
               FROM participants p JOIN conversations c ON c.id = p.conversation_id
              WHERE p.conversation_id = $1 AND p.user_id = $2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|(kind, role, last_read_seq, last_seq)| Membership {
            kind: parse_kind(&kind),
            role: parse_role(&role),
            last_read_seq,
            last_seq,
        }))
    }

    async fn conversation_for(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<Conversation>> {
        let mut conn = self.read.acquire().await?;
        Ok(conversations_on(&mut conn, &self.codec, View::Member(user_id), Some(conversation_id))
            .await?
            .pop())
    }

    async fn conversations_for(&self, user_id: &str) -> StoreResult<Vec<Conversation>> {
        let mut conn = self.read.acquire().await?;
        conversations_on(&mut conn, &self.codec, View::Member(user_id), None).await
    }

    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<Participant>> {
        let rows: Vec<ParticipantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{PARTICIPANT_SELECT} WHERE p.conversation_id = $2 ORDER BY p.joined_at, p.id"
        )))
        .bind("")
        .bind(conversation_id)
        .bind("")
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(Participant::from).collect())
    }

    async fn participant_ids(&self, conversation_id: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM participants WHERE conversation_id = $1")
            .bind(conversation_id)
            .fetch_all(&self.read)
            .await?)
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
                Box::pin(async move {
                    let done = sqlx::query("UPDATE conversations SET title = $2 WHERE id = $1")
                        .bind(&id)
                        .bind(&title)
                        .execute(&mut tx.conn)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let snapshot = conversation_on(&mut tx.conn, &tx.codec, &id, &actor).await?;
                    let last = snapshot.last_message.as_ref().map(|m| m.id.clone());
                    let event = Event::ConversationUpdated(snapshot);
                    emit(tx, &id, &event, last.as_deref(), Audience::Members).await?;
                    Ok(())
                })
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
                Box::pin(async move {
                    let added = insert_members(&mut tx.conn, &id, &members).await?;
                    if added.is_empty() {
                        return Ok(added);
                    }
                    let snapshot = conversation_on(&mut tx.conn, &tx.codec, &id, &actor).await?;
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
                        let at = emit(tx, &id, &event, last.as_deref(), Audience::Members).await?;
                        open_membership(&mut tx.conn, &id, user, at).await?;
                    }
                    Ok(added)
                })
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
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let username: Option<String> = sqlx::query_scalar(
                        "SELECT u.username FROM participants p JOIN users u ON u.id = p.user_id
                          WHERE p.conversation_id = $1 AND p.user_id = $2",
                    )
                    .bind(&conv)
                    .bind(&user)
                    .fetch_optional(&mut tx.conn)
                    .await?;
                    let username = username.ok_or(StoreError::NotFound)?;
                    sqlx::query("DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2")
                        .bind(&conv)
                        .bind(&user)
                        .execute(&mut tx.conn)
                        .await?;
                    let promoted: Option<String> = sqlx::query_scalar(
                        "UPDATE participants SET role = 'admin'
                          WHERE id = (SELECT id FROM participants WHERE conversation_id = $1
                                       ORDER BY joined_at, id LIMIT 1)
                            AND NOT EXISTS (SELECT 1 FROM participants
                                             WHERE conversation_id = $1 AND role = 'admin')
                          RETURNING user_id",
                    )
                    .bind(&conv)
                    .fetch_optional(&mut tx.conn)
                    .await?;
                    // The snapshot is seen by the remover, or by a remaining member when the
                    // last one left (then nobody but the leaver receives it).
                    let snapshot = match conversation_on(&mut tx.conn, &tx.codec, &conv, &actor).await {
                        Ok(c) => c,
                        Err(StoreError::NotFound) => {
                            let viewer: Option<String> = sqlx::query_scalar(
                                "SELECT user_id FROM participants WHERE conversation_id = $1 LIMIT 1",
                            )
                            .bind(&conv)
                            .fetch_optional(&mut tx.conn)
                            .await?;
                            match viewer {
                                Some(v) => conversation_on(&mut tx.conn, &tx.codec, &conv, &v).await?,
                                None => empty_conversation(&mut tx.conn, &conv).await?,
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
                    let at =
                        emit(tx, &conv, &event, last.as_deref(), Audience::MembersAnd(&user)).await?;
                    sqlx::query(
                        "UPDATE memberships SET to_event = $3
                          WHERE conversation_id = $1 AND user_id = $2 AND to_event IS NULL",
                    )
                    .bind(&conv)
                    .bind(&user)
                    .bind(at)
                    .execute(&mut tx.conn)
                    .await?;
                    Ok(Removal { promoted })
                })
            })
            .await
    }

    async fn insert_message(&self, msg: NewMessage) -> StoreResult<Upserted<Message>> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    // `seq` is the conversation's `last_seq + 1`; the trigger of migration
                    // 0003 stores it back and moves the sender's read watermark. The writer is
                    // the only one inserting, so seq is gapless. A repeated client_id inserts
                    // nothing (the unique index), and then the first message is the answer.
                    let seq: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO messages
                            (id, conversation_id, sender_id, content, created_at, seq, client_id, reply_to)
                         SELECT $1, $2, $3, $4, $5, last_seq + 1, $6, $7
                           FROM conversations WHERE id = $2
                         ON CONFLICT (conversation_id, sender_id, client_id)
                            WHERE client_id IS NOT NULL DO NOTHING
                         RETURNING seq",
                    )
                    .bind(&msg.id)
                    .bind(&msg.conversation_id)
                    .bind(&msg.sender_id)
                    .bind(tx.codec.seal(&msg.id, &msg.content))
                    .bind(msg.created_at_ms)
                    .bind(&msg.client_id)
                    .bind(&msg.reply_to)
                    .fetch_optional(&mut tx.conn)
                    .await?;
                    if seq.is_none()
                        && let Some(client_id) = &msg.client_id
                    {
                        let first: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                            "SELECT {MESSAGE_COLUMNS} FROM messages
                              WHERE conversation_id = $1 AND sender_id = $2 AND client_id = $3"
                        )))
                        .bind(&msg.conversation_id)
                        .bind(&msg.sender_id)
                        .bind(client_id)
                        .fetch_optional(&mut tx.conn)
                        .await?;
                        if let Some(first) = first {
                            let value = open_row(&tx.codec, first)?;
                            return Ok(Upserted { value, created: false });
                        }
                    }
                    let seq = seq.ok_or(StoreError::NotFound)?;
                    let row = MessageRow {
                        id: msg.id.clone(),
                        conversation_id: msg.conversation_id.clone(),
                        sender_id: msg.sender_id.clone(),
                        content: msg.content.clone(),
                        created_at: msg.created_at_ms,
                        seq,
                        client_id: msg.client_id.clone(),
                        reply_to: msg.reply_to.clone(),
                        edited_at: None,
                        deleted: false,
                    };
                    let message = Message::from(row);
                    let event = Event::NewMessage(message.clone());
                    emit(tx, &msg.conversation_id, &event, Some(&message.id), Audience::Members)
                        .await?;
                    Ok(Upserted { value: message, created: true })
                })
            })
            .await
    }

    async fn message(&self, message_id: &str) -> StoreResult<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        )))
        .bind(message_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| open_row(&self.codec, r)).transpose()
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
        let order = if descending { "DESC" } else { "ASC" };
        // The page comes back as one JSON value, not one row per message: sqlx hands every
        // row from SQLite's thread to this task separately, and those hand-offs, not the
        // query, were most of a page's time. Content travels as hex of its bytes (sealed
        // content starts with a NUL, which SQLite's JSON functions would cut at).
        // NULL (no page) unless `$5` is a participant: the access check travels with it.
        let page: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM participants
                                       WHERE conversation_id = $1 AND user_id = $5)
                    THEN (SELECT json_group_array(json_array(id, conversation_id, sender_id,
                                     hex(CAST(content AS BLOB)), created_at, seq, client_id,
                                     reply_to, edited_at, deleted))
                            FROM (SELECT {MESSAGE_COLUMNS} FROM messages
                                   WHERE conversation_id = $1 AND seq > $2 AND seq < $3
                                   ORDER BY seq {order} LIMIT $4))
                    END"
        )))
        .bind(conversation_id)
        .bind(lower)
        .bind(upper)
        .bind(limit + 1)
        .bind(reader)
        .fetch_one(&self.read)
        .await?;
        let Some(page) = page else { return Ok(None) };
        let mut rows = page_rows(&page)?;
        // Nearest to the cursor first, whatever order the aggregate kept.
        rows.sort_unstable_by_key(|r| if descending { -r.seq } else { r.seq });
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        if descending {
            rows.reverse();
        }
        let messages =
            rows.into_iter().map(|r| open_row(&self.codec, r)).collect::<StoreResult<Vec<_>>>()?;
        Ok(Some((messages, has_more)))
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
                Box::pin(async move {
                    let stored = tx.codec.seal(&id, &content);
                    let done = sqlx::query(
                        "UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1 AND deleted = 0",
                    )
                    .bind(&id)
                    .bind(&stored)
                    .bind(edited_at_ms)
                    .execute(&mut tx.conn)
                    .await?;
                    if done.rows_affected() == 0 {
                        // Deleted between the service's check and now, or gone.
                        return Err(StoreError::Conflict("message is deleted"));
                    }
                    // Earlier events carried the old text: they get the new one, so an edit
                    // keeps no old version anywhere.
                    sqlx::query(
                        "UPDATE events SET payload = CASE
                            WHEN type IN ('new_message', 'message_updated') THEN
                                json_set(payload, '$.content', $2)
                            WHEN type IN ('conversation_created', 'conversation_updated') THEN
                                json_set(payload, '$.last_message.content', $2)
                            WHEN type IN ('participant_added', 'participant_removed') THEN
                                json_set(payload, '$.conversation.last_message.content', $2)
                            ELSE payload END
                          WHERE ref_id = $1",
                    )
                    .bind(&id)
                    .bind(&stored)
                    .execute(&mut tx.conn)
                    .await?;
                    let message = message_on(&mut tx.conn, &tx.codec, &id).await?;
                    let event = Event::MessageUpdated(message.clone());
                    emit(tx, &message.conversation_id, &event, Some(&id), Audience::Members).await?;
                    Ok(message)
                })
            })
            .await
    }

    async fn tombstone_message(&self, message_id: &str) -> StoreResult<Message> {
        let id = message_id.to_owned();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    // The content is overwritten, not just flagged, here and in every event
                    // that carried it: deleted text leaves the database.
                    sqlx::query("UPDATE messages SET content = '', deleted = 1 WHERE id = $1")
                        .bind(&id)
                        .execute(&mut tx.conn)
                        .await?;
                    sqlx::query(
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
                          WHERE ref_id = $1",
                    )
                    .bind(&id)
                    .execute(&mut tx.conn)
                    .await?;
                    let message = message_on(&mut tx.conn, &tx.codec, &id).await?;
                    let event = Event::MessageDeleted(message.clone());
                    emit(tx, &message.conversation_id, &event, None, Audience::Members).await?;
                    Ok(message)
                })
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
        let (floor, head): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT floor FROM event_log WHERE id = 1),
                    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(EventBounds { instance: self.instance.clone(), floor, head })
    }

    async fn events_for(
        &self,
        user_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<StoredFrame>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT e.id, e.type, e.payload FROM memberships s
               JOIN events e ON e.conversation_id = s.conversation_id
              WHERE s.user_id = $1 AND (s.to_event IS NULL OR s.to_event > $2)
                AND e.id > $2 AND e.id >= s.from_event
                AND (s.to_event IS NULL OR e.id <= s.to_event)
                AND (e.audience IS NULL OR e.audience = $1)
              ORDER BY e.id LIMIT $3",
        )
        .bind(user_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, kind, payload)| {
                let payload = self.codec.open_payload(payload)?;
                Ok(StoredFrame { id, frame: frame_text(&kind, &payload, &self.instance, id) })
            })
            .collect()
    }

    async fn event_ids_between(&self, after: i64, upto: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM events WHERE id > $1 AND id <= $2 ORDER BY id")
            .bind(after)
            .bind(upto)
            .fetch_all(&self.read)
            .await?)
    }

    async fn count_events_for(&self, user_id: &str, after: i64, cap: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM memberships s
               JOIN events e ON e.conversation_id = s.conversation_id
              WHERE s.user_id = $1 AND (s.to_event IS NULL OR s.to_event > $2)
                AND e.id > $2 AND e.id >= s.from_event
                AND (s.to_event IS NULL OR e.id <= s.to_event)
                AND (e.audience IS NULL OR e.audience = $1)
              LIMIT $3)",
        )
        .bind(user_id)
        .bind(after)
        .bind(cap)
        .fetch_one(&self.read)
        .await?)
    }

    async fn prune_events(&self, before_ms: i64) -> StoreResult<u64> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let newest_pruned: Option<i64> =
                        sqlx::query_scalar("SELECT MAX(id) FROM events WHERE created_at < $1")
                            .bind(before_ms)
                            .fetch_one(&mut tx.conn)
                            .await?;
                    let Some(newest) = newest_pruned else { return Ok(0) };
                    let done = sqlx::query("DELETE FROM events WHERE id <= $1")
                        .bind(newest)
                        .execute(&mut tx.conn)
                        .await?;
                    sqlx::query("UPDATE event_log SET floor = MAX(floor, $1) WHERE id = 1")
                        .bind(newest)
                        .execute(&mut tx.conn)
                        .await?;
                    sqlx::query(
                        "DELETE FROM memberships WHERE to_event IS NOT NULL AND to_event <= $1",
                    )
                    .bind(newest)
                    .execute(&mut tx.conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await
    }

    async fn close(&self) {
        self.writer.close().await;
        if let Some(task) = self.writer_task.lock().await.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = ?e, "database writer task failed");
        }
        self.read.close().await;
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
                Box::pin(async move {
                    let column = match which {
                        Watermark::Read => "last_read_seq",
                        Watermark::Delivered => "last_delivered_seq",
                    };
                    let before: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT {column} FROM participants WHERE conversation_id = $1 AND user_id = $2"
                    )))
                    .bind(&conv)
                    .bind(&user)
                    .fetch_optional(&mut tx.conn)
                    .await?;
                    let before = before.ok_or(StoreError::NotFound)?;
                    let (after,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "UPDATE participants
                            SET {column} = MAX({column},
                                MIN($3, (SELECT last_seq FROM conversations WHERE id = $1)))
                          WHERE conversation_id = $1 AND user_id = $2
                          RETURNING {column}"
                    )))
                    .bind(&conv)
                    .bind(&user)
                    .bind(seq)
                    .fetch_one(&mut tx.conn)
                    .await?;
                    if after > before {
                        let receipt =
                            Receipt { conversation_id: conv.clone(), user_id: user.clone(), seq: after };
                        let (event, audience) = match which {
                            Watermark::Read => {
                                let shares: bool = sqlx::query_scalar(
                                    "SELECT share_read_receipts FROM users WHERE id = $1",
                                )
                                .bind(&user)
                                .fetch_one(&mut tx.conn)
                                .await?;
                                let audience =
                                    if shares { Audience::Members } else { Audience::Only(&user) };
                                (Event::Read(receipt), audience)
                            }
                            Watermark::Delivered => (Event::Delivered(receipt), Audience::Members),
                        };
                        emit(tx, &conv, &event, None, audience).await?;
                    }
                    Ok(after)
                })
            })
            .await
    }
}

/// The rows of a history page from its JSON form (see `messages_page`).
fn page_rows(page: &str) -> StoreResult<Vec<MessageRow>> {
    type Row = (
        String,
        String,
        String,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
    );
    let bad = |e: String| StoreError::Backend(anyhow::anyhow!("history page: {e}"));
    let rows: Vec<Row> = serde_json::from_str(page).map_err(|e| bad(e.to_string()))?;
    rows.into_iter()
        .map(
            |(
                id,
                conversation_id,
                sender_id,
                hex,
                created_at,
                seq,
                client_id,
                reply_to,
                edited_at,
                deleted,
            )| {
                let bytes =
                    from_hex(&hex).ok_or_else(|| bad(format!("content of {id} is not hex")))?;
                let content = String::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
                Ok(MessageRow {
                    id,
                    conversation_id,
                    sender_id,
                    content,
                    created_at,
                    seq,
                    client_id,
                    reply_to,
                    edited_at,
                    deleted: deleted != 0,
                })
            },
        )
        .collect()
}

/// The bytes of an upper-case hex string, as SQLite's `hex()` writes it.
fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

/// A conversation nobody is in any more, for the event of its last member leaving.
async fn empty_conversation(conn: &mut SqliteConnection, id: &str) -> StoreResult<Conversation> {
    let row: Option<ConversationRow> =
        sqlx::query_as(CONVERSATION_ROW).bind(id).fetch_optional(&mut *conn).await?;
    let row = row.ok_or(StoreError::NotFound)?;
    Ok(assemble_conversations(View::Shared(""), vec![row], Vec::new(), Vec::new()).remove(0))
}

/// Re-encrypts every message and event payload not yet under the current key of `keys`
/// (including plain text stored before encryption was enabled), in small `BEGIN IMMEDIATE`
/// transactions that read and rewrite each row together, so a server using the database at the
/// same time only waits a few milliseconds for each batch and no concurrent edit is lost.
pub async fn rotate_keys(url: &str, keys: Arc<Keyring>) -> anyhow::Result<Rotation> {
    const BATCH: i64 = 256;
    let path = path_of(url)?;
    if !path.exists() {
        anyhow::bail!("no database at {}", path.display());
    }
    let mut conn = SqliteConnection::connect_with(&connect_options(&path))
        .await
        .with_context(|| format!("open {}", path.display()))?;
    let codec = Codec::new(Some(keys.clone()));
    let mut done = Rotation::default();

    let mut after = 0_i64;
    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT rowid, id, content FROM messages WHERE rowid > $1 ORDER BY rowid LIMIT $2",
        )
        .bind(after)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else { break };
        for (rowid, id, content) in rows {
            if !keys.needs_rotation(&content) {
                continue;
            }
            let plain = codec.open(&id, content)?;
            sqlx::query("UPDATE messages SET content = $2 WHERE rowid = $1")
                .bind(rowid)
                .bind(keys.seal(&id, &plain))
                .execute(&mut *tx)
                .await?;
            done.messages += 1;
        }
        tx.commit().await?;
        after = last;
    }

    let mut after = 0_i64;
    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, payload FROM events WHERE id > $1 AND ref_id IS NOT NULL
              ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else { break };
        for (id, payload) in rows {
            if let Some(resealed) = codec.reseal_payload(&payload)? {
                sqlx::query("UPDATE events SET payload = $2 WHERE id = $1")
                    .bind(id)
                    .bind(resealed)
                    .execute(&mut *tx)
                    .await?;
                done.events += 1;
            }
        }
        tx.commit().await?;
        after = last;
    }
    conn.close().await?;
    Ok(done)
}
