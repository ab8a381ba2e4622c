//! Real-time clients: WebSocket ([`WsStream`]), Server-Sent Events ([`SseStream`]) and
//! long-poll ([`Client::poll_events`]). Each yields [`Frame`]s and remembers the cursor of the
//! last durable event, so a reconnect resumes exactly where the previous connection stopped.

use std::time::Duration;

use confab_proto::{ClientFrame, Frame, PollResponse};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Client, ClientError, Result};

/// How long `next_frame` waits before giving up: a hang guard, not a speed requirement.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

fn bad(e: impl std::fmt::Display) -> ClientError {
    ClientError::Decode(e.to_string())
}

impl Client {
    fn stream_url(&self, path: &str, cursor: Option<&str>) -> String {
        let mut url = format!("{}{}", self.base_url(), path);
        if let Some(cursor) = cursor {
            url.push_str("?cursor=");
            url.push_str(&crate::encode_segment(cursor));
        }
        url
    }

    /// Opens the WebSocket stream, resuming after `cursor` when given.
    pub async fn connect_ws(&self, cursor: Option<&str>) -> Result<WsStream> {
        let url = self.stream_url("/api/ws", cursor).replacen("http", "ws", 1);
        let mut request = url.as_str().into_client_request().map_err(bad)?;
        if let Some(token) = self.token() {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(bad)?;
            request.headers_mut().insert("authorization", value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => ClientError::Api {
                status: response.status().as_u16(),
                code: "websocket_refused".into(),
                message: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            },
            other => bad(other),
        })?;
        Ok(WsStream {
            ws,
            client: self.clone(),
            cursor: cursor.map(str::to_owned),
            close_code: None,
        })
    }

    /// Opens the SSE stream, resuming after `cursor` when given (sent as `Last-Event-ID`).
    pub async fn connect_sse(&self, cursor: Option<&str>) -> Result<SseStream> {
        let mut request = self.raw(reqwest::Method::GET, "/api/events");
        if let Some(cursor) = cursor {
            request = request.header("last-event-id", cursor);
        }
        let response = request.timeout(Duration::from_secs(24 * 3600)).send().await?;
        let response = crate::expect_status(response, &[200]).await?;
        Ok(SseStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            cursor: cursor.map(str::to_owned),
        })
    }

    /// One long-poll: events after `cursor` (waiting up to `timeout_secs` for the first), and
    /// the cursor to pass next time. Without a cursor, answers the current one at once.
    pub async fn poll_events(
        &self,
        cursor: Option<&str>,
        timeout_secs: u64,
    ) -> Result<PollResponse> {
        let mut query = vec![("timeout", timeout_secs.to_string())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let response = self
            .raw(reqwest::Method::GET, "/api/events/poll")
            .query(&query)
            .timeout(Duration::from_secs(timeout_secs + 30))
            .send()
            .await?;
        let response = crate::expect_status(response, &[200]).await?;
        let text = response.text().await?;
        serde_json::from_str(&text).map_err(bad)
    }
}

/// A WebSocket event stream.
pub struct WsStream {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    client: Client,
    cursor: Option<String>,
    close_code: Option<u16>,
}

impl WsStream {
    /// The next frame; `Ok(None)` once the server closed the socket (see [`Self::close_code`]).
    /// Fails if nothing arrives within [`RECEIVE_TIMEOUT`].
    pub async fn next_frame(&mut self) -> Result<Option<Frame>> {
        self.next_frame_within(RECEIVE_TIMEOUT).await
    }

    /// Like [`Self::next_frame`] with another time limit; `Err` with code `timeout` when it
    /// passes.
    pub async fn next_frame_within(&mut self, limit: Duration) -> Result<Option<Frame>> {
        loop {
            let message = match tokio::time::timeout(limit, self.ws.next()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(bad(e)),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                WsMessage::Text(text) => {
                    let frame: Frame = serde_json::from_str(text.as_str()).map_err(bad)?;
                    if let Some(cursor) = &frame.cursor {
                        self.cursor = Some(cursor.clone());
                    }
                    if frame.kind == "ready"
                        && let Some(c) = frame.payload.get("cursor").and_then(|c| c.as_str())
                    {
                        self.cursor = Some(c.to_owned());
                    }
                    return Ok(Some(frame));
                }
                WsMessage::Close(close) => {
                    self.close_code = Some(close.map_or(1005, |c| u16::from(c.code)));
                    return Ok(None);
                }
                // tungstenite answers pings itself.
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind`, skipping others (a hang guard applies to each frame).
    pub async fn next_of(&mut self, kind: &str) -> Result<Frame> {
        loop {
            match self.next_frame().await? {
                Some(frame) if frame.kind == kind => return Ok(frame),
                Some(_) => continue,
                None => return Err(ClientError::Closed(self.close_code)),
            }
        }
    }

    /// The close code the server sent, once closed.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// The cursor to resume from: the last durable event received (or the `ready` position).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub async fn send_frame(&mut self, frame: &ClientFrame) -> Result<()> {
        let text = serde_json::to_string(frame).map_err(bad)?;
        self.ws.send(WsMessage::text(text)).await.map_err(bad)
    }

    pub async fn send_typing(&mut self, conversation_id: &str, typing: bool) -> Result<()> {
        self.send_frame(&ClientFrame::Typing { conversation_id: conversation_id.into(), typing })
            .await
    }

    /// Acknowledges receipt of `conversation_id` up to `seq`.
    pub async fn send_delivered(&mut self, conversation_id: &str, seq: i64) -> Result<()> {
        self.send_frame(&ClientFrame::Delivered { conversation_id: conversation_id.into(), seq })
            .await
    }

    /// Sends a message over the socket; the server answers with an `ack` frame.
    pub async fn send_message(
        &mut self,
        conversation_id: &str,
        content: &str,
        client_id: Option<&str>,
    ) -> Result<()> {
        self.send_frame(&ClientFrame::Send {
            conversation_id: conversation_id.into(),
            content: content.into(),
            client_id: client_id.map(str::to_owned),
            reply_to: None,
        })
        .await
    }

    /// Closes this socket and opens a new one that resumes from [`Self::cursor`].
    pub async fn reconnect(&mut self) -> Result<()> {
        let _ = self.ws.close(None).await;
        let fresh = self.client.connect_ws(self.cursor.as_deref()).await?;
        *self = fresh;
        Ok(())
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A Server-Sent Events stream.
pub struct SseStream {
    body: ByteStream,
    buffer: String,
    cursor: Option<String>,
}

impl SseStream {
    /// The next frame; `Ok(None)` when the server ended the stream.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut data = String::new();
                let mut id = None;
                for line in block.lines() {
                    if let Some(rest) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                    } else if let Some(rest) = line.strip_prefix("id:") {
                        id = Some(rest.trim().to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                if let Some(id) = id {
                    self.cursor = Some(id);
                }
                return serde_json::from_str(&data).map(Some).map_err(bad);
            }
            match tokio::time::timeout(RECEIVE_TIMEOUT, self.body.next()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(chunk))) => {
                    self.buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"))
                }
            }
        }
    }

    /// The next frame of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Result<Frame> {
        loop {
            match self.next_frame().await? {
                Some(frame) if frame.kind == kind => return Ok(frame),
                Some(_) => continue,
                None => return Err(ClientError::Closed(None)),
            }
        }
    }

    /// The `id:` of the last durable event received: send it as `Last-Event-ID` to resume.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}
