//! Persistence. `Store` is the one trait the services talk to; `sqlite.rs` implements it on an
//! embedded SQLite database, `postgres.rs` on PostgreSQL for several nodes sharing one database.
//!
//! The store never decides who may do what: it reads and writes what it is told, assigns the
//! per-conversation `seq` inside the transaction that stores a message, and keeps idempotency
//! keys. Permissions live in `service/`.

pub mod codec;
pub mod postgres;
mod rows;
pub mod sqlite;
mod writer;

pub use writer::{EventSink, Published};

use async_trait::async_trait;
use confab_proto::{Conversation, ConversationType, Me, Message, Participant, Role, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user with the secret needed to log in.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub username_key: String,
    /// Look-alike characters folded together: a username whose skeleton is taken is refused.
    pub username_skeleton: String,
    pub password_hash: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A session as authentication needs it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: User,
    pub expires_at_ms: i64,
    pub last_used_at_ms: i64,
}

/// A session as its owner sees it in the list.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub id: String,
    pub token_hash: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: i64,
    pub expires_at_ms: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewConversation {
    pub id: String,
    pub kind: ConversationType,
    pub title: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    /// Set for direct conversations: a second create with the same key returns the first.
    pub direct_key: Option<String>,
    pub members: Vec<NewParticipant>,
}

#[derive(Debug, Clone)]
pub struct NewParticipant {
    pub id: String,
    pub user_id: String,
    pub role: Role,
    pub joined_at_ms: i64,
}

/// The caller's own membership row: what the access gate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub kind: ConversationType,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub content: String,
    pub created_at_ms: i64,
    pub client_id: Option<String>,
    pub reply_to: Option<String>,
}

/// Which slice of a conversation's history to read.
#[derive(Debug, Clone, Copy)]
pub enum PageCursor {
    /// The newest messages.
    Latest,
    /// The newest messages with `seq < before`.
    Before(i64),
    /// The oldest messages with `seq > after`.
    After(i64),
    /// The oldest messages with `after < seq < before`.
    Between { after: i64, before: i64 },
}

/// Where the event log stands.
#[derive(Debug, Clone)]
pub struct EventBounds {
    /// This database's name in cursors (`<instance>-<id>`).
    pub instance: std::sync::Arc<str>,
    /// Cursors below this were pruned and cannot be replayed.
    pub floor: i64,
    /// The newest event's id (0 when there is none).
    pub head: i64,
}

/// A durable event as replayed: its id (the cursor) and its whole frame.
#[derive(Debug, Clone)]
pub struct StoredFrame {
    pub id: i64,
    pub frame: String,
}

/// Something that was either created now or found from an earlier identical request.
#[derive(Debug, Clone)]
pub struct Upserted<T> {
    pub value: T,
    pub created: bool,
}

/// What removing a participant changed.
#[derive(Debug, Clone)]
pub struct Removal {
    /// A member promoted to admin because the last admin left.
    pub promoted: Option<String>,
}

