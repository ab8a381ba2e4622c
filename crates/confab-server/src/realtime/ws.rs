//! # `GET /api/ws`: the WebSocket transport.
//!
//! Server → client: text frames `{"type", "payload", "cursor"?}`; the first is `ready` (or
//! `resync_required`). Client → server: `typing`, `delivered`, `send` (answered by `ack` or
//! `error`), `ping` (answered by `pong`). The server pings every 20 s and closes a socket that
//! has said nothing for 60 s. Close codes: 1012 on shutdown, 4008 when the client fell behind
//! (both mean "reconnect and resume from your last cursor"), 4001 when idle.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
    rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_proto::{Ack, ClientFrame, Event, FrameError, SendMessage};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;

use super::{CloseReason, FeedItem, frame_text};
use crate::api::AppState;
use crate::api::client::Caller;
use crate::api::error::error_response;
use crate::api::extract::AppQuery;
use crate::service::{AuthUser, ServiceError};

const PING_EVERY: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A send that cannot reach the client in this time means the connection is dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame a client may send: a message of the largest size, JSON-escaped, fits.
const MAX_CLIENT_FRAME: usize = 256 * 1024;

pub const CLOSE_SHUTDOWN: u16 = 1012;
/// RFC 6455's "message too big": a client frame over [`MAX_CLIENT_FRAME`].
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_LAGGING: u16 = 4008;
pub const CLOSE_IDLE: u16 = 4001;
/// The session was signed out or revoked: reconnecting with it will fail; sign in again.
pub const CLOSE_REVOKED: u16 = 4003;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this cursor (the last one you saw); omit to start from now.
    pub cursor: Option<String>,
}

/// A cookie-authenticated upgrade must come from our own origin: a page elsewhere could
/// otherwise open a socket with the victim's cookie (cross-site WebSocket hijacking).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    !host.is_empty() && origin_authority.eq_ignore_ascii_case(host)
}

/// # `GET /api/ws?cursor=`
#[utoipa::path(get, path = "/api/ws", tag = "realtime", params(StreamParams),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "Not signed in", body = confab_proto::ErrorBody),
        (status = 403, description = "Cookie-authenticated upgrade from another origin", body = confab_proto::ErrorBody),
        (status = 429, description = "Too many connections for this user, or connection attempts from this address", body = confab_proto::ErrorBody),
    ))]
pub async fn websocket(
    State(app): State<AppState>,
    caller: Caller,
    user: AuthUser,
    headers: HeaderMap,
    AppQuery(params): AppQuery<StreamParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_input", e.body_text());
        }
    };
    if user.via_cookie && !same_origin(&headers) {
        return ServiceError::Forbidden("cross-origin WebSocket refused").into_response();
    }
    let opened = match app.service.open_feed(&user, caller.meta.ip, params.cursor.as_deref()).await
    {
        Ok(opened) => opened,
        Err(e) => return e.into_response(),
    };
    upgrade
        // Grown as a frame needs; most client frames are a few hundred bytes, and this
        // buffer is most of an idle socket's memory.
        .read_buffer_size(256)
        .write_buffer_size(4096)
        .max_message_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| run(socket, app, user, opened))
}

/// Sends one frame; false when the client is gone or too slow to take it.
async fn send(sink: &mut SplitSink<WebSocket, Message>, msg: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, sink.send(msg)).await, Ok(Ok(())))
}

