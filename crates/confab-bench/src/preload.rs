//! The fast preload path: fills a data folder before the server starts, without Argon2 per
//! user or an HTTP round trip per row.
//!
//! Users, sessions and conversations go through the server's own `Store` (so they carry the
//! membership rows and events the server writes itself), concurrently so the store's group
//! commit batches them. Every user shares one real Argon2 hash, and each session's token is
//! made here, so the harness knows it. Bulk history (`messages`) is written in SQL, each
//! statement generating inside SQLite a few rounds of one message in every conversation (time
//! order, as a server receives them), followed by what the store's own send would update
//! (`last_seq`, the senders' read watermarks). The preloaded messages have no
//! entries in the event log: clients read them as history, not by replay.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use confab_client::proto::{ConversationType, Role};
use confab_server::security::password::Passwords;
use confab_server::security::session::{new_token, token_hash};
use confab_server::store::sqlite::SqliteStore;
use confab_server::store::{
    EventSink, NewConversation, NewParticipant, NewSession, NewUser, Published, Store,
};
use futures_util::{StreamExt, TryStreamExt};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};

/// How many store writes are in flight at once during a preload.
const IN_FLIGHT: usize = 256;
const SESSION_MS: i64 = 30 * 24 * 3600 * 1000;

/// A user the harness can act as.
#[derive(Clone, Debug)]
pub struct BenchUser {
    pub id: String,
    pub token: String,
}

/// Events of the preload go nowhere: no server is running yet.
struct Nowhere;

impl EventSink for Nowhere {
    fn publish(&self, _events: Vec<Published>) {}
}

pub struct Preload {
    store: Arc<SqliteStore>,
    password_hash: String,
    pub db_path: PathBuf,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Preload {
    /// Opens (creating) the database the server will use in `data_dir`.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Preload> {
        std::fs::create_dir_all(data_dir)?;
        let db_path = data_dir.join("confab.db");
        // synchronous=NORMAL for the preload only: the server opens it with its own setting.
        let store = SqliteStore::open(&db_path, false, Arc::new(Nowhere), None).await?;
        let password_hash = Passwords::new().await?.hash("benchmark password").await?;
        Ok(Preload { store: Arc::new(store), password_hash, db_path })
    }

