//! The connection registry and fan-out.
//!
//! Each connection (a WebSocket, an SSE stream, a waiting long-poll) registers a bounded queue
//! under its user. `publish` pushes each committed event into the queues of its recipients
//! without waiting: a full queue means the consumer is too slow, and it is told to close (it
//! resumes from its cursor) instead of slowing everyone else. A `Subscription` unregisters
//! itself when dropped, and the last connection of a user going away starts the presence grace
//! period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::store::{EventSink, Published};

/// Why the hub ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The consumer fell behind; it should reconnect and resume from its cursor.
    Lagging,
    /// The server is shutting down; reconnect (to another node, or after the restart).
    Shutdown,
    /// The session was signed out or revoked; sign in again.
    Revoked,
}

/// What a connection's queue carries.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A durable event and its position in the log.
    Durable { id: i64, frame: Utf8Bytes },
    /// Typing or presence: delivered live only.
    Ephemeral(Utf8Bytes),
}

/// A user came online (first connection) or went offline (grace period over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    Online(String),
    Offline(String),
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Frames a connection may have waiting before it counts as too slow.
    pub queue: usize,
    pub max_connections_per_user: usize,
    /// How long a user stays online after their last connection closed.
    pub presence_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("too many connections for this user")]
    TooMany,
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Conn {
    id: u64,
    /// The token hash of the session that opened it, so revoking the session closes it.
    session: String,
    tx: futures_channel::mpsc::Sender<Outgoing>,
    /// Taken when the hub tells the connection to close.
    close: Option<oneshot::Sender<CloseReason>>,
}

#[derive(Default)]
struct UserConns {
    conns: Vec<Conn>,
    /// Bumped on every change of connection count, so a stale offline timer does nothing.
    generation: u64,
    online: bool,
}

pub struct Hub {
    config: HubConfig,
    // std Mutex: held only for map operations and non-blocking `try_send`s, never across an
    // `.await`.
    users: Mutex<HashMap<String, UserConns>>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    presence: mpsc::UnboundedSender<PresenceChange>,
}

/// A registered connection. Dropping it unregisters it.
pub struct Subscription {
    pub rx: futures_channel::mpsc::Receiver<Outgoing>,
    pub close: oneshot::Receiver<CloseReason>,
    hub: std::sync::Arc<Hub>,
    user_id: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.user_id, self.id);
    }
}

impl Hub {
    /// The hub and the stream of presence changes it reports.
    pub fn new(config: HubConfig) -> (Hub, mpsc::UnboundedReceiver<PresenceChange>) {
        let (presence, presence_rx) = mpsc::unbounded_channel();
        let hub = Hub {
            config,
            users: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            presence,
        };
        (hub, presence_rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserConns>> {
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a connection for `user_id`. Register *before* reading missed events from the
    /// database, so that nothing committed in between is lost.
    pub fn subscribe(
        self: &std::sync::Arc<Self>,
        user_id: &str,
        session: &str,
    ) -> Result<Subscription, SubscribeError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(SubscribeError::ShuttingDown);
        }
        // futures' channel, not tokio's: it allocates per queued item, while tokio's allocates
        // a block of slots up front, which was a sixth of an idle socket's memory. Its
        // capacity is the buffer plus one per sender (the hub holds the only one).
        let (tx, rx) = futures_channel::mpsc::channel(self.config.queue - 1);
        let (close_tx, close) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let came_online = {
            let mut users = self.lock();
            let entry = users.entry(user_id.to_owned()).or_default();
            if entry.conns.len() >= self.config.max_connections_per_user {
                return Err(SubscribeError::TooMany);
            }
            // Most users have one connection: room for exactly that, not the four a first
            // push would make.
            entry.conns.reserve_exact(1);
            entry.conns.push(Conn { id, session: session.to_owned(), tx, close: Some(close_tx) });
            entry.generation += 1;
            let came_online = !entry.online;
            entry.online = true;
            came_online
        };
        if came_online {
            let _ = self.presence.send(PresenceChange::Online(user_id.to_owned()));
        }
        Ok(Subscription { rx, close, hub: self.clone(), user_id: user_id.to_owned(), id })
    }

    fn unregister(self: &std::sync::Arc<Self>, user_id: &str, id: u64) {
        let generation = {
            let mut users = self.lock();
            let Some(entry) = users.get_mut(user_id) else { return };
            entry.conns.retain(|c| c.id != id);
            entry.generation += 1;
            if !entry.conns.is_empty() {
                return;
            }
            entry.generation
        };
        // The last connection closed: offline once the grace period passes without a new one.
        let hub = self.clone();
        let user_id = user_id.to_owned();
        let grace = self.config.presence_grace;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                hub.expire_presence(&user_id, generation);
            });
        }
    }

    fn expire_presence(&self, user_id: &str, generation: u64) {
        let went_offline = {
            let mut users = self.lock();
            match users.get(user_id) {
                Some(entry) if entry.generation == generation && entry.conns.is_empty() => {
                    users.remove(user_id);
                    true
                }
                _ => false,
            }
        };
        if went_offline {
            let _ = self.presence.send(PresenceChange::Offline(user_id.to_owned()));
        }
    }

    /// Closes `user_id`'s connections opened by any of `sessions` (token hashes) with
    /// [`CloseReason::Revoked`].
    pub fn close_sessions(&self, user_id: &str, sessions: &[String]) {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(user_id) else { return };
        for conn in entry.conns.iter_mut().filter(|c| sessions.contains(&c.session)) {
            if let Some(close) = conn.close.take() {
                let _ = close.send(CloseReason::Revoked);
            }
        }
    }

    /// Closes every connection of `users` with `reason`.
    pub fn close_users(&self, users: &[String], reason: CloseReason) {
        let mut map = self.lock();
        for user in users {
            if let Some(entry) = map.get_mut(user) {
                for conn in &mut entry.conns {
                    if let Some(close) = conn.close.take() {
                        let _ = close.send(reason);
                    }
                }
            }
        }
    }

    /// Closes every connection with `reason` (new ones are still accepted).
    pub fn close_all(&self, reason: CloseReason) {
        let mut map = self.lock();
        for entry in map.values_mut() {
            for conn in &mut entry.conns {
                if let Some(close) = conn.close.take() {
                    let _ = close.send(reason);
                }
            }
        }
    }

    /// Whether `user_id` has a connection (or closed the last one within the grace period).
    pub fn is_online(&self, user_id: &str) -> bool {
        self.lock().get(user_id).is_some_and(|u| u.online)
    }

    /// Users with a connection here (or within their grace period).
    pub fn online_users(&self) -> Vec<String> {
        self.lock().iter().filter(|(_, u)| u.online).map(|(id, _)| id.clone()).collect()
    }

    /// How many connections are open, for metrics and tests.
    pub fn connection_count(&self) -> usize {
        self.lock().values().map(|u| u.conns.len()).sum()
    }

    /// Delivers an ephemeral frame (typing, presence) to every connection of `users`.
    pub fn send_ephemeral(&self, users: &[String], frame: Utf8Bytes) {
        let mut map = self.lock();
        for user in users {
            if let Some(entry) = map.get_mut(user) {
                deliver(entry, &Outgoing::Ephemeral(frame.clone()));
            }
        }
    }

    /// Closes every connection with [`CloseReason::Shutdown`] and refuses new ones.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let mut map = self.lock();
        for entry in map.values_mut() {
            for conn in &mut entry.conns {
                if let Some(close) = conn.close.take() {
                    let _ = close.send(CloseReason::Shutdown);
                }
            }
        }
    }
}

