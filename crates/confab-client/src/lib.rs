//! The Rust SDK for Confab's REST API: a typed async [`Client`] over reqwest, used by the
//! integration tests, the benchmark and tools.
//!
//! One method per endpoint, named like the server's handler (`send_message` everywhere), taking
//! and returning the wire types of [`confab_proto`] (re-exported here). Every non-2xx answer
//! becomes [`ClientError::Api`] carrying the HTTP status and the stable error `code` of the
//! server's `{"error": {"code", "message"}}` body, so callers match on codes, not on text.
//!
//! ```no_run
//! # async fn demo() -> confab_client::Result<()> {
//! let mut alice = confab_client::Client::new("http://127.0.0.1:8080");
//! alice.register("alice", "correct horse battery").await?;
//! let bob = alice.search_users("bob").await?.remove(0);
//! let conversation = alice.create_direct(&bob.id).await?;
//! alice.send_text(&conversation.id, "hi bob").await?;
//! # Ok(()) }
//! ```
//!
//! What it must not do: retry, cache or reorder requests. A retried send is the caller's
//! decision (with a `client_id`, see [`SendMessage`]), so the tests see the server's real
//! behaviour.
//!
//! [`Client::raw`] is the escape hatch for requests the typed API cannot express (malformed
//! bodies, unknown routes, other methods); it still applies the base URL and the token.

use std::fmt;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use confab_proto as proto;
pub use confab_proto::*;
/// The HTTP library under [`Client::raw`], so callers need not depend on it themselves.
pub use reqwest;

mod stream;
pub use stream::{RECEIVE_TIMEOUT, SseStream, WsStream};

/// How long one request may take, from connecting to the end of the body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status. `code` is the stable code of the JSON error
    /// body (`not_found`, `invalid_input`, ...), or `unknown` when the body had another shape,
    /// in which case `message` is the body text.
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    /// The request did not complete: connection refused, timeout, broken body, ...
    #[error("transport: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered a success status we did not expect, or a body that is not the
    /// promised type.
    #[error("decode: {0}")]
    Decode(String),
    /// Nothing arrived on a stream within its hang guard.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The stream ended (with this WebSocket close code, if any).
    #[error("the stream closed (code {0:?})")]
    Closed(Option<u16>),
}

impl ClientError {
    /// The server's error code for [`ClientError::Api`]; `transport` or `decode` otherwise.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Http(_) => "transport",
            ClientError::Decode(_) => "decode",
            ClientError::Timeout => "timeout",
            ClientError::Closed(_) => "closed",
        }
    }

    /// The HTTP status of an [`ClientError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error of a response whose status is not a success. Reads the body.
    pub async fn from_response(response: Response) -> ClientError {
        let status = response.status().as_u16();
        match response.text().await {
            Ok(text) => ClientError::from_body(status, &text),
            Err(e) => ClientError::Http(e),
        }
    }

    /// The error of a `status` answer with this body: the JSON error's code and message, or
    /// `unknown` and the text itself.
    pub fn from_body(status: u16, body: &str) -> ClientError {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => {
                ClientError::Api { status, code: error.code, message: error.message }
            }
            Err(_) => {
                ClientError::Api { status, code: "unknown".to_owned(), message: body.to_owned() }
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// The answer of a call that creates something unless it already exists: `created` is true
/// for 201 Created, false for 200 (an existing direct conversation, a replayed `client_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

/// Which page of `GET /api/conversations/{id}/messages` to fetch. Unset fields are not sent;
/// the default is the newest page of the server's default size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageQuery {
    /// Page size (the server clamps it to 100).
    pub limit: Option<u32>,
    /// Only messages with a smaller `seq`: the newest of them.
    pub before: Option<i64>,
    /// Only messages with a larger `seq`: the oldest of them.
    pub after: Option<i64>,
}

impl MessageQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(before) = self.before {
            pairs.push(("before", before.to_string()));
        }
        if let Some(after) = self.after {
            pairs.push(("after", after.to_string()));
        }
        pairs
    }
}

