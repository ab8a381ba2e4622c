//! The bus: carries what one node commits or decides to the nodes where the recipients are
//! connected. Without Redis it is the local hub itself. With `--redis-url`, every node publishes
//! durable events, ephemeral frames (typing, presence) and session revocations to one Redis
//! channel and every node (itself included) delivers what it receives to its own hub.
//!
//! Redis pub/sub is at-most-once and unordered across publishers, so the bus is a fast path,
//! never the source of truth: the database event log is. Three rules keep delivery exact:
//!
//! - **Order.** Event ids are assigned in commit order (one writer at a time), so each node
//!   delivers durable events strictly in id order, holding early arrivals back until the
//!   missing ids arrive.
//! - **Gaps.** If a missing id has not arrived after [`GAP_WAIT`], the node asks the database:
//!   an id that does not exist (a rolled-back transaction) is skipped; one that exists was lost
//!   on the way, and every local connection is closed with "lagging" so its client resumes
//!   from its cursor and reads it from the database. An event arriving after its id was passed
//!   does the same for its recipients.
//! - **Outages.** When Redis cannot be reached, a node delivers its own events locally (its
//!   clients keep working) and keeps trying; when its subscription comes back it closes its
//!   connections the same way, so clients fetch whatever they missed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, mpsc};

use crate::realtime::Hub;
use crate::realtime::hub::CloseReason;
use crate::store::{EventSink, Published, Store};

/// How long a node waits for a missing event id before asking the database about it.
pub const GAP_WAIT: Duration = Duration::from_millis(200);
/// A Redis command that takes longer than this counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages waiting to be published before new ones are delivered locally instead.
const PUBLISH_QUEUE: usize = 65_536;

/// What travels on the channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum BusMessage {
    Durable { id: i64, recipients: Vec<String>, frame: String },
    Ephemeral { users: Vec<String>, frame: String },
    Revoke { user: String, sessions: Vec<String> },
}

/// A session revocation received from another node (or this one), for the session cache.
pub type Revocation = (String, Vec<String>);

pub struct Bus {
    hub: Arc<Hub>,
    /// This node's name in shared state (random per process).
    node: String,
    redis: Option<Redis>,
    revocations: mpsc::UnboundedSender<Revocation>,
}

struct Redis {
    client: redis::Client,
    channel: String,
    prefix: String,
    publish: mpsc::Sender<BusMessage>,
    /// Taken by [`Bus::start`].
    publish_rx: std::sync::Mutex<Option<mpsc::Receiver<BusMessage>>>,
    /// Whether the subscription is live (for logs and tests).
    subscribed: Arc<AtomicBool>,
    connection: OnceCell<redis::aio::ConnectionManager>,
}

