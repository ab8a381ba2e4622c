//! One client's event stream: missed durable events replayed from the database, then live
//! ones from the hub, each exactly once and in order.
//!
//! The subscription is registered *before* the database is read, so an event committed while
//! the replay runs is in the live queue too; anything at or below the last position already
//! sent is dropped, which makes the join seamless.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use confab_proto::{Event, Ready, Resync};
use futures_util::StreamExt;

use super::hub::{CloseReason, Hub, Outgoing, SubscribeError, Subscription};
use crate::service::{ServiceError, ServiceResult};
use crate::store::Store;

/// Events read from the database per query while replaying.
const REPLAY_PAGE: i64 = 500;

pub enum FeedItem {
    /// A frame to send; `cursor` is set for durable events.
    Frame {
        frame: Utf8Bytes,
        cursor: Option<String>,
    },
    Close(CloseReason),
}

pub struct Feed {
    sub: Subscription,
    store: Arc<dyn Store>,
    /// This database's name in cursors: `<instance>-<event id>`.
    instance: Arc<str>,
    user_id: String,
    /// The position of the last durable event handed out (or the starting cursor).
    last_id: i64,
    replaying: bool,
    backlog: VecDeque<(i64, Utf8Bytes)>,
}

/// How a stream starts.
pub struct Opened {
    pub feed: Feed,
    /// `ready` with the starting cursor, or `resync_required`.
    pub first: Utf8Bytes,
    pub resync: bool,
}

/// `<instance>-<event id>`: the cursor clients see.
pub fn format_cursor(instance: &str, id: i64) -> String {
    format!("{instance}-{id}")
}

/// The instance and event id of a cursor, if it has that shape.
pub fn parse_cursor(cursor: &str) -> Option<(&str, i64)> {
    let (instance, id) = cursor.rsplit_once('-')?;
    let id: i64 = id.parse().ok()?;
    let named = !instance.is_empty() && instance.bytes().all(|b| b.is_ascii_hexdigit());
    (named && id >= 0).then_some((instance, id))
}

impl Feed {
    /// Opens a stream for `user_id` from `cursor` (none: from now on). A cursor that cannot be
    /// replayed (unparsable, pruned, from another database, or with more than `replay_limit`
    /// events behind it) starts the stream with `resync_required` at the current position.
    pub async fn open(
        hub: &Arc<Hub>,
        store: Arc<dyn Store>,
        user_id: &str,
        session: &str,
        cursor: Option<&str>,
        replay_limit: i64,
    ) -> ServiceResult<Opened> {
        let sub = hub.subscribe(user_id, session).map_err(|e| match e {
            SubscribeError::TooMany => ServiceError::rate_limited(e.to_string(), 5),
            SubscribeError::ShuttingDown => ServiceError::Unavailable(e.to_string()),
        })?;
        let bounds = store.event_bounds().await?;
        let head = format_cursor(&bounds.instance, bounds.head);
        let resync = |reason: &str| {
            Event::ResyncRequired(Resync { reason: reason.to_owned(), cursor: head.clone() })
        };
        let (start, replaying, first) = match cursor.map(str::trim) {
            None | Some("") => (bounds.head, false, Event::Ready(Ready { cursor: head.clone() })),
            Some(text) => match parse_cursor(text) {
                None => (bounds.head, false, resync("the cursor is malformed")),
                Some((instance, _)) if instance != &*bounds.instance => {
                    (bounds.head, false, resync("the cursor is from another server"))
                }
                Some((_, c)) if c > bounds.head => {
                    (bounds.head, false, resync("the cursor is ahead of this server"))
                }
                Some((_, c)) if c < bounds.floor => {
                    (bounds.head, false, resync("the cursor is older than the kept history"))
                }
                Some((_, c)) => {
                    let pending = store.count_events_for(user_id, c, replay_limit + 1).await?;
                    if pending > replay_limit {
                        (bounds.head, false, resync("too many missed events to replay"))
                    } else {
                        let cursor = format_cursor(&bounds.instance, c);
                        (c, true, Event::Ready(Ready { cursor }))
                    }
                }
            },
        };
        let is_resync = matches!(first, Event::ResyncRequired(_));
        let feed = Feed {
            sub,
            store,
            instance: bounds.instance.clone(),
            user_id: user_id.to_owned(),
            last_id: start,
            replaying,
            backlog: VecDeque::new(),
        };
        Ok(Opened { feed, first: super::frame_text(&first), resync: is_resync })
    }

    /// The resume cursor: the position of the last durable event handed out.
    pub fn cursor(&self) -> String {
        format_cursor(&self.instance, self.last_id)
    }

    /// Reads the next page of missed events, if replaying. Cancel-safe: a page is only
    /// recorded once it has been read in full.
    async fn fill_backlog(&mut self) -> ServiceResult<()> {
        let after = self.backlog.back().map_or(self.last_id, |(id, _)| *id);
        let page = self.store.events_for(&self.user_id, after, REPLAY_PAGE).await?;
        if page.is_empty() {
            self.replaying = false;
        }
        self.backlog.extend(page.into_iter().map(|f| (f.id, Utf8Bytes::from(f.frame))));
        Ok(())
    }

    fn take_live(&mut self, item: Outgoing) -> Option<FeedItem> {
        match item {
            Outgoing::Durable { id, frame } if id > self.last_id => {
                self.last_id = id;
                Some(FeedItem::Frame { frame, cursor: Some(self.cursor()) })
            }
            // Already replayed from the database.
            Outgoing::Durable { .. } => None,
            Outgoing::Ephemeral(frame) => Some(FeedItem::Frame { frame, cursor: None }),
        }
    }

    fn pop_backlog(&mut self) -> Option<FeedItem> {
        let (id, frame) = self.backlog.pop_front()?;
        self.last_id = id;
        Some(FeedItem::Frame { frame, cursor: Some(self.cursor()) })
    }

    /// The next item, waiting for one.
    pub async fn next(&mut self) -> ServiceResult<FeedItem> {
        loop {
            if let Some(item) = self.pop_backlog() {
                return Ok(item);
            }
            if self.replaying {
                self.fill_backlog().await?;
                continue;
            }
            tokio::select! {
                biased;
                reason = &mut self.sub.close => {
                    return Ok(FeedItem::Close(reason.unwrap_or(CloseReason::Shutdown)));
                }
                item = self.sub.rx.next() => match item {
                    Some(item) => {
                        if let Some(item) = self.take_live(item) {
                            return Ok(item);
                        }
                    }
                    None => return Ok(FeedItem::Close(CloseReason::Lagging)),
                },
            }
        }
    }

    /// The next item if one is available without waiting for new events (a replay page may
    /// still be read from the database).
    pub async fn next_available(&mut self) -> ServiceResult<Option<FeedItem>> {
        loop {
            if let Some(item) = self.pop_backlog() {
                return Ok(Some(item));
            }
            if self.replaying {
                self.fill_backlog().await?;
                continue;
            }
            if let Ok(reason) = self.sub.close.try_recv() {
                return Ok(Some(FeedItem::Close(reason)));
            }
            match self.sub.rx.try_recv() {
                Ok(item) => {
                    if let Some(item) = self.take_live(item) {
                        return Ok(Some(item));
                    }
                }
                Err(_) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(parse_cursor(&format_cursor("ab12", 42)), Some(("ab12", 42)));
        for garbage in ["", "42", "ab12-", "-5", "ab12-x", "ab12--1", "ab12-99999999999999999999"] {
            assert_eq!(parse_cursor(garbage), None, "{garbage:?}");
        }
    }
}
