//! Confab's wire types: the JSON objects of the public API, shared by the server, the Rust SDK,
//! the benchmark and tools. Serde structs only: no I/O, no business rules.
//!
//! Ids are opaque strings. Timestamps are RFC 3339 in UTC with millisecond precision.
//! `docs/api.md` describes each call; the server's `/api/openapi.json` is generated from these
//! types and the handlers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `POST /api/auth/register` and `POST /api/auth/login` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The answer to register and login: the account and an opaque bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthResponse {
    pub user: User,
    pub token: String,
}

/// `GET /api/users?q=` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationType {
    Direct,
    Group,
}

impl ConversationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationType::Direct => "direct",
            ConversationType::Group => "group",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// A member of a conversation, as seen by the other members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Participant {
    pub user_id: String,
    pub username: String,
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
    pub role: Role,
    /// The highest `seq` this member has marked read (0 before the first read).
    pub last_read_seq: i64,
}

/// A one-to-one (`direct`) or `group` conversation, from the caller's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ConversationType,
    /// The group's title; `null` for a direct conversation.
    pub title: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub participants: Vec<Participant>,
    pub last_message: Option<Message>,
    /// Messages from others after the caller's read watermark, deleted ones excluded.
    pub unread_count: i64,
    /// The `seq` of the newest message (0 when there is none).
    pub last_seq: i64,
    /// When the conversation was created or last received a message.
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity_at: OffsetDateTime,
}

/// `GET /api/conversations` answer, most recent activity first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
}

/// `POST /api/conversations` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateConversation {
    #[serde(rename = "type")]
    pub kind: ConversationType,
    /// The other members (the caller is always included and may be listed).
    pub participant_ids: Vec<String>,
    /// Required for a group, ignored for a direct conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `PATCH /api/conversations/{id}` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateConversation {
    pub title: String,
}

/// `POST /api/conversations/{id}/participants` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddParticipants {
    pub user_ids: Vec<String>,
}

/// A message. A deleted message stays as a tombstone: `deleted` is true and `content` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub content: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Gapless, increasing position within the conversation, starting at 1.
    pub seq: i64,
    pub client_id: Option<String>,
    pub reply_to: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub edited_at: Option<OffsetDateTime>,
    pub deleted: bool,
}

/// `GET /api/conversations/{id}/messages` answer, in ascending `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond this page in the direction of travel: older ones for
    /// `before` (or no cursor), newer ones for `after`.
    pub has_more: bool,
}

/// `POST /api/conversations/{id}/messages` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendMessage {
    pub content: String,
    /// A key chosen by the client: a retry with the same key answers with the first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The id of a message in the same conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// `PATCH /api/messages/{id}` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EditMessage {
    pub content: String,
}

/// `POST /api/conversations/{id}/read` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarkRead {
    pub seq: i64,
}

/// Every error answer: `{"error": {"code": "snake_case_code", "message": "human text"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_input`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `rate_limited`, `method_not_allowed`, `internal`, ...
    pub code: String,
    pub message: String,
}

/// `GET /healthz` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_type_is_lowercase_on_the_wire() {
        let body = CreateConversation {
            kind: ConversationType::Direct,
            participant_ids: vec!["u1".into()],
            title: None,
        };
        let json = serde_json::to_value(&body).expect("serializable");
        assert_eq!(json, serde_json::json!({"type": "direct", "participant_ids": ["u1"]}));
    }

    #[test]
    fn message_timestamps_are_rfc3339() {
        let msg = Message {
            id: "m".into(),
            conversation_id: "c".into(),
            sender_id: "u".into(),
            content: "hi".into(),
            created_at: time::macros::datetime!(2026-11-28 12:00:00.123 UTC),
            seq: 1,
            client_id: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
        };
        let json = serde_json::to_value(&msg).expect("serializable");
        assert_eq!(json["created_at"], "2026-11-28T12:00:00.123Z");
        assert_eq!(json["edited_at"], serde_json::Value::Null);
        let back: Message = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, msg);
    }
}