impl Bus {
    /// The bus of one node, and where revocations from all nodes arrive. `redis_url` with
    /// `prefix` (which names this cluster's keys and channel) joins the Redis bus.
    pub fn new(
        hub: Arc<Hub>,
        redis_url: Option<&str>,
        prefix: &str,
    ) -> anyhow::Result<(Bus, mpsc::UnboundedReceiver<Revocation>)> {
        let (revocations, revocations_rx) = mpsc::unbounded_channel();
        let redis = match redis_url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("--redis-url {url:?}: {e}"))?;
                let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
                Some(Redis {
                    client,
                    channel: format!("{prefix}:bus"),
                    prefix: prefix.to_owned(),
                    publish,
                    publish_rx: std::sync::Mutex::new(Some(publish_rx)),
                    subscribed: Arc::new(AtomicBool::new(false)),
                    connection: OnceCell::new(),
                })
            }
        };
        let node = uuid::Uuid::new_v4().simple().to_string();
        Ok((Bus { hub, node, redis, revocations }, revocations_rx))
    }

    /// This node's name in shared state.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether events cross nodes through Redis.
    pub fn is_distributed(&self) -> bool {
        self.redis.is_some()
    }

    /// The key prefix of this cluster in Redis, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.redis.as_ref().map(|r| r.prefix.as_str())
    }

    /// A Redis connection for other shared state (presence, rate limits); reconnects by itself.
    pub async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let redis = self.redis.as_ref()?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        redis
            .connection
            .get_or_try_init(|| redis.client.get_connection_manager_with_config(config))
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot connect to Redis"))
            .ok()
            .cloned()
    }

    /// Starts the publisher and subscriber tasks (with Redis); `store` answers questions about
    /// gaps in the event sequence.
    pub fn start(self: &Arc<Self>, store: Arc<dyn Store>) {
        let Some(redis) = &self.redis else { return };
        let Some(rx) = redis.publish_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        tokio::spawn(publisher(Arc::downgrade(self), rx));
        tokio::spawn(subscriber(Arc::downgrade(self), store));
    }

    /// Delivers an ephemeral frame to every connection of `users`, on every node.
    pub fn send_ephemeral(&self, users: &[String], frame: Utf8Bytes) {
        match &self.redis {
            None => self.hub.send_ephemeral(users, frame),
            Some(_) => self.send(BusMessage::Ephemeral {
                users: users.to_vec(),
                frame: frame.as_str().to_owned(),
            }),
        }
    }

    /// Signs sessions out on every node: their cached entries go and their sockets close.
    pub fn revoke_sessions(&self, user: &str, sessions: &[String]) {
        // This node at once, whatever happens to Redis.
        self.apply_revocation(user.to_owned(), sessions.to_vec());
        if self.redis.is_some() {
            self.send(BusMessage::Revoke { user: user.to_owned(), sessions: sessions.to_vec() });
        }
    }

    fn apply_revocation(&self, user: String, sessions: Vec<String>) {
        self.hub.close_sessions(&user, &sessions);
        let _ = self.revocations.send((user, sessions));
    }

    /// Queues `message` for Redis; delivers it locally when it cannot be queued.
    fn send(&self, message: BusMessage) {
        let Some(redis) = &self.redis else { return self.deliver_local(message) };
        if let Err(e) = redis.publish.try_send(message) {
            let message = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            self.deliver_local(message);
        }
    }

    /// Applies a message on this node only.
    fn deliver_local(&self, message: BusMessage) {
        match message {
            BusMessage::Durable { id, recipients, frame } => {
                self.hub.publish(vec![Published { id, recipients, frame }]);
            }
            BusMessage::Ephemeral { users, frame } => {
                self.hub.send_ephemeral(&users, Utf8Bytes::from(frame));
            }
            BusMessage::Revoke { user, sessions } => self.apply_revocation(user, sessions),
        }
    }
}

impl EventSink for Bus {
    fn publish(&self, events: Vec<Published>) {
        if self.redis.is_none() {
            return self.hub.publish(events);
        }
        for e in events {
            self.send(BusMessage::Durable { id: e.id, recipients: e.recipients, frame: e.frame });
        }
    }
}

/// Publishes queued messages in order. A message Redis does not take is delivered locally, so
/// this node's own clients never depend on Redis.
async fn publisher(bus: std::sync::Weak<Bus>, mut rx: mpsc::Receiver<BusMessage>) {
    let mut warned = false;
    while let Some(message) = rx.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        let Some(redis) = &bus.redis else { return };
        let published = match (bus.connection().await, serde_json::to_string(&message)) {
            (Some(mut conn), Ok(text)) => {
                let command = redis::cmd("PUBLISH").arg(&redis.channel).arg(text).to_owned();
                matches!(
                    tokio::time::timeout(REDIS_TIMEOUT, command.query_async::<i64>(&mut conn))
                        .await,
                    Ok(Ok(_))
                )
            }
            _ => false,
        };
        if published {
            warned = false;
        } else {
            if !warned {
                tracing::warn!("Redis unavailable: delivering to this node's clients only");
                warned = true;
            }
            bus.deliver_local(message);
        }
    }
}