async fn run(socket: WebSocket, app: AppState, user: AuthUser, opened: super::feed::Opened) {
    let (mut sink, mut stream) = socket.split();
    let mut feed = opened.feed;
    if !send(&mut sink, Message::Text(opened.first)).await {
        return;
    }
    // The first ping after a random part of the period: sockets opened together (every client
    // of a restarted server) would otherwise ping together ever after, in bursts that delay
    // everything else the server does at that moment.
    // Each tick also checks the session (no timer of its own: it would be memory on every
    // idle socket); the period is shorter only where sessions end within a minute (tests).
    let period = PING_EVERY.min(app.service.session_check_every());
    let first = period.mul_f64(rand::random_range(0.5..1.5));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            item = feed.next() => match item {
                Ok(FeedItem::Frame { frame, .. }) => {
                    if !send(&mut sink, Message::Text(frame)).await {
                        return;
                    }
                }
                Ok(FeedItem::Close(CloseReason::Shutdown)) => {
                    break Some((CLOSE_SHUTDOWN, "server restarting: reconnect and resume"));
                }
                Ok(FeedItem::Close(CloseReason::Lagging)) => {
                    break Some((CLOSE_LAGGING, "too slow: reconnect and resume from your cursor"));
                }
                Ok(FeedItem::Close(CloseReason::Revoked)) => {
                    break Some((CLOSE_REVOKED, "session ended: sign in again"));
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "event stream failed");
                    break Some((1011, "internal error: reconnect and resume"));
                }
            },
            incoming = stream.next() => match incoming {
                Some(Err(e)) if frame_too_large(&e) => {
                    let message = format!("a frame is at most {} KiB", MAX_CLIENT_FRAME / 1024);
                    let reply = error_frame("payload_too_large", &message, None);
                    if !send(&mut sink, Message::Text(reply)).await {
                        return;
                    }
                    break Some((CLOSE_TOO_BIG, "frame too large"));
                }
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    // Boxed: the state of a send is large, and inlined it would be part
                    // of every idle connection's task.
                    if let Some(reply) =
                        Box::pin(handle_client_frame(&app, &user, text.as_str())).await
                        && !send(&mut sink, Message::Text(reply)).await
                    {
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    last_heard = Instant::now();
                    let reply = error_frame("invalid_input", "frames are JSON text", None);
                    if !send(&mut sink, Message::Text(reply)).await {
                        return;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break Some((CLOSE_IDLE, "idle timeout"));
                }
                // A sign-out closes its streams at once; a session that ends by its expiry or
                // by disuse ends them here. (Boxed: inlined, the check's state would be part of
                // every idle connection's task.)
                if let Ok(false) = Box::pin(app.service.session_stands(&user.token_hash)).await {
                    break Some((CLOSE_REVOKED, "session ended: sign in again"));
                }
                if !send(&mut sink, Message::Ping(Default::default())).await {
                    return;
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        let _ = send(&mut sink, Message::Close(Some(frame))).await;
    }
}

/// Whether the socket failed on a client frame over [`MAX_CLIENT_FRAME`] (the frame is not
/// read; the connection can still say why before it closes).
fn frame_too_large(error: &axum::Error) -> bool {
    let cause = std::error::Error::source(error);
    matches!(
        cause.and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

fn error_frame(code: &str, message: &str, client_id: Option<String>) -> Utf8Bytes {
    frame_text(&Event::Error(FrameError {
        code: code.to_owned(),
        message: message.to_owned(),
        client_id,
    }))
}

/// Handles one client frame; answers with a frame when there is something to say.
async fn handle_client_frame(app: &AppState, user: &AuthUser, text: &str) -> Option<Utf8Bytes> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => {
            return Some(error_frame("invalid_input", &format!("unreadable frame: {e}"), None));
        }
    };
    let service = &app.service;
    let failed = |e: ServiceError, client_id: Option<String>| {
        let (_, code) = e.status_and_code();
        let message = match &e {
            ServiceError::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        };
        if let ServiceError::Internal(cause) = &e {
            tracing::error!(error = ?cause, "WebSocket frame failed");
        }
        Some(error_frame(code, &message, client_id))
    };
    match frame {
        ClientFrame::Ping => Some(Utf8Bytes::from_static(r#"{"type":"pong","payload":{}}"#)),
        ClientFrame::Typing { conversation_id, typing } => {
            match service.set_typing(user, &conversation_id, typing).await {
                Ok(()) => None,
                Err(e) => failed(e, None),
            }
        }
        ClientFrame::Delivered { conversation_id, seq } => {
            match service.mark_delivered(user, &conversation_id, seq).await {
                Ok(_) => None,
                Err(e) => failed(e, None),
            }
        }
        ClientFrame::Send { conversation_id, content, client_id, reply_to } => {
            let body = SendMessage { content, client_id: client_id.clone(), reply_to };
            match service.send_message(user, &conversation_id, body).await {
                Ok(sent) => Some(frame_text(&Event::Ack(Ack { client_id, message: sent.value }))),
                Err(e) => failed(e, client_id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn origins_must_match_the_host() {
        assert!(same_origin(&headers(&[
            ("host", "chat.example:8080"),
            ("origin", "https://chat.example:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "chat.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[("origin", "https://evil.example")])));
        assert!(same_origin(&headers(&[("host", "chat.example")])));
    }
}
