//! `Store` on PostgreSQL, for several nodes sharing one database (`--database-url
//! postgres://…`).
//!
//! Writes go through the same single-writer task with group commit as on SQLite (`writer.rs`),
//! one per node, on its own connection. Each batch's transaction first takes a cluster-wide
//! advisory lock ([`BEGIN`]): the batches of all nodes are serialized, so the event
//! log's ids commit in increasing order (a resume cursor never skips an event that commits
//! later) and a conversation's `seq` is gapless whichever node stores the message. Reads use a
//! pool and see committed data only.
//!
//! Messages live in a table partitioned by hash of `conversation_id` (migrations/postgres).
//! Their content is BYTEA: sealed content starts with a NUL marker, which TEXT cannot hold.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use confab_proto::{
    Conversation, Event, Frame, Me, MembershipChange, Message, Participant, Receipt, User,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, FromRow, PgConnection};
use tokio::sync::Mutex;

use super::codec::{Codec, replace_message_copies};
use super::rows::{
    Audience, CONVERSATION_ROW, CONVERSATION_SELECT, ConversationRow, MESSAGE_COLUMNS, MessageRow,
    PARTICIPANT_SELECT, ParticipantRow, UserRow, View, assemble_conversations, frame_text,
    open_row, parse_kind, parse_role, stored_message,
};
use super::writer::{BoxFuture, EventSink, Tx, WriteConn, Writer};
use super::{
    EventBounds, Membership, NewConversation, NewMessage, NewParticipant, NewSession, NewUser,
    PageCursor, Removal, SessionRecord, Store, StoreError, StoreResult, StoredFrame, StoredSession,
    Upserted, UserCredentials,
};
use crate::security::crypto::Keyring;
use crate::time::from_ms;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How every write transaction begins: it holds the cluster's advisory write lock (the key is
/// "confab" in ASCII, 0x636f6e666162) until it ends.
const BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(109330244723042); SAVEPOINT job";

/// The connection a node's writer owns. After a failure that may have broken it (PostgreSQL
/// restarted, the network dropped), the next batch opens a new one.
pub struct PgWriter {
    conn: PgConnection,
    options: PgConnectOptions,
    broken: bool,
}

impl Deref for PgWriter {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for PgWriter {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl WriteConn for PgWriter {
    fn begin(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            // A connection that broke while idle (PostgreSQL restarted, the connection was
            // terminated) fails here, before anything of the batch ran: reconnect and try
            // once more, so the batch's callers never see it.
            for attempt in 0..2 {
                if self.broken {
                    self.conn = PgConnection::connect_with(&self.options)
                        .await
                        .context("reconnect the writer to PostgreSQL")?;
                    self.broken = false;
                    tracing::info!("the writer reconnected to PostgreSQL");
                }
                match sqlx::raw_sql(BEGIN).execute(&mut self.conn).await {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        self.broken = true;
                        if attempt == 1 {
                            return Err(e.into());
                        }
                        tracing::warn!(error = %e, "the writer's connection failed; reconnecting");
                    }
                }
            }
            unreachable!("the second attempt returns")
        })
    }

    fn step(&mut self, sql: &'static str) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::raw_sql(sql).execute(&mut self.conn).await.map_err(|e| {
                self.broken = true;
                anyhow::Error::from(e)
            })?;
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await.is_err() {
                self.broken = true;
            }
        })
    }

    fn close(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = self.conn.close().await {
                tracing::warn!(error = ?e, "closing the write connection");
            }
        })
    }
}

type PgTx = Tx<PgWriter>;

pub struct PgStore {
    instance: Arc<str>,
    codec: Codec,
    writer: Writer<PgWriter>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    read: PgPool,
}

fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url).context("parse the PostgreSQL URL")?;
    Ok(options
        .application_name("confab")
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
}