/// A connection to one Confab server, signed in or not. Cheap to clone (the HTTP connection
/// pool is shared); a clone keeps the token it had.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never print it.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// An unauthenticated client for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    /// Proxies from the environment are ignored: the server is addressed directly.
    pub fn new(base_url: &str) -> Client {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a reqwest client without proxies or custom TLS roots always builds");
        Client { http, base: base_url.trim_end_matches('/').to_owned(), token: None }
    }

    /// This client, sending `token` as `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// The bearer token, once signed in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`, used verbatim: encode it yourself) with the
    /// token applied. For what the typed methods cannot send, e.g. malformed bodies.
    pub fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    // ---- accounts ----

    /// `POST /api/auth/register` (201): creates the account and signs this client in.
    pub async fn register(&mut self, username: &str, password: &str) -> Result<AuthResponse> {
        let body = credentials(username, password);
        let auth: AuthResponse =
            self.call_json(Method::POST, "/api/auth/register", Some(&body), &[201]).await?.value;
        self.token = Some(auth.token.clone());
        Ok(auth)
    }

    /// `POST /api/auth/login` (200): signs this client in with a new session.
    pub async fn login(&mut self, username: &str, password: &str) -> Result<AuthResponse> {
        let body = credentials(username, password);
        let auth: AuthResponse =
            self.call_json(Method::POST, "/api/auth/login", Some(&body), &[200]).await?.value;
        self.token = Some(auth.token.clone());
        Ok(auth)
    }

    /// `POST /api/auth/logout` (204): ends this client's session; the token is forgotten.
    pub async fn logout(&mut self) -> Result<()> {
        self.call_empty(Method::POST, "/api/auth/logout", None::<&()>).await?;
        self.token = None;
        Ok(())
    }

    /// `GET /api/me`: the signed-in user.
    pub async fn me(&self) -> Result<User> {
        self.get_json("/api/me").await
    }

    /// `GET /api/users?q=prefix`: users whose name starts with `prefix`, ignoring case.
    pub async fn search_users(&self, prefix: &str) -> Result<Vec<User>> {
        let request = self.raw(Method::GET, "/api/users").query(&[("q", prefix)]);
        let list: UserList = self.send(request, &[200]).await?.value;
        Ok(list.users)
    }

    /// `GET /api/sessions`: the account's signed-in sessions, most recently used first.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let list: SessionList = self.get_json("/api/sessions").await?;
        Ok(list.sessions)
    }

    /// `DELETE /api/sessions/{id}` (204): signs one session out.
    pub async fn revoke_session(&self, id: &str) -> Result<()> {
        let path = format!("/api/sessions/{}", encode_segment(id));
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `DELETE /api/sessions`: signs out every other session; answers how many.
    pub async fn revoke_other_sessions(&self) -> Result<u64> {
        let request = self.raw(Method::DELETE, "/api/sessions");
        let revoked: RevokedSessions = self.send(request, &[200]).await?.value;
        Ok(revoked.revoked)
    }

    /// `POST /api/me/password` (204): changes the password; other sessions are signed out.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<()> {
        let body = ChangePassword { current_password: current.into(), new_password: new.into() };
        self.call_empty(Method::POST, "/api/me/password", Some(&body)).await
    }

    /// `GET /healthz`: succeeds once the server is ready.
    pub async fn health(&self) -> Result<()> {
        let response = self.raw(Method::GET, "/healthz").send().await?;
        expect_status(response, &[200]).await.map(|_| ())
    }

    // ---- conversations ----

    /// `GET /api/conversations`: the caller's conversations, most recent activity first.
    pub async fn list_conversations(&self) -> Result<Vec<Conversation>> {
        let list: ConversationList = self.get_json("/api/conversations").await?;
        Ok(list.conversations)
    }

    /// `POST /api/conversations`: 201 for a new conversation, 200 for the existing direct one.
    pub async fn create_conversation(
        &self,
        body: &CreateConversation,
    ) -> Result<Created<Conversation>> {
        let answer =
            self.call_json(Method::POST, "/api/conversations", Some(body), &[201, 200]).await?;
        Ok(Created { created: answer.status == StatusCode::CREATED, value: answer.value })
    }

    /// The direct conversation with `other_user_id`, created if needed.
    pub async fn create_direct(&self, other_user_id: &str) -> Result<Conversation> {
        let body = CreateConversation {
            kind: ConversationType::Direct,
            participant_ids: vec![other_user_id.to_owned()],
            title: None,
        };
        Ok(self.create_conversation(&body).await?.value)
    }

    /// A new group titled `title` with the caller (its admin) and `member_ids`.
    pub async fn create_group<S: AsRef<str>>(
        &self,
        title: &str,
        member_ids: &[S],
    ) -> Result<Conversation> {
        let body = CreateConversation {
            kind: ConversationType::Group,
            participant_ids: member_ids.iter().map(|id| id.as_ref().to_owned()).collect(),
            title: Some(title.to_owned()),
        };
        Ok(self.create_conversation(&body).await?.value)
    }

    /// `GET /api/conversations/{id}`.
    pub async fn get_conversation(&self, id: &str) -> Result<Conversation> {
        self.get_json(&format!("/api/conversations/{}", encode_segment(id))).await
    }

    /// `PATCH /api/conversations/{id}`: renames a group.
    pub async fn rename_conversation(&self, id: &str, title: &str) -> Result<Conversation> {
        let path = format!("/api/conversations/{}", encode_segment(id));
        let body = UpdateConversation { title: title.to_owned() };
        Ok(self.call_json(Method::PATCH, &path, Some(&body), &[200]).await?.value)
    }

    /// `POST /api/conversations/{id}/participants` (group admins): adds members; people
    /// already in the group are skipped.
    pub async fn add_participants<S: AsRef<str>>(
        &self,
        id: &str,
        user_ids: &[S],
    ) -> Result<Conversation> {
        let path = format!("/api/conversations/{}/participants", encode_segment(id));
        let body =
            AddParticipants { user_ids: user_ids.iter().map(|u| u.as_ref().to_owned()).collect() };
        Ok(self.call_json(Method::POST, &path, Some(&body), &[200]).await?.value)
    }

    /// `DELETE /api/conversations/{id}/participants/{user_id}` (204): an admin removes a
    /// member, or a member removes themself.
    pub async fn remove_participant(&self, id: &str, user_id: &str) -> Result<()> {
        let path = format!(
            "/api/conversations/{}/participants/{}",
            encode_segment(id),
            encode_segment(user_id)
        );
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /api/conversations/{id}/leave` (204).
    pub async fn leave_conversation(&self, id: &str) -> Result<()> {
        let path = format!("/api/conversations/{}/leave", encode_segment(id));
        self.call_empty(Method::POST, &path, None::<&()>).await
    }

    // ---- messages ----

    /// `GET /api/conversations/{id}/messages?limit&before&after`: a page in ascending `seq`.
    pub async fn list_messages(&self, id: &str, query: &MessageQuery) -> Result<MessagePage> {
        let path = format!("/api/conversations/{}/messages", encode_segment(id));
        let request = self.raw(Method::GET, &path).query(&query.pairs());
        Ok(self.send(request, &[200]).await?.value)
    }

    /// `POST /api/conversations/{id}/messages`: 201 for a new message, 200 with the first
    /// message when its `client_id` was sent before.
    pub async fn send_message(&self, id: &str, body: &SendMessage) -> Result<Created<Message>> {
        let path = format!("/api/conversations/{}/messages", encode_segment(id));
        let answer = self.call_json(Method::POST, &path, Some(body), &[201, 200]).await?;
        Ok(Created { created: answer.status == StatusCode::CREATED, value: answer.value })
    }

    /// Sends `content` with neither `client_id` nor `reply_to`.
    pub async fn send_text(&self, id: &str, content: &str) -> Result<Message> {
        let body = SendMessage { content: content.to_owned(), client_id: None, reply_to: None };
        Ok(self.send_message(id, &body).await?.value)
    }

    /// `PATCH /api/messages/{id}`: the sender replaces the content.
    pub async fn edit_message(&self, message_id: &str, content: &str) -> Result<Message> {
        let path = format!("/api/messages/{}", encode_segment(message_id));
        let body = EditMessage { content: content.to_owned() };
        Ok(self.call_json(Method::PATCH, &path, Some(&body), &[200]).await?.value)
    }

    /// `DELETE /api/messages/{id}` (204): leaves a tombstone.
    pub async fn delete_message(&self, message_id: &str) -> Result<()> {
        let path = format!("/api/messages/{}", encode_segment(message_id));
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /api/conversations/{id}/read` (204): moves the read watermark up to `seq`.
    /// Changes the caller's settings (`PATCH /api/me`).
    pub async fn update_me(&self, changes: &UpdateMe) -> Result<Me> {
        Ok(self.call_json(Method::PATCH, "/api/me", Some(changes), &[200]).await?.value)
    }

    /// Presence of everyone who shares a conversation with the caller (`GET /api/presence`).
    pub async fn list_presence(&self) -> Result<Vec<Presence>> {
        #[derive(serde::Deserialize)]
        struct List {
            presence: Vec<Presence>,
        }
        Ok(self.get_json::<List>("/api/presence").await?.presence)
    }

    /// Starts or stops typing without a WebSocket (`POST …/typing`).
    pub async fn set_typing(&self, id: &str, typing: bool) -> Result<()> {
        let path = format!("/api/conversations/{}/typing", encode_segment(id));
        self.call_empty(Method::POST, &path, Some(&SetTyping { typing })).await
    }

    /// Acknowledges receipt up to `seq` without a WebSocket (`POST …/delivered`).
    pub async fn mark_delivered(&self, id: &str, seq: i64) -> Result<()> {
        let path = format!("/api/conversations/{}/delivered", encode_segment(id));
        self.call_empty(Method::POST, &path, Some(&MarkRead { seq })).await
    }

    pub async fn mark_read(&self, id: &str, seq: i64) -> Result<()> {
        let path = format!("/api/conversations/{}/read", encode_segment(id));
        self.call_empty(Method::POST, &path, Some(&MarkRead { seq })).await
    }

    // ---- plumbing ----

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.call_json(Method::GET, path, None::<&()>, &[200]).await?.value)
    }

    async fn call_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        expected: &[u16],
    ) -> Result<Answer<T>> {
        let mut request = self.raw(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, expected).await
    }

    async fn call_empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<()> {
        let mut request = self.raw(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        expect_status(request.send().await?, &[204]).await.map(|_| ())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        expected: &[u16],
    ) -> Result<Answer<T>> {
        let response = expect_status(request.send().await?, expected).await?;
        let status = response.status();
        let url = response.url().path().to_owned();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).map_err(|e| {
            ClientError::Decode(format!("{status} from {url}: {e}; body: {}", excerpt(&text)))
        })?;
        Ok(Answer { status, value })
    }
}