/// Pushes `item` to each of a user's connections without waiting; one whose queue is full is
/// told to close as too slow.
fn deliver(entry: &mut UserConns, item: &Outgoing) {
    for conn in &mut entry.conns {
        if conn.close.is_none() {
            continue; // already told to close
        }
        match conn.tx.try_send(item.clone()) {
            Ok(()) => {}
            Err(e) if e.is_full() => {
                if let Some(close) = conn.close.take() {
                    let _ = close.send(CloseReason::Lagging);
                }
            }
            // The connection is going away; its Subscription's drop will unregister it.
            Err(_) => {}
        }
    }
}

impl EventSink for Hub {
    fn publish(&self, events: Vec<Published>) {
        let mut map = self.lock();
        for event in events {
            let frame = Utf8Bytes::from(event.frame);
            let item = Outgoing::Durable { id: event.id, frame };
            for user in &event.recipients {
                if let Some(entry) = map.get_mut(user) {
                    deliver(entry, &item);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn hub(queue: usize) -> (Arc<Hub>, mpsc::UnboundedReceiver<PresenceChange>) {
        let (hub, presence) = Hub::new(HubConfig {
            queue,
            max_connections_per_user: 2,
            presence_grace: Duration::from_millis(10),
        });
        (Arc::new(hub), presence)
    }

    fn event(id: i64, to: &str) -> Published {
        Published { id, recipients: vec![to.into()], frame: format!("{{\"n\":{id}}}") }
    }

    #[tokio::test]
    async fn events_reach_only_their_recipients() {
        let (hub, _presence) = hub(8);
        let mut alice = hub.subscribe("alice", "s").expect("subscribe");
        let mut eve = hub.subscribe("eve", "s").expect("subscribe");

        hub.publish(vec![event(1, "alice")]);

        assert!(matches!(alice.rx.try_recv(), Ok(Outgoing::Durable { id: 1, .. })));
        assert!(eve.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_closes_the_slow_connection_only() {
        let (hub, _presence) = hub(1);
        let mut slow = hub.subscribe("bob", "s").expect("subscribe");
        let mut fast = hub.subscribe("bob", "s").expect("subscribe");

        hub.publish(vec![event(1, "bob")]);
        assert!(fast.rx.try_recv().is_ok());
        hub.publish(vec![event(2, "bob")]);

        assert_eq!(slow.close.try_recv(), Ok(CloseReason::Lagging));
        assert!(fast.close.try_recv().is_err());
        assert!(matches!(fast.rx.try_recv(), Ok(Outgoing::Durable { id: 2, .. })));
    }

    #[tokio::test]
    async fn the_connection_limit_is_per_user() {
        let (hub, _presence) = hub(1);
        let _a = hub.subscribe("bob", "s").expect("first");
        let _b = hub.subscribe("bob", "s").expect("second");

        assert!(matches!(hub.subscribe("bob", "s"), Err(SubscribeError::TooMany)));
        assert!(hub.subscribe("carol", "s").is_ok());
    }

    #[tokio::test]
    async fn presence_goes_offline_after_the_grace_period_of_the_last_connection() {
        let (hub, mut presence) = hub(1);
        let first = hub.subscribe("bob", "s").expect("subscribe");
        assert_eq!(presence.recv().await, Some(PresenceChange::Online("bob".into())));

        drop(first);

        assert!(hub.is_online("bob"));
        assert_eq!(presence.recv().await, Some(PresenceChange::Offline("bob".into())));
        assert!(!hub.is_online("bob"));
    }
}
