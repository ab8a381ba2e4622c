//! Messages: send (idempotent by `client_id`), page through history, edit, delete, mark read.

use confab_proto::{ConversationType, Message, Role, SendMessage};

use super::{AuthUser, Service, ServiceError, ServiceResult, new_id, plausible_id};
use crate::security::rate::{Key, Limit};
use crate::store::{NewMessage, PageCursor, Upserted};
use crate::time::now_ms;

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;
const MAX_CLIENT_ID_BYTES: usize = 128;

/// `GET …/messages` parameters, as given.
#[derive(Debug, Default, Clone, Copy)]
pub struct HistoryQuery {
    pub limit: Option<i64>,
    pub before: Option<i64>,
    pub after: Option<i64>,
}

impl Service {
    fn validate_content(&self, content: &str) -> ServiceResult<()> {
        if content.len() > self.limits.max_message_bytes {
            return Err(ServiceError::TooLarge(format!(
                "content: must be at most {} bytes",
                self.limits.max_message_bytes
            )));
        }
        if content.trim().is_empty() {
            return Err(ServiceError::invalid("content", "must not be empty"));
        }
        if content.contains('\0') {
            return Err(ServiceError::invalid("content", "must not contain NUL characters"));
        }
        Ok(())
    }

    /// Stores a message with the next `seq`. A repeated `client_id` from the same sender in
    /// the same conversation returns the first message (`created: false`).
    pub async fn send_message(
        &self,
        user: &AuthUser,
        conversation_id: &str,
        body: SendMessage,
    ) -> ServiceResult<Upserted<Message>> {
        self.check_rate(Limit::Send, Key::User(user.id.clone())).await?;
        self.access_conversation(user, conversation_id).await?;
        self.validate_content(&body.content)?;
        if let Some(client_id) = &body.client_id
            && (client_id.is_empty()
                || client_id.len() > MAX_CLIENT_ID_BYTES
                || client_id.chars().any(char::is_control))
        {
            return Err(ServiceError::invalid(
                "client_id",
                "must be 1-128 bytes of printable text",
            ));
        }
        if let Some(reply_to) = &body.reply_to {
            let parent = match plausible_id(reply_to) {
                true => self.store.message(reply_to).await?,
                false => None,
            };
            if parent.is_none_or(|m| m.conversation_id != conversation_id) {
                return Err(ServiceError::invalid(
                    "reply_to",
                    "must be a message of this conversation",
                ));
            }
        }
        Ok(self
            .store
            .insert_message(NewMessage {
                id: new_id(),
                conversation_id: conversation_id.to_owned(),
                sender_id: user.id.clone(),
                content: body.content,
                created_at_ms: now_ms(),
                client_id: body.client_id,
                reply_to: body.reply_to,
            })
            .await?)
    }

    /// A page of history in ascending `seq`, and whether more lie in the direction of travel.
    pub async fn list_messages(
        &self,
        user: &AuthUser,
        conversation_id: &str,
        query: HistoryQuery,
    ) -> ServiceResult<(Vec<Message>, bool)> {
        self.check_read_rate(user).await?;
        let (cursor, limit) = match page_of(&query) {
            Ok(page) => page,
            Err(e) => {
                // Outsiders learn nothing, not even that their query was malformed.
                self.access_conversation(user, conversation_id).await?;
                return Err(e);
            }
        };
        if !super::plausible_id(conversation_id) {
            return Err(ServiceError::NotFound);
        }
        // The store checks that the caller is a participant in the same query.
        self.store
            .messages_page(conversation_id, &user.id, cursor, limit)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// The message and the caller's membership of its conversation, or `NotFound` for
    /// outsiders, exactly as for a message that does not exist.
    async fn access_message(
        &self,
        user: &AuthUser,
        message_id: &str,
    ) -> ServiceResult<(Message, crate::store::Membership)> {
        if !plausible_id(message_id) {
            return Err(ServiceError::NotFound);
        }
        let message = self.store.message(message_id).await?.ok_or(ServiceError::NotFound)?;
        let me = self.access_conversation(user, &message.conversation_id).await?;
        Ok((message, me))
    }

    /// Only the sender edits a message, and not once it is deleted.
    pub async fn edit_message(
        &self,
        user: &AuthUser,
        message_id: &str,
        content: &str,
    ) -> ServiceResult<Message> {
        self.check_rate(Limit::Send, Key::User(user.id.clone())).await?;
        let (message, _) = self.access_message(user, message_id).await?;
        if message.sender_id != user.id {
            return Err(ServiceError::Forbidden("only the sender can edit a message"));
        }
        if message.deleted {
            return Err(ServiceError::Conflict("the message is deleted".into()));
        }
        self.validate_content(content)?;
        Ok(self.store.update_message_content(message_id, content, now_ms()).await?)
    }

    /// The sender deletes their message; a group admin deletes any. The content is erased and
    /// a tombstone keeps the `seq`. Deleting a deleted message succeeds.
    pub async fn delete_message(&self, user: &AuthUser, message_id: &str) -> ServiceResult<()> {
        let (message, me) = self.access_message(user, message_id).await?;
        let is_group_admin = me.kind == ConversationType::Group && me.role == Role::Admin;
        if message.sender_id != user.id && !is_group_admin {
            return Err(ServiceError::Forbidden("only the sender or a group admin can delete"));
        }
        if !message.deleted {
            self.store.tombstone_message(message_id).await?;
        }
        Ok(())
    }

    /// Moves the caller's read watermark up to `seq` (never back; clamped to the last message).
    pub async fn mark_read(
        &self,
        user: &AuthUser,
        conversation_id: &str,
        seq: i64,
    ) -> ServiceResult<i64> {
        self.access_watermark(user, conversation_id, seq).await?;
        Ok(self.store.mark_read(conversation_id, &user.id, seq).await?)
    }

    /// The gate and the rule shared by read and delivery receipts.
    pub(super) async fn access_watermark(
        &self,
        user: &AuthUser,
        conversation_id: &str,
        seq: i64,
    ) -> ServiceResult<()> {
        self.access_conversation(user, conversation_id).await?;
        if seq < 0 {
            return Err(ServiceError::invalid("seq", "must not be negative"));
        }
        Ok(())
    }
}

/// Where a history query starts and how many messages it takes.
fn page_of(query: &HistoryQuery) -> ServiceResult<(PageCursor, i64)> {
    let limit = match query.limit {
        None => DEFAULT_PAGE,
        Some(n) if n < 1 => return Err(ServiceError::invalid("limit", "must be at least 1")),
        Some(n) => n.min(MAX_PAGE),
    };
    if query.before.is_some_and(|b| b < 0) {
        return Err(ServiceError::invalid("before", "must not be negative"));
    }
    if query.after.is_some_and(|a| a < 0) {
        return Err(ServiceError::invalid("after", "must not be negative"));
    }
    let cursor = match (query.before, query.after) {
        (None, None) => PageCursor::Latest,
        (Some(before), None) => PageCursor::Before(before),
        (None, Some(after)) => PageCursor::After(after),
        (Some(before), Some(after)) => PageCursor::Between { after, before },
    };
    Ok((cursor, limit))
}
