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

/// `GET /api/me` answer: the account and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub username: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub share_read_receipts: bool,
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
    /// For browsers using the session cookie: send it as `X-CSRF-Token` on every state-changing
    /// request (it is also in the readable `confab_csrf` cookie). Bearer clients ignore it.
    #[serde(default)]
    pub csrf_token: String,
}

/// One signed-in session of the caller, in `GET /api/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Opaque; `DELETE /api/sessions/{id}` revokes it.
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Accurate to about a minute.
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The `User-Agent` that signed in, shortened.
    pub user_agent: Option<String>,
    /// The client address that signed in.
    pub ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// `GET /api/sessions` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// `DELETE /api/sessions` answer: how many other sessions were signed out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokedSessions {
    pub revoked: u64,
}

/// `POST /api/me/password` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
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
    /// The highest `seq` this member has marked read (0 before the first read, and always 0
    /// for others when the member does not share read receipts).
    pub last_read_seq: i64,
    /// The highest `seq` one of this member's devices acknowledged receiving.
    #[serde(default)]
    pub last_delivered_seq: i64,
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

/// One real-time frame, the same on WebSocket, SSE and long-poll:
/// `{"type": "new_message", "payload": {...}, "cursor": "42"}`.
///
/// `cursor` is present on durable events (messages, edits, deletes, membership, receipts):
/// resume from the last one seen and you get every later durable event once, in order.
/// Ephemeral events (`typing`, `presence`) carry none and are never replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Frame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl Frame {
    /// The frame of `event`, with the cursor of a durable event.
    pub fn new(event: &Event, cursor: Option<String>) -> Frame {
        match serde_json::to_value(event) {
            Ok(serde_json::Value::Object(mut map)) => Frame {
                kind: map
                    .remove("type")
                    .and_then(|t| t.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                payload: map.remove("payload").unwrap_or(serde_json::Value::Null),
                cursor,
            },
            // An adjacently tagged enum always serializes to an object.
            _ => Frame { kind: String::new(), payload: serde_json::Value::Null, cursor },
        }
    }

    /// The typed event, for frame types this version knows.
    pub fn event(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"type": self.kind, "payload": self.payload}))
    }
}

/// Every real-time event, by `type`. Payloads are the REST objects where one exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum Event {
    /// First frame of a stream: where it starts. Resume from `cursor` to miss nothing.
    Ready(Ready),
    NewMessage(Message),
    MessageUpdated(Message),
    /// The tombstone: `deleted` is true and `content` empty.
    MessageDeleted(Message),
    ConversationCreated(Conversation),
    ConversationUpdated(Conversation),
    ParticipantAdded(MembershipChange),
    ParticipantRemoved(MembershipChange),
    Read(Receipt),
    Delivered(Receipt),
    Typing(Typing),
    Presence(Presence),
    /// The cursor cannot be replayed (too old, or unknown): re-sync by REST, then continue
    /// from the `cursor` given here.
    ResyncRequired(Resync),
    /// The answer to a `send` over WebSocket.
    Ack(Ack),
    /// A client frame was refused.
    Error(FrameError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    pub cursor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resync {
    pub reason: String,
    pub cursor: String,
}

/// `participant_added` / `participant_removed`: who, and the conversation as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MembershipChange {
    pub conversation_id: String,
    pub user_id: String,
    pub username: String,
    /// Who made the change (the member themself when leaving).
    pub by: String,
    pub conversation: Conversation,
}

/// `read` and `delivered`: a participant's watermark moved to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub conversation_id: String,
    pub user_id: String,
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Typing {
    pub conversation_id: String,
    pub user_id: String,
    /// `true` while typing; `false` on stop or when it expired (5 s after the last refresh).
    pub typing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    pub user_id: String,
    pub online: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    pub client_id: Option<String>,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FrameError {
    pub code: String,
    pub message: String,
    /// The `client_id` of the refused `send`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Frames a client sends over WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Typing started (`typing: true`, refresh every few seconds) or stopped.
    Typing { conversation_id: String, typing: bool },
    /// This device has received messages up to `seq`.
    Delivered { conversation_id: String, seq: i64 },
    /// Sends a message; answered by `ack` (or `error`) carrying the same `client_id`.
    Send {
        conversation_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// Answered by a `pong` frame; the server also pings at the WebSocket level.
    Ping,
}

/// `GET /api/events/poll` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PollResponse {
    pub events: Vec<Frame>,
    /// Pass it as `cursor` to the next poll.
    pub cursor: String,
}

/// `PATCH /api/me` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateMe {
    /// Whether others see your read receipts (`read` events, `last_read_seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_read_receipts: Option<bool>,
}

/// `POST /api/conversations/{id}/typing` body (for clients without a WebSocket).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetTyping {
    pub typing: bool,
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
    fn frames_are_type_and_payload_with_an_optional_cursor() {
        let event =
            Event::Read(Receipt { conversation_id: "c".into(), user_id: "u".into(), seq: 3 });

        let frame = Frame::new(&event, Some("42".into()));
        let json = serde_json::to_value(&frame).expect("serializable");

        assert_eq!(
            json,
            serde_json::json!({"type": "read", "payload": {"conversation_id": "c", "user_id": "u", "seq": 3}, "cursor": "42"})
        );
        assert_eq!(frame.event().expect("typed"), event);
    }

    #[test]
    fn client_frames_parse_from_plain_json() {
        let frame: ClientFrame = serde_json::from_str(
            r#"{"type":"typing","payload":{"conversation_id":"c","typing":true}}"#,
        )
        .expect("parses");
        assert_eq!(frame, ClientFrame::Typing { conversation_id: "c".into(), typing: true });
        let ping: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).expect("parses");
        assert_eq!(ping, ClientFrame::Ping);
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
