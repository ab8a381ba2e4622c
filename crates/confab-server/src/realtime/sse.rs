//! # `GET /api/events`: the Server-Sent Events transport.
//!
//! One `data:` line per frame (`{"type", "payload", "cursor"?}`, read it in `onmessage`), with
//! `id:` set to the cursor on durable events, so a browser's `EventSource` resumes by itself
//! through `Last-Event-ID`. The stream ends on shutdown or when the client falls behind; the
//! browser reconnects and resumes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::FeedItem;
use super::ws::StreamParams;
use crate::api::AppState;
use crate::api::client::Caller;
use crate::api::extract::AppQuery;
use crate::service::AuthUser;

/// Frames buffered between the feed and the HTTP body.
const BUFFER: usize = 64;

/// # `GET /api/events?cursor=`
/// `Last-Event-ID` (sent by browsers on reconnect) wins over `cursor`.
#[utoipa::path(get, path = "/api/events", tag = "realtime", params(StreamParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An event stream (text/event-stream)"),
        (status = 401, description = "Not signed in", body = confab_proto::ErrorBody),
        (status = 429, description = "Too many connections for this user, or connection attempts from this address", body = confab_proto::ErrorBody),
    ))]
pub async fn events(
    State(app): State<AppState>,
    caller: Caller,
    user: AuthUser,
    headers: HeaderMap,
    AppQuery(params): AppQuery<StreamParams>,
) -> Response {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let cursor = last_event_id.or(params.cursor.as_deref());
    let opened = match app.service.open_feed(&user, caller.meta.ip, cursor).await {
        Ok(opened) => opened,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(BUFFER);
    let mut feed = opened.feed;
    let start = feed.cursor();
    let token_hash = user.token_hash.clone();
    let every = app.service.session_check_every();
    tokio::spawn(async move {
        // A sign-out closes its streams at once; a session that ends by its expiry or by
        // disuse ends them at the next check.
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // A resync's id is the cursor to continue from, as for `ready`: a browser that
        // reconnects before the next event must not be sent back to its stale cursor.
        let first = SseEvent::default().data(opened.first.as_str()).id(start);
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let item = tokio::select! {
                item = feed.next() => item,
                () = tx.closed() => return, // the client went away
                _ = check.tick() => match app.service.session_stands(&token_hash).await {
                    Ok(false) => return,
                    _ => continue,
                },
            };
            let event = match item {
                Ok(FeedItem::Frame { frame, cursor }) => {
                    let event = SseEvent::default().data(frame.as_str());
                    match cursor {
                        Some(cursor) => event.id(cursor),
                        None => event,
                    }
                }
                // Ending the stream makes the browser reconnect with Last-Event-ID.
                Ok(FeedItem::Close(_)) => return,
                Err(e) => {
                    tracing::warn!(error = ?e, "event stream failed");
                    return;
                }
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies such as nginx must pass each event on at once.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    // Like every API answer, and stricter than axum's `no-cache`: events carry private data.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