    /// `n` users named `<prefix><i>`, each with a session whose token is returned.
    pub async fn users(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<BenchUser>> {
        let now = now_ms();
        futures_util::stream::iter(0..n)
            .map(|i| {
                let store = self.store.clone();
                let hash = self.password_hash.clone();
                let username = format!("{prefix}{i}");
                async move {
                    let user = store
                        .insert_user(NewUser {
                            id: new_id(),
                            username_key: username.to_ascii_lowercase(),
                            username_skeleton: confab_server::service::skeleton(&username),
                            username,
                            password_hash: hash,
                            created_at_ms: now,
                        })
                        .await?;
                    let token = new_token();
                    store
                        .insert_session(NewSession {
                            id: new_id().replace('-', ""),
                            token_hash: token_hash(&token),
                            user_id: user.id.clone(),
                            created_at_ms: now,
                            expires_at_ms: now + SESSION_MS,
                            user_agent: Some("confab-bench".into()),
                            ip: None,
                        })
                        .await?;
                    anyhow::Ok(BenchUser { id: user.id, token })
                }
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Direct conversations between each pair; answers their ids in the same order.
    pub async fn directs(&self, pairs: Vec<(BenchUser, BenchUser)>) -> anyhow::Result<Vec<String>> {
        let now = now_ms();
        futures_util::stream::iter(pairs)
            .map(|(a, b)| {
                let store = self.store.clone();
                async move {
                    let key = if a.id < b.id {
                        format!("{}:{}", a.id, b.id)
                    } else {
                        format!("{}:{}", b.id, a.id)
                    };
                    let members = [&a, &b]
                        .iter()
                        .map(|u| NewParticipant {
                            id: new_id(),
                            user_id: u.id.clone(),
                            role: Role::Member,
                            joined_at_ms: now,
                        })
                        .collect();
                    let stored = store
                        .insert_conversation(NewConversation {
                            id: new_id(),
                            kind: ConversationType::Direct,
                            title: None,
                            created_by: a.id.clone(),
                            created_at_ms: now,
                            direct_key: Some(key),
                            members,
                        })
                        .await?;
                    anyhow::Ok(stored.value)
                }
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// A group of `members`, the first its admin.
    pub async fn group(&self, title: &str, members: &[BenchUser]) -> anyhow::Result<String> {
        let now = now_ms();
        let creator = members.first().context("a group needs members")?;
        let participants = members
            .iter()
            .enumerate()
            .map(|(i, u)| NewParticipant {
                id: new_id(),
                user_id: u.id.clone(),
                role: if i == 0 { Role::Admin } else { Role::Member },
                joined_at_ms: now,
            })
            .collect();
        let stored = self
            .store
            .insert_conversation(NewConversation {
                id: new_id(),
                kind: ConversationType::Group,
                title: Some(title.to_owned()),
                created_by: creator.id.clone(),
                created_at_ms: now,
                direct_key: None,
                members: participants,
            })
            .await?;
        Ok(stored.value)
    }

    /// Flushes and closes the store; the server may open the database after this.
    pub async fn close(self) {
        self.store.close().await;
    }
}

/// Writes `per_conversation` messages into each `(conversation, user a, user b)`, alternating
/// senders, with seq 1..=n; answers how many rows were written. Run after [`Preload::close`].
///
/// The messages go in in time order across conversations (every conversation's message 1,
/// then every conversation's message 2, …), as a real server receives them: a conversation's
/// history is then spread over the database as it would be after months of use, not stored
/// in one piece.
pub async fn bulk_messages(
    db_path: &Path,
    conversations: &[(String, String, String)],
    per_conversation: usize,
    progress: &crate::stats::Progress,
) -> anyhow::Result<u64> {
    /// Rounds (one message in every conversation) per transaction.
    const ROUNDS: i64 = 10;
    let url = format!("sqlite://{}", db_path.display());
    let options = SqliteConnectOptions::from_str(&url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .pragma("cache_size", "-262144")
        .foreign_keys(true);
    let mut conn =
        SqliteConnection::connect_with(&options).await.context("open for bulk insert")?;
    sqlx::query(
        "CREATE TEMP TABLE preload_conversations
            (ord INTEGER PRIMARY KEY, id TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let mut tx = conn.begin().await?;
    for (ord, (id, a, b)) in conversations.iter().enumerate() {
        sqlx::query("INSERT INTO preload_conversations (ord, id, a, b) VALUES ($1, $2, $3, $4)")
            .bind(ord as i64)
            .bind(id)
            .bind(a)
            .bind(b)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

    // One message every millisecond, round after round: time order across conversations,
    // the last one now.
    let step = conversations.len() as i64;
    let base_ms = now_ms() - (per_conversation as i64) * step;
    let last = per_conversation as i64;
    let mut written = 0u64;
    let mut from = 1;
    while from <= last {
        let to = (from + ROUNDS - 1).min(last);
        let done = sqlx::query(
            "INSERT INTO messages (id, conversation_id, sender_id, content, created_at, seq)
             WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
             SELECT c.id || '-' || printf('%07d', i), c.id,
                    CASE WHEN i % 2 = 1 THEN c.a ELSE c.b END,
                    'message ' || i || ' of a preloaded conversation, about as long as a short chat line',
                    $3 + (i - 1) * $4 + c.ord + 1, i
               FROM n CROSS JOIN preload_conversations c
              ORDER BY i, c.ord",
        )
        .bind(from)
        .bind(to)
        .bind(base_ms)
        .bind(step)
        .execute(&mut conn)
        .await
        .context("bulk insert messages")?;
        written += done.rows_affected();
        crate::stats::Progress::add(&progress.sent, done.rows_affected());
        from = to + 1;
    }

    // What a send updates besides the message: the conversation's sequence and activity, and
    // each sender's read watermark at their own last message (`a` sent the odd seqs, `b` the
    // even ones).
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE conversations SET last_seq = $1, last_activity_at = $2 + ($1 - 1) * $3
                + (SELECT ord FROM preload_conversations c WHERE c.id = conversations.id) + 1
          WHERE id IN (SELECT id FROM preload_conversations)",
    )
    .bind(last)
    .bind(base_ms)
    .bind(step)
    .execute(&mut *tx)
    .await
    .context("bulk insert: conversation sequence")?;
    for (user_is_a, parity) in [(true, 1), (false, 0)] {
        let own_last = if last % 2 == parity { last } else { last - 1 };
        sqlx::query(
            "UPDATE participants SET last_read_seq = MAX(last_read_seq, $1)
              WHERE (conversation_id, user_id) IN
                    (SELECT id, CASE WHEN $2 THEN a ELSE b END FROM preload_conversations)",
        )
        .bind(own_last.max(0))
        .bind(user_is_a)
        .execute(&mut *tx)
        .await
        .context("bulk insert: read watermarks")?;
    }
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    conn.close().await?;
    Ok(written)
}
