//! Real-time delivery. `hub` keeps the registry of open connections and fans committed events
//! out to them; `feed` merges a client's missed events (replayed from the database) with live
//! ones, exactly once and in order; `typing` holds the ephemeral typing state; `ws`, `sse` and
//! `poll` are the three transports, each a thin loop over a `Feed`.
//!
//! The database event log is the source of truth. The hub only delivers what the single
//! writer publishes after each commit, in commit order. A connection that cannot keep up is
//! cut with a reason that tells the client to resume from its cursor: nobody is ever skipped
//! silently, and no slow reader slows a sender. See docs/architecture.md.

pub mod feed;
pub mod hub;
pub mod poll;
pub mod sse;
pub mod typing;
pub mod ws;

pub use feed::{Feed, FeedItem};

use axum::extract::ws::Utf8Bytes;
use confab_proto::{Event, Frame};

/// The wire text of an event without a cursor (ephemeral events, answers, first frames).
pub fn frame_text(event: &Event) -> Utf8Bytes {
    // Serializing our own proto types cannot fail; an empty frame would be dropped by clients.
    Utf8Bytes::from(serde_json::to_string(&Frame::new(event, None)).unwrap_or_default())
}
pub use hub::{CloseReason, Hub, HubConfig, PresenceChange};
