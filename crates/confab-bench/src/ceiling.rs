//! The ceiling: a minimal broadcast server with the same shape as Confab's hot path and none
//! of its work (no authentication, no storage, no event log). Built on the same axum, tokio and
//! tungstenite as Confab, with the same WebSocket buffer sizes, so the difference between the
//! two is what Confab does, not what the machine or the libraries cost.
//!
//! - `GET /ws?rooms=a,b`: a WebSocket that receives every message posted to those rooms; its
//!   first frame is `{"type":"ready"}`. A `send` frame on it (Confab's: `{"type":"send",
//!   "payload":{"conversation_id","content","client_id"}}`) is published like `POST /send` and
//!   answered on the same socket by an `ack` frame carrying the message.
//! - `POST /send/{room}` with Confab's send body: builds a `new_message` frame shaped like
//!   Confab's, queues it to every subscriber (bounded queues; a full one drops), answers 201
//!   with the message.
//! - `GET /page`: a fixed page of 50 messages shaped like Confab's history page.
//! - `GET /healthz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

/// Frames waiting for one socket before further ones are dropped (Confab's default queue).
const QUEUE: usize = 1024;

struct Ceiling {
    rooms: Mutex<HashMap<String, Vec<mpsc::Sender<Utf8Bytes>>>>,
    seq: AtomicI64,
    page: String,
}

#[derive(serde::Deserialize)]
struct SendBody {
    content: String,
    client_id: Option<String>,
}

fn message(room: &str, seq: i64, content: &str, client_id: Option<&str>) -> serde_json::Value {
    json!({
        "id": format!("0197c0de-0000-7000-8000-{seq:012}"),
        "conversation_id": room,
        "sender_id": "0197c0de-0000-7000-8000-000000000000",
        "content": content,
        "created_at": "2026-11-28T12:00:00.000Z",
        "seq": seq,
        "client_id": client_id,
        "reply_to": null,
        "edited_at": null,
        "deleted": false,
    })
}

/// Serves until the process is killed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let messages: Vec<_> = (1..=50)
        .map(|seq| {
            message(
                "room",
                seq,
                &format!(
                    "message {seq} of a preloaded conversation, about as long as a short chat line"
                ),
                None,
            )
        })
        .collect();
    let page = json!({"messages": messages, "has_more": true}).to_string();
    let state =
        Arc::new(Ceiling { rooms: Mutex::new(HashMap::new()), seq: AtomicI64::new(0), page });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws", get(socket))
        .route("/send/{room}", post(send))
        .route("/page", get(page_handler))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // As Confab does: each frame leaves when written (no Nagle delay behind an earlier one).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn send(
    State(state): State<Arc<Ceiling>>,
    Path(room): Path<String>,
    axum::Json(body): axum::Json<SendBody>,
) -> Response {
    let message = publish(&state, &room, &body.content, body.client_id.as_deref());
    (StatusCode::CREATED, axum::Json(message)).into_response()
}

/// Builds the message, queues its `new_message` frame to every subscriber of `room` (a full
/// queue drops it) and answers the message.
fn publish(
    state: &Ceiling,
    room: &str,
    content: &str,
    client_id: Option<&str>,
) -> serde_json::Value {
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let message = message(room, seq, content, client_id);
    let frame = Utf8Bytes::from(json!({"type": "new_message", "payload": &message}).to_string());
    let mut rooms = state.rooms.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(subscribers) = rooms.get_mut(room) {
        subscribers.retain(|tx| !tx.is_closed());
        for tx in subscribers.iter() {
            let _ = tx.try_send(frame.clone());
        }
    }
    message
}

/// A `send` frame, as Confab's WebSocket takes it.
#[derive(serde::Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
enum ClientFrame {
    Send { conversation_id: String, content: String, client_id: Option<String> },
}

async fn page_handler(State(state): State<Arc<Ceiling>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.page.clone()).into_response()
}

async fn socket(
    State(state): State<Arc<Ceiling>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let rooms: Vec<String> = query
        .get("rooms")
        .map(|r| r.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |ws| run(ws, state, rooms))
}

async fn run(ws: WebSocket, state: Arc<Ceiling>, rooms: Vec<String>) {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    {
        let mut map = state.rooms.lock().unwrap_or_else(|p| p.into_inner());
        for room in rooms {
            map.entry(room).or_default().push(tx.clone());
        }
    }
    // Held for the socket's life, so a socket without rooms stays open.
    let _keep = tx;
    let (mut sink, mut stream) = ws.split();
    if sink
        .send(Message::Text(Utf8Bytes::from_static(r#"{"type":"ready","payload":{}}"#)))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => {
                    if sink.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(text))) => {
                    let Ok(ClientFrame::Send { conversation_id, content, client_id }) =
                        serde_json::from_str(text.as_str())
                    else {
                        continue;
                    };
                    let message = publish(&state, &conversation_id, &content, client_id.as_deref());
                    // `type` first, as Confab writes its frames.
                    let ack = format!(
                        r#"{{"type":"ack","payload":{{"client_id":{},"message":{message}}}}}"#,
                        json!(client_id)
                    );
                    if sink.send(Message::Text(Utf8Bytes::from(ack))).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
