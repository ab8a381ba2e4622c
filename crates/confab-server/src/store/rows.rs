//! Rows and pieces both stores share: the row types of the common columns, how they become
//! API types, and how stored events are framed.

use std::collections::HashMap;

use confab_proto::{Conversation, ConversationType, Message, Participant, Role, User};
use sqlx::FromRow;

use super::codec::Codec;
use super::{NewMessage, StoreResult};
use crate::time::from_ms;

#[derive(FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User { id: r.id, username: r.username, created_at: from_ms(r.created_at) }
    }
}

#[derive(FromRow)]
pub struct MessageRow {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub content: String,
    pub created_at: i64,
    pub seq: i64,
    pub client_id: Option<String>,
    pub reply_to: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted: bool,
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

/// The message `msg` became when stored with `seq` (as the store returns and announces it).
pub fn stored_message(msg: &NewMessage, seq: i64) -> Message {
    Message::from(MessageRow {
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
    })
}

pub const MESSAGE_COLUMNS: &str = "id, conversation_id, sender_id, content, created_at, seq, client_id, reply_to, edited_at, deleted";

#[derive(FromRow)]
pub struct ParticipantRow {
    pub conversation_id: String,
    pub user_id: String,
    pub username: String,
    pub joined_at: i64,
    pub role: String,
    pub last_read_seq: i64,
    pub last_delivered_seq: i64,
}

impl From<ParticipantRow> for Participant {
    fn from(r: ParticipantRow) -> Participant {
        Participant {
            user_id: r.user_id,
            username: r.username,
            joined_at: from_ms(r.joined_at),
            role: parse_role(&r.role),
            last_read_seq: r.last_read_seq,
            last_delivered_seq: r.last_delivered_seq,
        }
    }
}

#[derive(FromRow)]
pub struct ConversationRow {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub title: Option<String>,
    pub created_at: i64,
    pub last_seq: i64,
    pub last_activity_at: i64,
    pub unread_count: i64,
}

pub fn parse_role(s: &str) -> Role {
    if s == "admin" { Role::Admin } else { Role::Member }
}

pub fn parse_kind(s: &str) -> ConversationType {
    if s == "group" { ConversationType::Group } else { ConversationType::Direct }
}

/// Conversation rows as `$1` (a user id) sees them, with the unread count computed from that
/// user's read watermark by a range scan of `messages (conversation_id, seq)`.
pub const CONVERSATION_SELECT: &str = "
    SELECT c.id, c.type, c.title, c.created_at, c.last_seq, c.last_activity_at,
           (SELECT COUNT(*) FROM messages m
             WHERE m.conversation_id = c.id AND m.seq > p.last_read_seq
               AND m.sender_id <> p.user_id AND m.deleted = FALSE) AS unread_count
      FROM participants p JOIN conversations c ON c.id = p.conversation_id
     WHERE p.user_id = $1";

/// Participants as `$3` sees them: the read watermark of someone who does not share read
/// receipts shows as 0 to everyone else.
pub const PARTICIPANT_SELECT: &str = "
    SELECT p.conversation_id, p.user_id, u.username, p.joined_at, p.role,
           CASE WHEN u.share_read_receipts = TRUE OR u.id = $3 THEN p.last_read_seq ELSE 0 END
               AS last_read_seq,
           p.last_delivered_seq
      FROM participants p JOIN users u ON u.id = p.user_id";

/// Whose point of view a conversation is built from.
#[derive(Clone, Copy)]
pub enum View<'a> {
    /// A member's: their unread count, their own read watermark.
    Member(&'a str),
    /// For an event everyone receives, built from a member's rows: no unread count, and only
    /// the read watermarks their owners share.
    Shared(&'a str),
}

/// The conversation of the event of its last member leaving: its row alone (select it with
/// [`CONVERSATION_ROW`]).
pub const CONVERSATION_ROW: &str = "SELECT id, type, title, created_at, last_seq, last_activity_at,
        CAST(0 AS BIGINT) AS unread_count FROM conversations WHERE id = $1";

/// Conversations from their rows, with their participants and (opened) last messages
/// attached; `view` decides whether unread counts show.
pub fn assemble_conversations(
    view: View<'_>,
    rows: Vec<ConversationRow>,
    participants: Vec<ParticipantRow>,
    last_messages: Vec<Message>,
) -> Vec<Conversation> {
    let mut by_conv: HashMap<String, Vec<Participant>> = HashMap::with_capacity(rows.len());
    for p in participants {
        by_conv.entry(p.conversation_id.clone()).or_default().push(p.into());
    }
    let mut last: HashMap<String, Message> =
        last_messages.into_iter().map(|m| (m.conversation_id.clone(), m)).collect();
    rows.into_iter()
        .map(|r| Conversation {
            participants: by_conv.remove(&r.id).unwrap_or_default(),
            last_message: last.remove(&r.id),
            kind: parse_kind(&r.kind),
            title: r.title,
            created_at: from_ms(r.created_at),
            unread_count: if matches!(view, View::Shared(_)) { 0 } else { r.unread_count },
            last_seq: r.last_seq,
            last_activity_at: from_ms(r.last_activity_at),
            id: r.id,
        })
        .collect()
}

/// A message row with its content opened.
pub fn open_row(codec: &Codec, mut row: MessageRow) -> StoreResult<Message> {
    row.content = codec.open(&row.id, std::mem::take(&mut row.content))?;
    Ok(Message::from(row))
}

/// Who receives an event.
pub enum Audience<'a> {
    /// The conversation's members at commit time.
    Members,
    /// The members and one more user (someone just removed).
    MembersAnd(&'a str),
    /// One user only.
    Only(&'a str),
}

/// The whole frame of a stored event, built from its parts without re-serializing.
pub fn frame_text(kind: &str, payload: &str, instance: &str, id: i64) -> String {
    format!(r#"{{"type":"{kind}","payload":{payload},"cursor":"{instance}-{id}"}}"#)
}
