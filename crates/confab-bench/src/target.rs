//! What differs between driving Confab and driving the ceiling: how a socket subscribes and
//! how a message is posted. Everything else in a scenario is the same code for both.

use anyhow::{Context, bail};
use confab_client::reqwest::Method;
use confab_client::{Client, SendMessage, encode_segment};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::preload::BenchUser;
use crate::procs::{Kind, Server};
use crate::sockets::{Endpoint, Ws};

/// The WebSocket of `user`, who is in `rooms` (conversation ids).
pub fn endpoint(server: &Server, user: &BenchUser, rooms: &[&str]) -> Endpoint {
    match server.kind {
        Kind::Confab => Endpoint { path: "/api/ws".to_owned(), token: Some(user.token.clone()) },
        Kind::Ceiling => Endpoint { path: format!("/ws?rooms={}", rooms.join(",")), token: None },
    }
}

/// A new client id for a send, random as the web client's (`crypto.randomUUID()`): its place
/// in the server's index of client ids is random too, as it is for real clients.
pub fn client_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Posts messages as one user: Confab's `POST /api/conversations/{id}/messages` through the
/// SDK, or the ceiling's `POST /send/{room}` with the same body.
#[derive(Clone)]
pub struct Poster {
    kind: Kind,
    client: Client,
}

impl Poster {
    pub fn new(server: &Server, user: &BenchUser) -> Poster {
        let client = Client::new(&server.base);
        let client = match server.kind {
            Kind::Confab => client.with_token(user.token.clone()),
            Kind::Ceiling => client,
        };
        Poster { kind: server.kind, client }
    }

    pub async fn post(
        &self,
        conversation: &str,
        content: String,
        client_id: String,
    ) -> anyhow::Result<()> {
        let body = SendMessage { content, client_id: Some(client_id), reply_to: None };
        match self.kind {
            Kind::Confab => {
                self.client.send_message(conversation, &body).await?;
            }
            Kind::Ceiling => {
                let path = format!("/send/{}", encode_segment(conversation));
                let response = self.client.raw(Method::POST, &path).json(&body).send().await?;
                if response.status().as_u16() != 201 {
                    bail!("ceiling answered {}", response.status());
                }
                response.bytes().await?;
            }
        }
        Ok(())
    }

    /// One history page: Confab's `GET /api/conversations/{id}/messages?limit&before`, or the
    /// ceiling's fixed page. Answers the number of messages on it.
    pub async fn page(&self, conversation: &str, before: i64, limit: u32) -> anyhow::Result<usize> {
        match self.kind {
            Kind::Confab => {
                let query = confab_client::MessageQuery {
                    limit: Some(limit),
                    before: Some(before),
                    after: None,
                };
                Ok(self.client.list_messages(conversation, &query).await?.messages.len())
            }
            Kind::Ceiling => {
                let response = self.client.raw(Method::GET, "/page").send().await?;
                if !response.status().is_success() {
                    bail!("ceiling answered {}", response.status());
                }
                let page: confab_client::MessagePage = response.json().await?;
                Ok(page.messages.len())
            }
        }
    }
}

/// Sends a message over the sender's own open WebSocket, as a `send` frame (the same frame for
/// Confab and the ceiling), and waits for its `ack`. Confab acknowledges after the commit, as
/// the REST answer does. Other frames on the socket (the sender's copy of its own message,
/// presence) are read past.
pub async fn send_over(
    ws: &mut Ws,
    conversation: &str,
    content: String,
    client_id: String,
) -> anyhow::Result<()> {
    let frame = confab_client::proto::ClientFrame::Send {
        conversation_id: conversation.to_owned(),
        content,
        client_id: Some(client_id),
        reply_to: None,
    };
    ws.send(Message::text(serde_json::to_string(&frame)?)).await?;
    tokio::time::timeout(ACK_TIMEOUT, ack_of(ws)).await.context("no ack")?
}

/// An unanswered send is an error, not a stalled sender.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads frames until the `ack` (or `error`) of the one send in flight.
async fn ack_of(ws: &mut Ws) -> anyhow::Result<()> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if text.starts_with(r#"{"type":"ack""#) {
                    return Ok(());
                }
                if text.starts_with(r#"{"type":"error""#) {
                    bail!("send refused: {}", text.as_str());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the socket closed before the ack"),
        }
    }
}
