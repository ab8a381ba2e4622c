//! Real-time use cases: opening an event stream, typing, delivery receipts, presence, and the
//! background tasks behind them (presence changes, typing expiry, event-log pruning).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_proto::{Event, Presence, Typing};
use tokio::sync::mpsc;

use super::{AuthUser, Service, ServiceResult};
use crate::realtime::feed::Opened;
use crate::realtime::{Feed, PresenceChange, frame_text};
use crate::security::rate::{Key, Limit};
use crate::time::{from_ms, now_ms};

impl Service {
    /// Starts `user`'s event stream from `cursor` (see [`Feed::open`]).
    pub async fn open_feed(
        &self,
        user: &AuthUser,
        ip: std::net::IpAddr,
        cursor: Option<&str>,
    ) -> ServiceResult<Opened> {
        self.check_rate(Limit::Connect, Key::Ip(ip)).await?;
        let opened = Feed::open(
            &self.hub,
            self.store.clone(),
            &user.id,
            &user.token_hash,
            cursor,
            self.limits.replay_limit,
        )
        .await?;
        // The request was let in before this stream subscribed: a sign-out in between closed
        // the session's streams without this one. Now subscribed, it is closed by any later
        // sign-out, and checks for an earlier one here.
        if !self.session_stands(&user.token_hash).await? {
            return Err(super::ServiceError::Unauthenticated("invalid or expired session"));
        }
        Ok(opened)
    }

    /// The cursor of the current end of the event log: where a stream opened now would start.
    pub async fn event_head(&self) -> ServiceResult<String> {
        let bounds = self.store.event_bounds().await?;
        Ok(crate::realtime::feed::format_cursor(&bounds.instance, bounds.head))
    }

    /// Tells the other members (and the typist's other devices) that `user` started or
    /// stopped typing. Refreshes are rate-limited; the signal expires by itself.
    pub async fn set_typing(
        &self,
        user: &AuthUser,
        conversation_id: &str,
        typing: bool,
    ) -> ServiceResult<()> {
        self.check_rate(Limit::Typing, Key::User(user.id.clone())).await?;
        self.access_conversation(user, conversation_id).await?;
        if self.typing.update(conversation_id, &user.id, typing, Instant::now()) {
            self.broadcast_typing(conversation_id, &user.id, typing).await?;
        }
        Ok(())
    }

    async fn broadcast_typing(
        &self,
        conversation_id: &str,
        user_id: &str,
        typing: bool,
    ) -> ServiceResult<()> {
        let members = self.store.participant_ids(conversation_id).await?;
        let event = Event::Typing(Typing {
            conversation_id: conversation_id.to_owned(),
            user_id: user_id.to_owned(),
            typing,
        });
        self.bus.send_ephemeral(&members, frame_text(&event));
        Ok(())
    }

    /// Records that one of `user`'s devices received the conversation up to `seq`.
    pub async fn mark_delivered(
        &self,
        user: &AuthUser,
        conversation_id: &str,
        seq: i64,
    ) -> ServiceResult<i64> {
        self.access_watermark(user, conversation_id, seq).await?;
        Ok(self.store.mark_delivered(conversation_id, &user.id, seq).await?)
    }

    /// Presence of everyone who shares a conversation with `user`.
    pub async fn list_presence(&self, user: &AuthUser) -> ServiceResult<Vec<Presence>> {
        let contacts = self.store.contacts(&user.id).await?;
        let mut out = Vec::with_capacity(contacts.len());
        for contact in contacts {
            if contact == user.id {
                continue;
            }
            let online = self.bus.is_online(&contact).await;
            let last_seen = match online {
                true => None,
                false => self.store.last_seen(&contact).await?.map(from_ms),
            };
            out.push(Presence { user_id: contact, online, last_seen });
        }
        Ok(out)
    }

    /// Starts the background tasks; they stop when the service is dropped or the hub shuts
    /// down.
    pub fn spawn_background(
        self: &Arc<Self>,
        mut presence: mpsc::UnboundedReceiver<PresenceChange>,
        mut revocations: mpsc::UnboundedReceiver<crate::bus::Revocation>,
    ) {
        // Sessions signed out on any node leave this node's cache.
        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((_, sessions)) = revocations.recv().await {
                let Some(service) = service.upgrade() else { break };
                service.forget_sessions(&sessions);
            }
        });

        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(change) = presence.recv().await {
                let Some(service) = service.upgrade() else { break };
                if let Err(e) = service.announce_presence(change).await {
                    tracing::warn!(error = ?e, "presence update failed");
                }
            }
        });

        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(service) = service.upgrade() else { break };
                for (conversation, user) in service.typing.expire(Instant::now()) {
                    if let Err(e) = service.broadcast_typing(&conversation, &user, false).await {
                        tracing::warn!(error = ?e, "typing expiry failed");
                    }
                }
            }
        });

        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            let hour = Duration::from_secs(3600);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
            loop {
                tick.tick().await;
                let Some(service) = service.upgrade() else { break };
                if let Err(e) = service.prune_events().await {
                    tracing::warn!(error = ?e, "event pruning failed");
                }
                if let Err(e) = service.prune_sessions().await {
                    tracing::warn!(error = ?e, "session pruning failed");
                }
            }
        });

        // Presence records in Redis: refresh ours, and report users whose nodes died.
        if self.bus.is_distributed() {
            let service = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::bus::presence::HEARTBEAT);
                loop {
                    tick.tick().await;
                    let Some(service) = service.upgrade() else { break };
                    for user in service.bus.presence_heartbeat().await {
                        if let Err(e) = service.announce(PresenceChange::Offline(user)).await {
                            tracing::warn!(error = ?e, "presence update failed");
                        }
                    }
                }
            });
        }

        // Rate-limit buckets of clients that went quiet are dropped, so memory follows the
        // active clients rather than every address ever seen.
        let service = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(service) = service.upgrade() else { break };
                service.sweep_rate_limits();
            }
        });
    }

    /// Deletes events older than the retention period (at start-up, then hourly).
    pub async fn prune_events(&self) -> ServiceResult<()> {
        let before = now_ms() - self.limits.event_retention_ms;
        let pruned = self.store.prune_events(before).await?;
        if pruned > 0 {
            tracing::info!(events = pruned, "pruned old events");
        }
        Ok(())
    }

    async fn announce_presence(&self, change: PresenceChange) -> ServiceResult<()> {
        // With several nodes, only a change for the whole cluster is news.
        let news = match &change {
            PresenceChange::Online(user) => self.bus.presence_up(user).await,
            PresenceChange::Offline(user) => self.bus.presence_down(user).await,
        };
        if !news {
            return Ok(());
        }
        self.announce(change).await
    }

    async fn announce(&self, change: PresenceChange) -> ServiceResult<()> {
        let (user_id, online, last_seen) = match change {
            PresenceChange::Online(user) => (user, true, None),
            PresenceChange::Offline(user) => {
                let now = now_ms();
                self.store.set_last_seen(&user, now).await?;
                (user, false, Some(from_ms(now)))
            }
        };
        // The user's own devices know whether they are connected.
        let mut contacts = self.store.contacts(&user_id).await?;
        contacts.retain(|c| *c != user_id);
        let event = Event::Presence(Presence { user_id, online, last_seen });
        self.bus.send_ephemeral(&contacts, frame_text(&event));
        Ok(())
    }
}