impl PgStore {
    /// Connects to `url`, applies migrations (one node at a time: sqlx takes a lock) and
    /// starts the writer. `read_connections` bounds this node's read pool.
    pub async fn open(
        url: &str,
        read_connections: u32,
        sink: Arc<dyn EventSink>,
        keys: Option<Arc<Keyring>>,
    ) -> anyhow::Result<PgStore> {
        let options = connect_options(url)?;
        let mut write_conn =
            PgConnection::connect_with(&options).await.context("connect to PostgreSQL")?;
        MIGRATOR.run(&mut write_conn).await.context("apply the PostgreSQL migrations")?;
        let read = PgPoolOptions::new()
            .max_connections(read_connections.max(1))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options.clone())
            .await
            .context("open the PostgreSQL read pool")?;
        let instance: String = sqlx::query_scalar("SELECT instance FROM event_log WHERE id = 1")
            .fetch_one(&read)
            .await
            .context("read the event log's instance")?;
        let instance: Arc<str> = instance.into();
        let codec = Codec::new(keys);
        let conn = PgWriter { conn: write_conn, options, broken: false };
        let (writer, task) = Writer::spawn(conn, instance.clone(), codec.clone(), sink);
        Ok(PgStore { instance, codec, writer, writer_task: Mutex::new(Some(task)), read })
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

// ---------------------------------------------------------------- rows

/// A message row as PostgreSQL holds it (content as bytes).
#[derive(FromRow)]
struct PgMessageRow {
    id: String,
    conversation_id: String,
    sender_id: String,
    content: Vec<u8>,
    created_at: i64,
    seq: i64,
    client_id: Option<String>,
    reply_to: Option<String>,
    edited_at: Option<i64>,
    deleted: bool,
}

impl PgMessageRow {
    fn open(self, codec: &Codec) -> StoreResult<Message> {
        let content = String::from_utf8(self.content)
            .map_err(|e| StoreError::Backend(anyhow::anyhow!("message {}: {e}", self.id)))?;
        open_row(
            codec,
            MessageRow {
                id: self.id,
                conversation_id: self.conversation_id,
                sender_id: self.sender_id,
                content,
                created_at: self.created_at,
                seq: self.seq,
                client_id: self.client_id,
                reply_to: self.reply_to,
                edited_at: self.edited_at,
                deleted: self.deleted,
            },
        )
    }
}

/// `MESSAGE_COLUMNS` of the table aliased `m`.
fn message_columns_of_m() -> String {
    MESSAGE_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ")
}

/// Conversations as `view` sees them (all of the member's, or `only` one), with participants
/// and last messages: three queries whatever the number of conversations.
async fn conversations_on(
    conn: &mut PgConnection,
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
    let last_messages: Vec<PgMessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM participants p
           JOIN conversations c ON c.id = p.conversation_id
           JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
          WHERE p.user_id = $1 AND ($2 = '' OR p.conversation_id = $2)",
        message_columns_of_m()
    )))
    .bind(viewer)
    .bind(only.unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;

    let last_messages =
        last_messages.into_iter().map(|m| m.open(codec)).collect::<StoreResult<_>>()?;
    Ok(assemble_conversations(view, rows, participants, last_messages))
}

/// The conversation as put in an event all members receive.
async fn conversation_on(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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

async fn open_membership(
    conn: &mut PgConnection,
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

/// The message `id`, found through the locator.
const MESSAGE_BY_ID: &str = "FROM message_locator l
    JOIN messages m ON m.conversation_id = l.conversation_id AND m.id = l.id WHERE l.id = $1";

async fn message_on(
    conn: &mut PgConnection,
    codec: &Codec,
    message_id: &str,
) -> StoreResult<Message> {
    let row: Option<PgMessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} {MESSAGE_BY_ID}",
        message_columns_of_m()
    )))
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.ok_or(StoreError::NotFound)?.open(codec)
}