/// Durable events in id order, with the gap and late-arrival rules of the module docs.
struct Reorder {
    /// The next id to deliver.
    next: i64,
    pending: BTreeMap<i64, Published>,
    gap_since: Option<Instant>,
}

impl Reorder {
    fn new(head: i64) -> Reorder {
        Reorder { next: head + 1, pending: BTreeMap::new(), gap_since: None }
    }

    /// Takes an arrival; answers the events now deliverable in order, or `Err` with a late
    /// event's recipients.
    fn arrive(&mut self, event: Published) -> Result<Vec<Published>, Vec<String>> {
        if event.id < self.next {
            return Err(event.recipients);
        }
        self.pending.insert(event.id, event);
        Ok(self.drain())
    }

    fn drain(&mut self) -> Vec<Published> {
        let mut out = Vec::new();
        while let Some(event) = self.pending.remove(&self.next) {
            self.next += 1;
            out.push(event);
        }
        self.gap_since = match (self.pending.is_empty(), self.gap_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        out
    }

    /// The missing ids `[next, first pending)` once they have been missing for `GAP_WAIT`.
    fn overdue_gap(&self) -> Option<(i64, i64)> {
        let since = self.gap_since?;
        let first = *self.pending.keys().next()?;
        (since.elapsed() >= GAP_WAIT).then_some((self.next, first))
    }

    /// Gives up on the missing ids: delivery continues after them.
    fn skip_gap(&mut self) -> Vec<Published> {
        if let Some(first) = self.pending.keys().next().copied() {
            self.next = first;
        }
        self.gap_since = None;
        self.drain()
    }
}

/// Subscribes (reconnecting with back-off) and delivers what arrives to the local hub.
async fn subscriber(bus: std::sync::Weak<Bus>, store: Arc<dyn Store>) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let Some(strong) = bus.upgrade() else { return };
        let Some(redis) = &strong.redis else { return };
        let (client, channel) = (redis.client.clone(), redis.channel.clone());
        let subscribed = redis.subscribed.clone();
        drop(strong);
        let pubsub = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = match tokio::time::timeout(REDIS_TIMEOUT, pubsub).await {
            Ok(Ok(p)) => p,
            result => {
                if let Ok(Err(e)) = result {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to Redis");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Subscribed first, then the position: nothing committed in between is missed.
        let head = match store.event_bounds().await {
            Ok(bounds) => bounds.head,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot read the event log head");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let Some(strong) = bus.upgrade() else { return };
        if connected_before {
            // Whatever was published while the subscription was down is only in the database:
            // send every client there.
            tracing::info!("Redis subscription restored; clients resume from their cursors");
            strong.hub.close_all(CloseReason::Lagging);
        }
        drop(strong);
        connected_before = true;
        subscribed.store(true, Ordering::SeqCst);
        run_subscription(&bus, &store, pubsub.into_on_message(), Reorder::new(head)).await;
        subscribed.store(false, Ordering::SeqCst);
        tracing::warn!("Redis subscription lost; reconnecting");
    }
}

async fn run_subscription(
    bus: &std::sync::Weak<Bus>,
    store: &Arc<dyn Store>,
    mut messages: redis::aio::PubSubStream,
    mut order: Reorder,
) {
    let mut tick = tokio::time::interval(GAP_WAIT / 4);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                let Some(bus) = bus.upgrade() else { return };
                let Ok(text) = message.get_payload::<String>() else { continue };
                let Ok(message) = serde_json::from_str::<BusMessage>(&text) else {
                    tracing::warn!("unreadable bus message ignored");
                    continue;
                };
                match message {
                    BusMessage::Durable { id, recipients, frame } => {
                        match order.arrive(Published { id, recipients, frame }) {
                            Ok(ready) if !ready.is_empty() => bus.hub.publish(ready),
                            Ok(_) => {}
                            Err(late) => bus.hub.close_users(&late, CloseReason::Lagging),
                        }
                    }
                    other => bus.deliver_local(other),
                }
            }
            _ = tick.tick() => {
                let Some((from, to)) = order.overdue_gap() else { continue };
                let Some(bus) = bus.upgrade() else { return };
                match store.event_ids_between(from - 1, to - 1).await {
                    Ok(ids) if ids.is_empty() => {}
                    Ok(_) => {
                        tracing::warn!(from, to, "events lost on the bus; clients resume");
                        bus.hub.close_all(CloseReason::Lagging);
                    }
                    Err(e) => {
                        tracing::warn!(error = ?e, "cannot check an event gap; clients resume");
                        bus.hub.close_all(CloseReason::Lagging);
                    }
                }
                let ready = order.skip_gap();
                if !ready.is_empty() {
                    bus.hub.publish(ready);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64) -> Published {
        Published { id, recipients: vec!["u".into()], frame: format!("f{id}") }
    }

    fn ids(events: Vec<Published>) -> Vec<i64> {
        events.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn events_are_delivered_in_id_order_whatever_order_they_arrive_in() {
        let mut order = Reorder::new(10);

        assert_eq!(order.arrive(event(12)).map(ids), Ok(vec![]));
        assert!(order.gap_since.is_some());
        assert_eq!(order.arrive(event(11)).map(ids), Ok(vec![11, 12]));
        assert!(order.gap_since.is_none());
        assert_eq!(order.arrive(event(13)).map(ids), Ok(vec![13]));
    }

    #[test]
    fn a_late_event_is_reported_and_a_skipped_gap_lets_delivery_go_on() {
        let mut order = Reorder::new(0);
        assert_eq!(order.arrive(event(3)).map(ids), Ok(vec![]));
        order.gap_since = Some(Instant::now() - GAP_WAIT);

        assert_eq!(order.overdue_gap(), Some((1, 3)));
        assert_eq!(ids(order.skip_gap()), vec![3]);
        assert!(matches!(order.arrive(event(2)), Err(late) if late == ["u"]));
    }
}

/// Presence across nodes: each node records in Redis which of its users are connected, with an
/// expiry it refreshes while they are; a user is online while any node's record is live. A node
/// that dies stops refreshing, so its users go offline within [`PRESENCE_TTL`], announced by
/// whichever node sweeps their record first.
pub mod presence {
    use std::time::Duration;

    use super::Bus;
    use crate::time::now_ms;

    /// How long a node's record of a connected user lives without a refresh.
    pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
    /// How often records are refreshed and expired ones swept.
    pub const HEARTBEAT: Duration = Duration::from_secs(5);

    fn user_key(prefix: &str, user: &str) -> String {
        format!("{prefix}:presence:{user}")
    }

    fn expiry_key(prefix: &str) -> String {
        format!("{prefix}:presence-expiry")
    }

    fn member(user: &str, node: &str) -> String {
        format!("{user}\n{node}")
    }

    impl Bus {
        /// Whether any other node has a live record of `user`.
        async fn others_online(
            &self,
            conn: &mut redis::aio::ConnectionManager,
            prefix: &str,
            user: &str,
        ) -> redis::RedisResult<bool> {
            let records: Vec<(String, i64)> =
                redis::cmd("HGETALL").arg(user_key(prefix, user)).query_async(conn).await?;
            let now = now_ms();
            Ok(records.iter().any(|(node, expiry)| node != self.node() && *expiry > now))
        }

        async fn record(
            &self,
            conn: &mut redis::aio::ConnectionManager,
            prefix: &str,
            users: &[String],
        ) -> redis::RedisResult<()> {
            let expiry = now_ms() + PRESENCE_TTL.as_millis() as i64;
            let mut pipe = redis::pipe();
            for user in users {
                pipe.cmd("HSET").arg(user_key(prefix, user)).arg(self.node()).arg(expiry).ignore();
                pipe.cmd("PEXPIRE")
                    .arg(user_key(prefix, user))
                    .arg(PRESENCE_TTL.as_millis() as i64 * 4)
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(expiry_key(prefix))
                    .arg(expiry)
                    .arg(member(user, self.node()))
                    .ignore();
            }
            pipe.query_async::<()>(conn).await
        }

        /// This node's first connection of `user` opened: answers whether the user just came
        /// online for everyone (no other node had them). Without Redis (or when it fails), yes.
        pub async fn presence_up(&self, user: &str) -> bool {
            let (Some(prefix), Some(mut conn)) = (self.prefix(), self.connection().await) else {
                return true;
            };
            let result = async {
                let others = self.others_online(&mut conn, prefix, user).await?;
                self.record(&mut conn, prefix, &[user.to_owned()]).await?;
                redis::RedisResult::Ok(!others)
            };
            result.await.unwrap_or(true)
        }

        /// This node's last connection of `user` is gone (grace period over): answers whether
        /// the user is now offline everywhere.
        pub async fn presence_down(&self, user: &str) -> bool {
            let (Some(prefix), Some(mut conn)) = (self.prefix(), self.connection().await) else {
                return true;
            };
            let result = async {
                let mut pipe = redis::pipe();
                pipe.cmd("HDEL").arg(user_key(prefix, user)).arg(self.node()).ignore();
                pipe.cmd("ZREM").arg(expiry_key(prefix)).arg(member(user, self.node())).ignore();
                pipe.query_async::<()>(&mut conn).await?;
                Ok::<bool, redis::RedisError>(!self.others_online(&mut conn, prefix, user).await?)
            };
            result.await.unwrap_or(true)
        }

        /// Whether `user` is connected to any node.
        pub async fn is_online(&self, user: &str) -> bool {
            if self.hub.is_online(user) {
                return true;
            }
            let (Some(prefix), Some(mut conn)) = (self.prefix(), self.connection().await) else {
                return false;
            };
            self.others_online(&mut conn, prefix, user).await.unwrap_or(false)
        }

        /// Refreshes this node's records; answers users whose every record expired (their
        /// nodes died), removed here so that exactly one node reports each.
        pub async fn presence_heartbeat(&self) -> Vec<String> {
            let (Some(prefix), Some(mut conn)) = (self.prefix(), self.connection().await) else {
                return Vec::new();
            };
            let local = self.hub.online_users();
            if !local.is_empty()
                && let Err(e) = self.record(&mut conn, prefix, &local).await
            {
                tracing::warn!(error = %e, "cannot refresh presence in Redis");
                return Vec::new();
            }
            let now = now_ms();
            let expired: Vec<String> = match redis::cmd("ZRANGEBYSCORE")
                .arg(expiry_key(prefix))
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .query_async(&mut conn)
                .await
            {
                Ok(members) => members,
                Err(_) => return Vec::new(),
            };
            let mut gone = Vec::new();
            for m in expired {
                let Some((user, node)) = m.split_once('\n') else { continue };
                let removed: i64 = redis::cmd("ZREM")
                    .arg(expiry_key(prefix))
                    .arg(&m)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(0);
                if removed != 1 {
                    continue; // another node took it
                }
                let _: redis::RedisResult<i64> = redis::cmd("HDEL")
                    .arg(user_key(prefix, user))
                    .arg(node)
                    .query_async(&mut conn)
                    .await;
                let others = self.others_online(&mut conn, prefix, user).await.unwrap_or(true);
                if !others && !self.hub.is_online(user) {
                    gone.push(user.to_owned());
                }
            }
            gone
        }
    }

    const _: () = assert!(HEARTBEAT.as_millis() * 2 < PRESENCE_TTL.as_millis());
}
