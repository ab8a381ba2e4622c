//! `Store` on embedded SQLite: WAL mode, one writer task with group commit (`writer.rs`) and a
//! small pool of read-only connections, which WAL lets read while the writer writes.
//!
//! Timestamps are stored as unix milliseconds. Placeholders are `$1, $2, …`, which SQLite and
//! PostgreSQL both accept, so most statements can be shared by a PostgreSQL store.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use confab_proto::{Conversation, ConversationType, Message, Participant, Role, User};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, FromRow, SqliteConnection};
use tokio::sync::Mutex;

use super::writer::Writer;
use super::{
    Membership, NewConversation, NewMessage, NewParticipant, NewUser, PageCursor, Removal,
    SessionRecord, Store, StoreError, StoreResult, Upserted, UserCredentials,
};
use crate::time::from_ms;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How many read connections to keep open.
const READERS: u32 = 4;

pub struct SqliteStore {
    writer: Writer,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, applies migrations and starts the
    /// writer. `synchronous_full` makes each commit survive a power loss, not just a crash.
    pub async fn open(path: &Path, synchronous_full: bool) -> anyhow::Result<SqliteStore> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
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
        let (writer, task) = Writer::spawn(write_conn);
        Ok(SqliteStore { writer, writer_task: Mutex::new(Some(task)), read })
    }

    /// A store on a database URL such as `sqlite://./data/confab.db` or `sqlite:data.db`.
    pub async fn open_url(url: &str, synchronous_full: bool) -> anyhow::Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url).with_context(|| format!("parse {url}"))?;
        let path = opts.get_filename().to_path_buf();
        SqliteStore::open(&path, synchronous_full).await
    }
}

// ---------------------------------------------------------------- rows

#[derive(FromRow)]
struct UserRow {
    id: String,
    username: String,
    created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User { id: r.id, username: r.username, created_at: from_ms(r.created_at) }
    }
}

#[derive(FromRow)]
struct MessageRow {
    id: String,
    conversation_id: String,
    sender_id: String,
    content: String,
    created_at: i64,
    seq: i64,
    client_id: Option<String>,
    reply_to: Option<String>,
    edited_at: Option<i64>,
    deleted: bool,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Message {
        Message {
            id: r.id,
            conversation_id: r.conversation_id,
            sender_id: r.sender_id,
            content: r.content,
            created_at: from_ms(r.created_at),
            seq: r.seq,
            client_id: r.client_id,
            reply_to: r.reply_to,
            edited_at: r.edited_at.map(from_ms),
            deleted: r.deleted,
        }
    }
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, sender_id, content, created_at, seq, client_id, reply_to, edited_at, deleted";

#[derive(FromRow)]
struct ParticipantRow {
    conversation_id: String,
    user_id: String,
    username: String,
    joined_at: i64,
    role: String,
    last_read_seq: i64,
}

impl From<ParticipantRow> for Participant {
    fn from(r: ParticipantRow) -> Participant {
        Participant {
            user_id: r.user_id,
            username: r.username,
            joined_at: from_ms(r.joined_at),
            role: parse_role(&r.role),
            last_read_seq: r.last_read_seq,
        }
    }
}

#[derive(FromRow)]
struct ConversationRow {
    id: String,
    #[sqlx(rename = "type")]
    kind: String,
    title: Option<String>,
    created_at: i64,
    last_seq: i64,
    last_activity_at: i64,
    unread_count: i64,
}

fn parse_role(s: &str) -> Role {
    if s == "admin" { Role::Admin } else { Role::Member }
}

fn parse_kind(s: &str) -> ConversationType {
    if s == "group" { ConversationType::Group } else { ConversationType::Direct }
}

/// Conversation rows as `$1` (a user id) sees them, with the unread count computed from that
/// user's read watermark by a range scan of `messages (conversation_id, seq)`.
const CONVERSATION_SELECT: &str = "
    SELECT c.id, c.type, c.title, c.created_at, c.last_seq, c.last_activity_at,
           (SELECT COUNT(*) FROM messages m
             WHERE m.conversation_id = c.id AND m.seq > p.last_read_seq
               AND m.sender_id <> p.user_id AND m.deleted = 0) AS unread_count
      FROM participants p JOIN conversations c ON c.id = p.conversation_id
     WHERE p.user_id = $1";

const PARTICIPANT_SELECT: &str = "
    SELECT p.conversation_id, p.user_id, u.username, p.joined_at, p.role, p.last_read_seq
      FROM participants p JOIN users u ON u.id = p.user_id";

impl SqliteStore {
    /// Joins conversation rows with their participants and last messages: three queries in
    /// all, whatever the number of conversations.
    async fn assemble(
        &self,
        user_id: &str,
        rows: Vec<ConversationRow>,
        only: Option<&str>,
    ) -> StoreResult<Vec<Conversation>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (participants, last_messages): (Vec<ParticipantRow>, Vec<MessageRow>) = match only {
            Some(id) => (
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{PARTICIPANT_SELECT} WHERE p.conversation_id = $1 ORDER BY p.joined_at, p.id"
                )))
                .bind(id)
                .fetch_all(&self.read)
                .await?,
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1
                       AND m.seq = (SELECT last_seq FROM conversations WHERE id = $1)"
                )))
                .bind(id)
                .fetch_all(&self.read)
                .await?,
            ),
            None => (
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{PARTICIPANT_SELECT} WHERE p.conversation_id IN
                        (SELECT conversation_id FROM participants WHERE user_id = $1)
                     ORDER BY p.joined_at, p.id"
                )))
                .bind(user_id)
                .fetch_all(&self.read)
                .await?,
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT m.{} FROM participants p
                       JOIN conversations c ON c.id = p.conversation_id
                       JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
                      WHERE p.user_id = $1",
                    MESSAGE_COLUMNS.replace(", ", ", m.")
                )))
                .bind(user_id)
                .fetch_all(&self.read)
                .await?,
            ),
        };
        let mut by_conv: std::collections::HashMap<String, Vec<Participant>> =
            std::collections::HashMap::with_capacity(rows.len());
        for p in participants {
            by_conv.entry(p.conversation_id.clone()).or_default().push(p.into());
        }
        let mut last: std::collections::HashMap<String, Message> =
            last_messages.into_iter().map(|m| (m.conversation_id.clone(), m.into())).collect();
        Ok(rows
            .into_iter()
            .map(|r| Conversation {
                participants: by_conv.remove(&r.id).unwrap_or_default(),
                last_message: last.remove(&r.id),
                kind: parse_kind(&r.kind),
                title: r.title,
                created_at: from_ms(r.created_at),
                unread_count: r.unread_count,
                last_seq: r.last_seq,
                last_activity_at: from_ms(r.last_activity_at),
                id: r.id,
            })
            .collect())
    }
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