/// Appends `event` to the log and queues it for delivery after the commit: one round trip
/// stores it and reads its recipients.
async fn emit(
    tx: &mut PgTx,
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
    let (id, mut recipients): (i64, Vec<String>) = sqlx::query_as(
        "WITH e AS (
            INSERT INTO events (conversation_id, type, ref_id, audience, payload, created_at)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
         SELECT (SELECT id FROM e),
                CASE WHEN $4::text IS NULL
                     THEN ARRAY(SELECT user_id FROM participants WHERE conversation_id = $1)
                     ELSE ARRAY[$4::text] END",
    )
    .bind(conversation_id)
    .bind(&frame.kind)
    .bind(ref_id)
    .bind(only)
    .bind(&stored)
    .bind(crate::time::now_ms())
    .fetch_one(&mut *tx.conn)
    .await?;
    if let Audience::MembersAnd(extra) = audience
        && !recipients.iter().any(|r| r == extra)
    {
        recipients.push(extra.to_owned());
    }
    let frame = frame_text(&frame.kind, &payload, &tx.instance, id);
    tx.emit(super::Published { id, recipients, frame });
    Ok(id)
}

/// Rewrites the copies of message `id` inside earlier events (their content, and the deleted
/// flag), so an edit or delete leaves no old text in the log.
async fn rewrite_event_copies(
    tx: &mut PgTx,
    id: &str,
    stored_content: &str,
    deleted: bool,
) -> StoreResult<()> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, payload FROM events WHERE ref_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_all(&mut *tx.conn)
            .await?;
    for (event_id, payload) in rows {
        let rewritten = replace_message_copies(&payload, id, stored_content, deleted)?;
        sqlx::query("UPDATE events SET payload = $2 WHERE id = $1")
            .bind(event_id)
            .bind(rewritten)
            .execute(&mut *tx.conn)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn insert_user(&self, user: NewUser) -> StoreResult<User> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    // Writers are serialized by the advisory lock: the skeleton check and the
                    // insert are atomic across nodes.
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
                    .fetch_optional(&mut *tx.conn)
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
        // A range on the unique index (byte order, see the migration) instead of LIKE.
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
        let rows: Vec<UserRow> =
            sqlx::query_as("SELECT id, username, created_at FROM users WHERE id = ANY($1)")
                .bind(ids)
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
                        .execute(&mut *tx.conn)
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
                        .execute(&mut *tx.conn)
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
                    .execute(&mut *tx.conn)
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
            "SELECT u.id, u.username, u.created_at, s.expires_at, s.last_used_at
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
        // Not through the writer: a session's last use orders nothing, and taking the
        // cluster-wide write lock for it would slow every node's sends.
        let done = sqlx::query(
            "UPDATE sessions SET last_used_at = GREATEST(last_used_at, $2) WHERE token_hash = $1",
        )
        .bind(token_hash)
        .bind(at_ms)
        .execute(&self.read)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.read)
            .await?;
        Ok(())
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
            "SELECT id, token_hash, created_at, last_used_at, expires_at, user_agent, ip
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
        Ok(sqlx::query_scalar(
            "DELETE FROM sessions WHERE user_id = $1 AND id = $2 RETURNING token_hash",
        )
        .bind(user_id)
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn delete_other_sessions(&self, user_id: &str, keep: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash",
        )
        .bind(user_id)
        .bind(keep)
        .fetch_all(&self.read)
        .await?)
    }

    async fn delete_stale_sessions(&self, now_ms: i64, idle_before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_used_at < $2")
            .bind(now_ms)
            .bind(idle_before_ms)
            .execute(&self.read)
            .await?;
        Ok(done.rows_affected())
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.read)
            .await?;
        Ok(())
    }

    async fn insert_conversation(&self, conv: NewConversation) -> StoreResult<Upserted<String>> {
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(key) = &conv.direct_key {
                        let existing: Option<String> = sqlx::query_scalar(
                            "SELECT id FROM conversations WHERE direct_key = $1",
                        )
                        .bind(key)
                        .fetch_optional(&mut *tx.conn)
                        .await?;
                        if let Some(id) = existing {
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
                    .execute(&mut *tx.conn)
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
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT c.type, p.role
               FROM participants p JOIN conversations c ON c.id = p.conversation_id
              WHERE p.conversation_id = $1 AND p.user_id = $2",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|(kind, role)| Membership { kind: parse_kind(&kind), role: parse_role(&role) }))
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
                        .execute(&mut *tx.conn)
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
                        "DELETE FROM participants p USING users u
                          WHERE u.id = p.user_id AND p.conversation_id = $1 AND p.user_id = $2
                          RETURNING u.username",
                    )
                    .bind(&conv)
                    .bind(&user)
                    .fetch_optional(&mut *tx.conn)
                    .await?;
                    let username = username.ok_or(StoreError::NotFound)?;
                    let promoted: Option<String> = sqlx::query_scalar(
                        "UPDATE participants SET role = 'admin'
                          WHERE id = (SELECT id FROM participants WHERE conversation_id = $1
                                       ORDER BY joined_at, id LIMIT 1)
                            AND NOT EXISTS (SELECT 1 FROM participants
                                             WHERE conversation_id = $1 AND role = 'admin')
                          RETURNING user_id",
                    )
                    .bind(&conv)
                    .fetch_optional(&mut *tx.conn)
                    .await?;
                    let snapshot = match conversation_on(&mut tx.conn, &tx.codec, &conv, &actor).await {
                        Ok(c) => c,
                        Err(StoreError::NotFound) => {
                            let viewer: Option<String> = sqlx::query_scalar(
                                "SELECT user_id FROM participants WHERE conversation_id = $1 LIMIT 1",
                            )
                            .bind(&conv)
                            .fetch_optional(&mut *tx.conn)
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
                    .execute(&mut *tx.conn)
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
                    // One statement: unless this (sender, client_id) was stored before, bump
                    // the conversation's sequence, store the message under the new `seq`, note
                    // where it lives and move the sender's read watermark. The advisory lock
                    // and the row lock on the conversation keep `seq` gapless.
                    let seq: Option<i64> = sqlx::query_scalar(
                        "WITH dup AS (
                            SELECT 1 FROM messages
                             WHERE conversation_id = $2 AND sender_id = $3 AND client_id = $6),
                         bump AS (
                            UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = $5
                             WHERE id = $2 AND NOT EXISTS (SELECT 1 FROM dup)
                            RETURNING last_seq),
                         ins AS (
                            INSERT INTO messages (id, conversation_id, sender_id, content,
                                                  created_at, seq, client_id, reply_to)
                            SELECT $1, $2, $3, $4, $5, last_seq, $6, $7 FROM bump
                            RETURNING seq),
                         loc AS (
                            INSERT INTO message_locator (id, conversation_id)
                            SELECT $1, $2 FROM ins),
                         watermark AS (
                            UPDATE participants SET last_read_seq = ins.seq FROM ins
                             WHERE conversation_id = $2 AND user_id = $3
                               AND last_read_seq < ins.seq)
                         SELECT seq FROM ins",
                    )
                    .bind(&msg.id)
                    .bind(&msg.conversation_id)
                    .bind(&msg.sender_id)
                    .bind(tx.codec.seal(&msg.id, &msg.content).into_bytes())
                    .bind(msg.created_at_ms)
                    .bind(&msg.client_id)
                    .bind(&msg.reply_to)
                    .fetch_optional(&mut *tx.conn)
                    .await?;
                    if seq.is_none()
                        && let Some(client_id) = &msg.client_id
                    {
                        let first: Option<PgMessageRow> =
                            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "SELECT {MESSAGE_COLUMNS} FROM messages
                              WHERE conversation_id = $1 AND sender_id = $2 AND client_id = $3"
                            )))
                            .bind(&msg.conversation_id)
                            .bind(&msg.sender_id)
                            .bind(client_id)
                            .fetch_optional(&mut *tx.conn)
                            .await?;
                        if let Some(first) = first {
                            let value = first.open(&tx.codec)?;
                            return Ok(Upserted { value, created: false });
                        }
                    }
                    let seq = seq.ok_or(StoreError::NotFound)?;
                    let message = stored_message(&msg, seq);
                    let event = Event::NewMessage(message.clone());
                    emit(tx, &msg.conversation_id, &event, Some(&message.id), Audience::Members)
                        .await?;
                    Ok(Upserted { value: message, created: true })
                })
            })
            .await
    }

    async fn message(&self, message_id: &str) -> StoreResult<Option<Message>> {
        let row: Option<PgMessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} {MESSAGE_BY_ID}",
            message_columns_of_m()
        )))
        .bind(message_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| r.open(&self.codec)).transpose()
    }

    async fn messages_page(
        &self,
        conversation_id: &str,
        reader: &str,
        cursor: PageCursor,
        limit: i64,
    ) -> StoreResult<Option<(Vec<Message>, bool)>> {
        let member: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM participants WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation_id)
        .bind(reader)
        .fetch_optional(&self.read)
        .await?;
        if member.is_none() {
            return Ok(None);
        }
        let (lower, upper, descending) = match cursor {
            PageCursor::Latest => (0, i64::MAX, true),
            PageCursor::Before(before) => (0, before, true),
            PageCursor::After(after) => (after, i64::MAX, false),
            PageCursor::Between { after, before } => (after, before, false),
        };
        let order = if descending { "DESC" } else { "ASC" };
        let mut rows: Vec<PgMessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
              WHERE conversation_id = $1 AND seq > $2 AND seq < $3
              ORDER BY seq {order} LIMIT $4"
        )))
        .bind(conversation_id)
        .bind(lower)
        .bind(upper)
        .bind(limit + 1)
        .fetch_all(&self.read)
        .await?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        if descending {
            rows.reverse();
        }
        let messages =
            rows.into_iter().map(|r| r.open(&self.codec)).collect::<StoreResult<Vec<_>>>()?;
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
                        "UPDATE messages SET content = $2, edited_at = $3
                          WHERE conversation_id =
                                (SELECT conversation_id FROM message_locator WHERE id = $1)
                            AND id = $1 AND deleted = FALSE",
                    )
                    .bind(&id)
                    .bind(stored.as_bytes())
                    .bind(edited_at_ms)
                    .execute(&mut *tx.conn)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Conflict("message is deleted"));
                    }
                    rewrite_event_copies(tx, &id, &stored, false).await?;
                    let message = message_on(&mut tx.conn, &tx.codec, &id).await?;
                    let event = Event::MessageUpdated(message.clone());
                    emit(tx, &message.conversation_id, &event, Some(&id), Audience::Members)
                        .await?;
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
                    sqlx::query(
                        "UPDATE messages SET content = ''::bytea, deleted = TRUE
                          WHERE conversation_id =
                                (SELECT conversation_id FROM message_locator WHERE id = $1)
                            AND id = $1",
                    )
                    .bind(&id)
                    .execute(&mut *tx.conn)
                    .await?;
                    rewrite_event_copies(tx, &id, "", true).await?;
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
            "SELECT floor, GREATEST(floor, COALESCE((SELECT MAX(id) FROM events), 0))
               FROM event_log WHERE id = 1",
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

    async fn count_events_for(&self, user_id: &str, after: i64, cap: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM memberships s
               JOIN events e ON e.conversation_id = s.conversation_id
              WHERE s.user_id = $1 AND (s.to_event IS NULL OR s.to_event > $2)
                AND e.id > $2 AND e.id >= s.from_event
                AND (s.to_event IS NULL OR e.id <= s.to_event)
                AND (e.audience IS NULL OR e.audience = $1)
              LIMIT $3) AS pending",
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
                            .fetch_one(&mut *tx.conn)
                            .await?;
                    let Some(newest) = newest_pruned else { return Ok(0) };
                    let done = sqlx::query("DELETE FROM events WHERE id <= $1")
                        .bind(newest)
                        .execute(&mut *tx.conn)
                        .await?;
                    sqlx::query("UPDATE event_log SET floor = GREATEST(floor, $1) WHERE id = 1")
                        .bind(newest)
                        .execute(&mut *tx.conn)
                        .await?;
                    sqlx::query(
                        "DELETE FROM memberships WHERE to_event IS NOT NULL AND to_event <= $1",
                    )
                    .bind(newest)
                    .execute(&mut *tx.conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await
    }

    async fn event_ids_between(&self, after: i64, upto: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM events WHERE id > $1 AND id <= $2 ORDER BY id")
            .bind(after)
            .bind(upto)
            .fetch_all(&self.read)
            .await?)
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