/// A decoded success and the status it came with.
struct Answer<T> {
    status: StatusCode,
    value: T,
}

fn credentials(username: &str, password: &str) -> Credentials {
    Credentials { username: username.to_owned(), password: password.to_owned() }
}

/// `response` if its status is one of `expected`; otherwise the error it carries. A success
/// status other than the expected ones is a `Decode` error: the contract says which one.
pub(crate) async fn expect_status(response: Response, expected: &[u16]) -> Result<Response> {
    let status = response.status();
    if expected.contains(&status.as_u16()) {
        return Ok(response);
    }
    if status.is_success() {
        let url = response.url().path().to_owned();
        // The status alone is the error; a body that fails to arrive only shortens the message.
        let text = response.text().await.unwrap_or_default();
        return Err(ClientError::Decode(format!(
            "unexpected status {status} from {url} (expected {expected:?}); body: {}",
            excerpt(&text)
        )));
    }
    Err(ClientError::from_response(response).await)
}

/// The start of a body, for error messages.
fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `id` as one path segment: every byte outside the unreserved set `A-Za-z0-9-._~` is
/// percent-encoded, so an id can never add segments (`../x`), a query (`?`) or a fragment.
pub fn encode_segment(id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(id.len());
    for &byte in id.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_encode_everything_outside_the_unreserved_set() {
        assert_eq!(encode_segment("0190-abc_DEF.~"), "0190-abc_DEF.~");
        assert_eq!(encode_segment("../x"), "..%2Fx");
        assert_eq!(encode_segment("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn error_bodies_of_our_shape_give_their_code() {
        let err =
            ClientError::from_body(404, r#"{"error":{"code":"not_found","message":"not found"}}"#);

        assert_eq!(err.code(), "not_found");
        assert_eq!(err.status(), Some(404));
    }

    #[test]
    fn other_error_bodies_are_unknown_and_keep_their_text() {
        let err = ClientError::from_body(502, "Bad Gateway");

        assert_eq!(err.code(), "unknown");
        assert!(matches!(err, ClientError::Api { ref message, .. } if message == "Bad Gateway"));
    }

    #[test]
    fn only_set_query_fields_are_sent() {
        let query = MessageQuery { limit: Some(10), before: None, after: Some(3) };

        assert_eq!(query.pairs(), vec![("limit", "10".to_owned()), ("after", "3".to_owned())]);
        assert!(MessageQuery::default().pairs().is_empty());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let client = Client::new("http://127.0.0.1:1/").with_token("secret-token");

        let printed = format!("{client:?}");

        assert!(!printed.contains("secret-token"));
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
    }
}