/// What `confab keys rotate` changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub messages: u64,
    pub events: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- accounts
    async fn insert_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user_credentials(&self, username_key: &str) -> StoreResult<Option<UserCredentials>>;
    /// Users whose lowercase name starts with `prefix_key`, by name.
    async fn users_by_prefix(&self, prefix_key: &str, limit: i64) -> StoreResult<Vec<User>>;
    /// The users among `ids` that exist.
    async fn users_by_ids(&self, ids: &[String]) -> StoreResult<Vec<User>>;
    async fn me(&self, user_id: &str) -> StoreResult<Option<Me>>;
    async fn set_share_read_receipts(&self, user_id: &str, share: bool) -> StoreResult<()>;
    async fn set_last_seen(&self, user_id: &str, at_ms: i64) -> StoreResult<()>;
    async fn last_seen(&self, user_id: &str) -> StoreResult<Option<i64>>;
    /// Everyone who shares at least one conversation with `user_id` (themself included).
    async fn contacts(&self, user_id: &str) -> StoreResult<Vec<String>>;

    // --- sessions
    async fn insert_session(&self, session: NewSession) -> StoreResult<()>;
    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>>;
    /// Records a session's last use; answers false when the session no longer exists (it was
    /// signed out, perhaps through another node).
    async fn touch_session(&self, token_hash: &str, at_ms: i64) -> StoreResult<bool>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// `user_id`'s sessions, most recently used first.
    async fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<StoredSession>>;
    /// Deletes `user_id`'s session `id`; answers its token hash, or `None` if there is none.
    async fn delete_session_by_id(&self, user_id: &str, id: &str) -> StoreResult<Option<String>>;
    /// Deletes every session of `user_id` except `keep`; answers the deleted token hashes.
    async fn delete_other_sessions(&self, user_id: &str, keep: &str) -> StoreResult<Vec<String>>;
    /// Deletes sessions past their expiry or unused since `idle_before_ms`.
    async fn delete_stale_sessions(&self, now_ms: i64, idle_before_ms: i64) -> StoreResult<u64>;
    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;

    // --- conversations
    /// Creates the conversation, or for a direct one whose `direct_key` exists, returns its id.
    /// Emits `conversation_created`.
    async fn insert_conversation(&self, conv: NewConversation) -> StoreResult<Upserted<String>>;
    /// `None` when the conversation does not exist or `user_id` is not in it.
    async fn membership(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<Membership>>;
    /// One conversation as `user_id` sees it (unread count, read state).
    async fn conversation_for(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<Conversation>>;
    /// Every conversation of `user_id`, most recent activity first.
    async fn conversations_for(&self, user_id: &str) -> StoreResult<Vec<Conversation>>;
    async fn participants(&self, conversation_id: &str) -> StoreResult<Vec<Participant>>;
    async fn participant_ids(&self, conversation_id: &str) -> StoreResult<Vec<String>>;
    /// Emits `conversation_updated`, seen by `actor`.
    async fn rename_conversation(
        &self,
        conversation_id: &str,
        title: &str,
        actor: &str,
    ) -> StoreResult<()>;
    /// Adds members; those already present are left as they are. Emits `participant_added`
    /// for each new one.
    async fn insert_participants(
        &self,
        conversation_id: &str,
        members: Vec<NewParticipant>,
        actor: &str,
    ) -> StoreResult<Vec<String>>;
    /// Removes a member; if no admin would remain, the longest-standing member becomes one.
    /// Emits `participant_removed` to the members and the removed user.
    async fn delete_participant(
        &self,
        conversation_id: &str,
        user_id: &str,
        actor: &str,
    ) -> StoreResult<Removal>;

    // --- messages
    /// Stores a message with the conversation's next `seq`, or returns the message stored
    /// earlier with the same (conversation, sender, client_id).
    async fn insert_message(&self, msg: NewMessage) -> StoreResult<Upserted<Message>>;
    async fn message(&self, message_id: &str) -> StoreResult<Option<Message>>;
    /// Messages in ascending `seq`, and whether more lie beyond the page; `None` when `reader`
    /// is not a participant (the access check and the read are one query).
    async fn messages_page(
        &self,
        conversation_id: &str,
        reader: &str,
        cursor: PageCursor,
        limit: i64,
    ) -> StoreResult<Option<(Vec<Message>, bool)>>;
    async fn update_message_content(
        &self,
        message_id: &str,
        content: &str,
        edited_at_ms: i64,
    ) -> StoreResult<Message>;
    /// Erases the content and marks the message deleted; the row stays so `seq` has no hole.
    async fn tombstone_message(&self, message_id: &str) -> StoreResult<Message>;
    /// Moves the read watermark forward (never back), clamped to the conversation's last seq.
    /// Emits `read` when it moved: to everyone, or only to the reader if they do not share
    /// read receipts.
    async fn mark_read(&self, conversation_id: &str, user_id: &str, seq: i64) -> StoreResult<i64>;
    /// Same for the delivery watermark; emits `delivered` when it moved.
    async fn mark_delivered(
        &self,
        conversation_id: &str,
        user_id: &str,
        seq: i64,
    ) -> StoreResult<i64>;

    // --- event log
    async fn event_bounds(&self) -> StoreResult<EventBounds>;
    /// Durable events `user_id` may see with `id > after`, in order, at most `limit`.
    async fn events_for(
        &self,
        user_id: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<StoredFrame>>;
    /// How many such events there are, counting no further than `cap`.
    async fn count_events_for(&self, user_id: &str, after: i64, cap: i64) -> StoreResult<i64>;
    /// Deletes events created before `before_ms` and raises the floor; returns how many.
    async fn prune_events(&self, before_ms: i64) -> StoreResult<u64>;
    /// Ids of stored events in `(after, upto]` (the bus asks when some never arrived).
    async fn event_ids_between(&self, after: i64, upto: i64) -> StoreResult<Vec<i64>>;

    /// Flushes and closes the database. Further calls fail.
    async fn close(&self);
}