async fn message_on(conn: &mut SqliteConnection, message_id: &str) -> StoreResult<Message> {
    let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
    )))
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(Message::from).ok_or(StoreError::NotFound)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_user(&self, user: NewUser) -> StoreResult<User> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let row: Option<UserRow> = sqlx::query_as(
                        "INSERT INTO users (id, username, username_key, password_hash, created_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username_key) DO NOTHING
                         RETURNING id, username, created_at",
                    )
                    .bind(&user.id)
                    .bind(&user.username)
                    .bind(&user.username_key)
                    .bind(&user.password_hash)
                    .bind(user.created_at_ms)
                    .fetch_optional(&mut *conn)
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

    async fn insert_session(
        &self,
        token_hash: &str,
        user_id: &str,
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> StoreResult<()> {
        let (token_hash, user_id) = (token_hash.to_owned(), user_id.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&token_hash)
                    .bind(&user_id)
                    .bind(created_at_ms)
                    .bind(expires_at_ms)
                    .execute(&mut *conn)
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
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT u.id, u.username, u.created_at, s.expires_at
               FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| SessionRecord { user: r.user.into(), expires_at_ms: r.expires_at }))
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                        .bind(&token_hash)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    async fn insert_conversation(&self, conv: NewConversation) -> StoreResult<Upserted<String>> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    if let Some(key) = &conv.direct_key {
                        let existing: Option<(String,)> =
                            sqlx::query_as("SELECT id FROM conversations WHERE direct_key = $1")
                                .bind(key)
                                .fetch_optional(&mut *conn)
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
                    .execute(&mut *conn)
                    .await?;
                    insert_members(conn, &conv.id, &conv.members).await?;
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
        let rows: Vec<ConversationRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{CONVERSATION_SELECT} AND c.id = $2")))
                .bind(user_id)
                .bind(conversation_id)
                .fetch_all(&self.read)
                .await?;
        Ok(self.assemble(user_id, rows, Some(conversation_id)).await?.pop())
    }

    async fn conversations_for(&self, user_id: &str) -> StoreResult<Vec<Conversation>> {
        let rows: Vec<ConversationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{CONVERSATION_SELECT} ORDER BY c.last_activity_at DESC, c.id DESC"
        )))
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        self.assemble(user_id, rows, None).await
    }

    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<Participant>> {
        let rows: Vec<ParticipantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{PARTICIPANT_SELECT} WHERE p.conversation_id = $1 ORDER BY p.joined_at, p.id"
        )))
        .bind(conversation_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(Participant::from).collect())
    }

    async fn rename_conversation(&self, conversation_id: &str, title: &str) -> StoreResult<()> {
        let (id, title) = (conversation_id.to_owned(), title.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query("UPDATE conversations SET title = $2 WHERE id = $1")
                        .bind(&id)
                        .bind(&title)
                        .execute(&mut *conn)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn insert_participants(
        &self,
        conversation_id: &str,
        members: Vec<NewParticipant>,
    ) -> StoreResult<Vec<String>> {
        let id = conversation_id.to_owned();
        self.writer
            .write(move |conn| Box::pin(async move { insert_members(conn, &id, &members).await }))
            .await
    }

    async fn delete_participant(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Removal> {
        let (conv, user) = (conversation_id.to_owned(), user_id.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2",
                    )
                    .bind(&conv)
                    .bind(&user)
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let promoted: Option<(String,)> = sqlx::query_as(
                        "UPDATE participants SET role = 'admin'
                          WHERE id = (SELECT id FROM participants WHERE conversation_id = $1
                                       ORDER BY joined_at, id LIMIT 1)
                            AND NOT EXISTS (SELECT 1 FROM participants
                                             WHERE conversation_id = $1 AND role = 'admin')
                          RETURNING user_id",
                    )
                    .bind(&conv)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok(Removal { promoted: promoted.map(|(u,)| u) })
                })
            })
            .await
    }

    async fn insert_message(&self, msg: NewMessage) -> StoreResult<Upserted<Message>> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    if let Some(client_id) = &msg.client_id {
                        let first: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                            "SELECT {MESSAGE_COLUMNS} FROM messages
                              WHERE conversation_id = $1 AND sender_id = $2 AND client_id = $3"
                        )))
                        .bind(&msg.conversation_id)
                        .bind(&msg.sender_id)
                        .bind(client_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        if let Some(first) = first {
                            return Ok(Upserted { value: first.into(), created: false });
                        }
                    }
                    // The writer is the only one bumping the counter, so seq is gapless.
                    let (seq,): (i64,) = sqlx::query_as(
                        "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = $2
                          WHERE id = $1 RETURNING last_seq",
                    )
                    .bind(&msg.conversation_id)
                    .bind(msg.created_at_ms)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    let row: MessageRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO messages
                            (id, conversation_id, sender_id, content, created_at, seq, client_id, reply_to)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {MESSAGE_COLUMNS}"
                    )))
                    .bind(&msg.id)
                    .bind(&msg.conversation_id)
                    .bind(&msg.sender_id)
                    .bind(&msg.content)
                    .bind(msg.created_at_ms)
                    .bind(seq)
                    .bind(&msg.client_id)
                    .bind(&msg.reply_to)
                    .fetch_one(&mut *conn)
                    .await?;
                    // Your own message is read by you.
                    sqlx::query(
                        "UPDATE participants SET last_read_seq = $3
                          WHERE conversation_id = $1 AND user_id = $2 AND last_read_seq < $3",
                    )
                    .bind(&msg.conversation_id)
                    .bind(&msg.sender_id)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                    Ok(Upserted { value: row.into(), created: true })
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
        Ok(row.map(Message::from))
    }

    async fn messages_page(
        &self,
        conversation_id: &str,
        cursor: PageCursor,
        limit: i64,
    ) -> StoreResult<(Vec<Message>, bool)> {
        // Fetch one more than asked: its presence is `has_more`.
        let (lower, upper, descending) = match cursor {
            PageCursor::Latest => (0, i64::MAX, true),
            PageCursor::Before(before) => (0, before, true),
            PageCursor::After(after) => (after, i64::MAX, false),
            PageCursor::Between { after, before } => (after, before, false),
        };
        let order = if descending { "DESC" } else { "ASC" };
        let mut rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
        Ok((rows.into_iter().map(Message::from).collect(), has_more))
    }

    async fn update_message_content(
        &self,
        message_id: &str,
        content: &str,
        edited_at_ms: i64,
    ) -> StoreResult<Message> {
        let (id, content) = (message_id.to_owned(), content.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1 AND deleted = 0",
                    )
                    .bind(&id)
                    .bind(&content)
                    .bind(edited_at_ms)
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() == 0 {
                        // Deleted between the service's check and now, or gone.
                        return Err(StoreError::Conflict("message is deleted"));
                    }
                    message_on(conn, &id).await
                })
            })
            .await
    }

    async fn tombstone_message(&self, message_id: &str) -> StoreResult<Message> {
        let id = message_id.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // The content is overwritten, not just flagged: deleted text leaves the
                    // database (the WAL and freed pages are reused on the next checkpoint).
                    sqlx::query("UPDATE messages SET content = '', deleted = 1 WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    message_on(conn, &id).await
                })
            })
            .await
    }

    async fn mark_read(&self, conversation_id: &str, user_id: &str, seq: i64) -> StoreResult<i64> {
        let (conv, user) = (conversation_id.to_owned(), user_id.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let row: Option<(i64,)> = sqlx::query_as(
                        "UPDATE participants
                            SET last_read_seq = MAX(last_read_seq,
                                MIN($3, (SELECT last_seq FROM conversations WHERE id = $1)))
                          WHERE conversation_id = $1 AND user_id = $2
                          RETURNING last_read_seq",
                    )
                    .bind(&conv)
                    .bind(&user)
                    .bind(seq)
                    .fetch_optional(&mut *conn)
                    .await?;
                    row.map(|(s,)| s).ok_or(StoreError::NotFound)
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
