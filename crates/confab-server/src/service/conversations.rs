//! Conversations: create (direct or group), list, read one, rename, add and remove members,
//! leave.

use confab_proto::{Conversation, ConversationType, CreateConversation, Role};

use super::{AuthUser, Service, ServiceError, ServiceResult, new_id, plausible_id};
use crate::store::{NewConversation, NewParticipant, Upserted};
use crate::time::now_ms;

const MAX_TITLE_CHARS: usize = 128;

fn validate_title(title: Option<&str>) -> ServiceResult<String> {
    let title = title.map(str::trim).unwrap_or_default();
    if title.is_empty() {
        return Err(ServiceError::invalid("title", "a group needs a title"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ServiceError::invalid("title", "must be at most 128 characters"));
    }
    if title.chars().any(char::is_control) {
        return Err(ServiceError::invalid("title", "must not contain control characters"));
    }
    Ok(title.to_owned())
}

impl Service {
    /// Creates a conversation. A direct conversation with someone you already have one with
    /// answers that one (`created: false`).
    pub async fn create_conversation(
        &self,
        user: &AuthUser,
        body: CreateConversation,
    ) -> ServiceResult<Upserted<Conversation>> {
        let mut others: Vec<String> = Vec::with_capacity(body.participant_ids.len());
        for id in body.participant_ids {
            if id != user.id && !others.contains(&id) {
                others.push(id);
            }
            if others.len() > self.limits.max_group_members {
                break; // the limit check below reports it; no need to read the rest
            }
        }
        let now = now_ms();
        let (title, direct_key) = match body.kind {
            ConversationType::Direct => {
                let [other] = others.as_slice() else {
                    return Err(ServiceError::invalid(
                        "participant_ids",
                        "a direct conversation has exactly one other participant",
                    ));
                };
                let (a, b) = if user.id < *other { (&user.id, other) } else { (other, &user.id) };
                (None, Some(format!("{a}:{b}")))
            }
            ConversationType::Group => {
                if others.len() + 1 > self.limits.max_group_members {
                    return Err(ServiceError::invalid(
                        "participant_ids",
                        format!("a group has at most {} members", self.limits.max_group_members),
                    ));
                }
                (Some(validate_title(body.title.as_deref())?), None)
            }
        };
        self.check_users_exist("participant_ids", &others).await?;

        let mut members = vec![NewParticipant {
            id: new_id(),
            user_id: user.id.clone(),
            role: if body.kind == ConversationType::Group { Role::Admin } else { Role::Member },
            joined_at_ms: now,
        }];
        members.extend(others.into_iter().map(|user_id| NewParticipant {
            id: new_id(),
            user_id,
            role: Role::Member,
            joined_at_ms: now,
        }));
        let stored = self
            .store
            .insert_conversation(NewConversation {
                id: new_id(),
                kind: body.kind,
                title,
                created_by: user.id.clone(),
                created_at_ms: now,
                direct_key,
                members,
            })
            .await?;
        let conversation = self.get_conversation(user, &stored.value).await?;
        Ok(Upserted { value: conversation, created: stored.created })
    }

    /// `field` names the request's list in the error.
    async fn check_users_exist(&self, field: &'static str, ids: &[String]) -> ServiceResult<()> {
        if ids.iter().any(|id| !plausible_id(id)) {
            return Err(ServiceError::invalid(field, "unknown user"));
        }
        let found = self.store.users_by_ids(ids).await?;
        if found.len() != ids.len() {
            return Err(ServiceError::invalid(field, "unknown user"));
        }
        Ok(())
    }

    pub async fn list_conversations(&self, user: &AuthUser) -> ServiceResult<Vec<Conversation>> {
        Ok(self.store.conversations_for(&user.id).await?)
    }

    pub async fn get_conversation(&self, user: &AuthUser, id: &str) -> ServiceResult<Conversation> {
        if !plausible_id(id) {
            return Err(ServiceError::NotFound);
        }
        self.store.conversation_for(id, &user.id).await?.ok_or(ServiceError::NotFound)
    }

    /// Any member may rename a group; a direct conversation has no title.
    pub async fn rename_conversation(
        &self,
        user: &AuthUser,
        id: &str,
        title: &str,
    ) -> ServiceResult<Conversation> {
        let me = self.access_conversation(user, id).await?;
        if me.kind != ConversationType::Group {
            return Err(ServiceError::invalid("title", "a direct conversation has no title"));
        }
        let title = validate_title(Some(title))?;
        self.store.rename_conversation(id, &title, &user.id).await?;
        self.get_conversation(user, id).await
    }

    /// Admins add members to a group; people already in it are skipped.
    pub async fn add_participants(
        &self,
        user: &AuthUser,
        id: &str,
        user_ids: Vec<String>,
    ) -> ServiceResult<Conversation> {
        let me = self.access_conversation(user, id).await?;
        if me.kind != ConversationType::Group {
            return Err(ServiceError::invalid("user_ids", "a direct conversation has two members"));
        }
        if me.role != Role::Admin {
            return Err(ServiceError::Forbidden("only a group admin can add members"));
        }
        let current = self.store.participants(id).await?;
        let mut new: Vec<String> = Vec::new();
        for uid in user_ids {
            if !current.iter().any(|p| p.user_id == uid) && !new.contains(&uid) {
                new.push(uid);
            }
            if current.len() + new.len() > self.limits.max_group_members {
                return Err(ServiceError::invalid(
                    "user_ids",
                    format!("a group has at most {} members", self.limits.max_group_members),
                ));
            }
        }
        self.check_users_exist("user_ids", &new).await?;
        let now = now_ms();
        let members = new
            .into_iter()
            .map(|user_id| NewParticipant {
                id: new_id(),
                user_id,
                role: Role::Member,
                joined_at_ms: now,
            })
            .collect();
        self.store.insert_participants(id, members, &user.id).await?;
        self.get_conversation(user, id).await
    }

    /// An admin removes a member, or anyone removes themself (which is leaving).
    pub async fn remove_participant(
        &self,
        user: &AuthUser,
        id: &str,
        target: &str,
    ) -> ServiceResult<()> {
        let me = self.access_conversation(user, id).await?;
        if me.kind != ConversationType::Group {
            return Err(ServiceError::invalid(
                "conversation",
                "nobody can be removed from a direct conversation",
            ));
        }
        if target != user.id && me.role != Role::Admin {
            return Err(ServiceError::Forbidden("only a group admin can remove members"));
        }
        if !plausible_id(target) {
            return Err(ServiceError::NotFound);
        }
        self.store.delete_participant(id, target, &user.id).await?;
        Ok(())
    }

    pub async fn leave_conversation(&self, user: &AuthUser, id: &str) -> ServiceResult<()> {
        self.remove_participant(user, id, &user.id.clone()).await
    }
}