impl PgStore {
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
                    // The old value comes from the row as it was before the update (`old`),
                    // and whether the reader shares receipts from the same statement.
                    let row: Option<(i64, i64, bool)> =
                        sqlx::query_as(sqlx::AssertSqlSafe(format!(
                            "UPDATE participants p
                            SET {column} = GREATEST(old.{column},
                                LEAST($3, (SELECT last_seq FROM conversations WHERE id = $1)))
                           FROM participants old JOIN users u ON u.id = old.user_id
                          WHERE old.id = p.id AND p.conversation_id = $1 AND p.user_id = $2
                          RETURNING old.{column}, p.{column}, u.share_read_receipts"
                        )))
                        .bind(&conv)
                        .bind(&user)
                        .bind(seq)
                        .fetch_optional(&mut *tx.conn)
                        .await?;
                    let (before, after, shares) = row.ok_or(StoreError::NotFound)?;
                    if after > before {
                        let receipt = Receipt {
                            conversation_id: conv.clone(),
                            user_id: user.clone(),
                            seq: after,
                        };
                        let (event, audience) = match which {
                            Watermark::Read => {
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

/// A conversation nobody is in any more, for the event of its last member leaving.
async fn empty_conversation(conn: &mut PgConnection, id: &str) -> StoreResult<Conversation> {
    let row: Option<ConversationRow> =
        sqlx::query_as(CONVERSATION_ROW).bind(id).fetch_optional(&mut *conn).await?;
    let row = row.ok_or(StoreError::NotFound)?;
    Ok(assemble_conversations(View::Shared(""), vec![row], Vec::new(), Vec::new()).remove(0))
}

/// Re-encrypts every message and event payload not yet under the current key, in small
/// transactions that lock the rows they rewrite, so a server using the database at the same
/// time is never blocked for long and no concurrent edit is lost.
pub async fn rotate_keys(url: &str, keys: Arc<Keyring>) -> anyhow::Result<super::Rotation> {
    const BATCH: i64 = 256;
    let mut conn = PgConnection::connect_with(&connect_options(url)?)
        .await
        .context("connect to PostgreSQL")?;
    let codec = Codec::new(Some(keys.clone()));
    let mut done = super::Rotation::default();

    let (mut conv, mut seq) = (String::new(), 0_i64);
    loop {
        let mut tx = conn.begin().await?;
        let rows: Vec<(String, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT conversation_id, seq, id, content FROM messages
              WHERE (conversation_id, seq) > ($1, $2)
              ORDER BY conversation_id, seq LIMIT $3 FOR UPDATE",
        )
        .bind(&conv)
        .bind(seq)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| (r.0.clone(), r.1)) else { break };
        for (conversation_id, row_seq, id, content) in rows {
            let content = String::from_utf8(content).with_context(|| format!("message {id}"))?;
            if !keys.needs_rotation(&content) {
                continue;
            }
            let plain = codec.open(&id, content)?;
            sqlx::query("UPDATE messages SET content = $3 WHERE conversation_id = $1 AND seq = $2")
                .bind(&conversation_id)
                .bind(row_seq)
                .bind(keys.seal(&id, &plain).into_bytes())
                .execute(&mut *tx)
                .await?;
            done.messages += 1;
        }
        tx.commit().await?;
        (conv, seq) = last;
    }

    let mut after = 0_i64;
    loop {
        let mut tx = conn.begin().await?;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, payload FROM events WHERE id > $1 AND ref_id IS NOT NULL
              ORDER BY id LIMIT $2 FOR UPDATE",
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
