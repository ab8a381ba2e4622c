//! The authorization matrix, generated from the OpenAPI document: every operation that
//! `/api/openapi.json` lists is called by each kind of caller over raw HTTP, and every answer is
//! checked against the rule for that caller. A route added to the server fails this test until
//! the matrix knows its path parameters, its body and what owner and participant may do with
//! it, so no route escapes the check.
//!
//! The scene, built anew for every call (a group, its message, sessions): `owner` created the
//! group (its admin) and sent its message; `participant` and a third member are in it;
//! `outsider` is a registered user who is not (but shares a direct conversation with the owner);
//! `former` was a member when the message was sent, and was then removed by the owner.
//!
//! - owner and participant get exactly the answer in [`specs`]: what the server enforces;
//! - outsider and former member get 404 `not_found` on every operation with an id in its path
//!   (a conversation, a message, a member, a session), the very answer for an id that does not
//!   exist; on the others (their own account, their own conversations) they answer as the owner;
//! - anonymous, signed out (`POST /api/auth/logout`) and revoked (`DELETE /api/sessions/{id}`)
//!   callers get 401 `unauthorized` on every operation that has `security`; public ones
//!   (register, login, health) answer them as they answer the owner;
//! - every refused call leaves the group and its history exactly as the owner saw them before,
//!   and a session that is not the caller's to end keeps working;
//! - every answer is one the document lists for the operation.

use std::fmt::Write as _;

use confab_client::reqwest::Method;
use confab_client::{Client, Conversation, ErrorBody, Message, encode_segment};
use serde_json::{Value, json};

use crate::harness::{PASSWORD, TestServer, TestUser, history};

/// The document has 29 operations today: far fewer means the test is no longer looking at the
/// real API (and would pass without checking anything).
const MIN_OPERATIONS: usize = 15;

/// A conversation or message id that cannot exist, for the "same answer as a missing id" check.
const MISSING_ID: &str = "0190aaaa-0000-7000-8000-000000000000";
/// A session id (the same form as ours) that cannot exist.
const MISSING_SESSION: &str = "0190aaaa000070008000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Owner,
    Participant,
    Outsider,
    Former,
    Anonymous,
    SignedOut,
    Revoked,
}

impl Caller {
    const ALL: [Caller; 7] = [
        Caller::Owner,
        Caller::Participant,
        Caller::Outsider,
        Caller::Former,
        Caller::Anonymous,
        Caller::SignedOut,
        Caller::Revoked,
    ];

    fn name(self) -> &'static str {
        match self {
            Caller::Owner => "owner",
            Caller::Participant => "participant",
            Caller::Outsider => "outsider",
            Caller::Former => "former",
            Caller::Anonymous => "anonymous",
            Caller::SignedOut => "signed-out",
            Caller::Revoked => "revoked",
        }
    }
}

/// How to call one operation, and what owner and participant get.
struct Spec {
    id: &'static str,
    owner: u16,
    participant: u16,
    /// The operation ends sessions of its caller (logout, revocations, a password change):
    /// each call gets accounts of its own, so no call can sign out a later one.
    fresh_accounts: bool,
    query: &'static str,
    body: Option<fn(&Fixture) -> Value>,
    /// Sent as a WebSocket upgrade request.
    upgrade: bool,
}

impl Spec {
    fn new(id: &'static str, owner: u16, participant: u16) -> Spec {
        Spec {
            id,
            owner,
            participant,
            fresh_accounts: false,
            query: "",
            body: None,
            upgrade: false,
        }
    }

    fn body(self, body: fn(&Fixture) -> Value) -> Spec {
        Spec { body: Some(body), ..self }
    }

    fn query(self, query: &'static str) -> Spec {
        Spec { query, ..self }
    }

    fn fresh_accounts(self) -> Spec {
        Spec { fresh_accounts: true, ..self }
    }

    fn upgrade(self) -> Spec {
        Spec { upgrade: true, ..self }
    }
}

/// Every operation of the document, by `operationId`: a minimal valid call, and the answers
/// for the owner and for the participant.
fn specs() -> Vec<Spec> {
    vec![
        // Public.
        Spec::new("healthz", 200, 200),
        Spec::new("register", 201, 201)
            .body(|f| json!({"username": format!("newcomer{}", f.n), "password": PASSWORD})),
        Spec::new("login", 200, 200)
            .body(|f| json!({"username": f.third_name, "password": PASSWORD})),
        // The caller's own account and sessions.
        Spec::new("me", 200, 200),
        Spec::new("update_me", 200, 200).body(|_| json!({"share_read_receipts": true})),
        Spec::new("search_users", 200, 200).query("q=member"),
        Spec::new("list_sessions", 200, 200),
        Spec::new("logout", 204, 204).fresh_accounts(),
        Spec::new("revoke_other_sessions", 200, 200).fresh_accounts(),
        Spec::new("change_password", 204, 204)
            .fresh_accounts()
            .body(|_| json!({"current_password": PASSWORD, "new_password": PASSWORD})),
        // One of the owner's sessions: nobody else's to see or end.
        Spec::new("revoke_session", 204, 404).fresh_accounts(),
        // The caller's own conversations and streams.
        Spec::new("list_conversations", 200, 200),
        Spec::new("create_conversation", 201, 201)
            .body(|f| json!({"type": "group", "participant_ids": [f.member_id], "title": "Other"})),
        Spec::new("list_presence", 200, 200),
        Spec::new("websocket", 101, 101).upgrade(),
        Spec::new("events", 200, 200),
        Spec::new("poll", 200, 200).query("timeout=0"),
        // The group: every member reads, writes and renames; only its admin manages members;
        // anyone may leave.
        Spec::new("get_conversation", 200, 200),
        Spec::new("rename_conversation", 200, 200).body(|_| json!({"title": "Renamed"})),
        // The outsider and the former member try to add themselves.
        Spec::new("add_participants", 200, 403)
            .body(|f| json!({"user_ids": [f.outsider_id, f.former_id]})),
        Spec::new("remove_participant", 204, 403),
        Spec::new("leave_conversation", 204, 204),
        Spec::new("list_messages", 200, 200),
        Spec::new("send_message", 201, 201).body(|_| json!({"content": "from the matrix"})),
        Spec::new("mark_read", 204, 204).body(|_| json!({"seq": 1})),
        Spec::new("mark_delivered", 204, 204).body(|_| json!({"seq": 1})),
        Spec::new("set_typing", 204, 204).body(|_| json!({"typing": true})),
        // The owner's message: only its sender edits; its sender or a group admin deletes.
        Spec::new("edit_message", 200, 403).body(|_| json!({"content": "edited"})),
        Spec::new("delete_message", 204, 403),
    ]
}

/// What a path parameter stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Conversation,
    Message,
    /// The third member of the group (whom the admin may remove).
    Member,
    /// A session of the owner.
    Session,
}

/// The parameter `{name}` that follows `/collection/` in `path`; unknown ones fail the test,
/// so a new route must be taught here what id it takes.
fn param_kind(path: &str, collection: &str, name: &str) -> Param {
    match (collection, name) {
        ("conversations", "id") => Param::Conversation,
        ("messages", "id") => Param::Message,
        ("participants", "user_id") => Param::Member,
        ("sessions", "id") => Param::Session,
        _ => panic!(
            "{path}: the matrix does not know what id to put in {{{name}}} after /{collection}/; \
             teach it in `param_kind`"
        ),
    }
}

/// One operation of the document.
struct Operation {
    id: String,
    method: Method,
    path: String,
    /// The path's placeholders in order, with what each stands for.
    params: Vec<(String, Param)>,
    /// No `security` requirement: callable without credentials.
    public: bool,
    /// The required properties of the JSON body, when the operation takes one.
    body_required: Option<Vec<String>>,
    /// Required query parameters.
    query_required: Vec<String>,
    /// The statuses the document lists.
    documented: Vec<String>,
}

impl Operation {
    fn label(&self) -> String {
        format!("{} {} ({})", self.method, self.path, self.id)
    }

    fn has(&self, param: Param) -> bool {
        self.params.iter().any(|(_, p)| *p == param)
    }

    /// The resource in the path belongs to the owner: outsiders must not learn it exists.
    fn scoped(&self) -> bool {
        !self.params.is_empty()
    }
}

/// Every (path, method) of the document.
fn operations(doc: &Value) -> Vec<Operation> {
    let paths = doc["paths"].as_object().expect("the document has `paths`");
    let mut ops = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (method, op) in item {
            let method = match method.as_str() {
                "get" => Method::GET,
                "put" => Method::PUT,
                "post" => Method::POST,
                "delete" => Method::DELETE,
                "options" => Method::OPTIONS,
                "head" => Method::HEAD,
                "patch" => Method::PATCH,
                "trace" => Method::TRACE,
                _ => continue, // `parameters`, `summary`, ...
            };
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
                .to_owned();
            let security = op.get("security").or_else(|| doc.get("security"));
            let public = match security.and_then(Value::as_array) {
                None => true,
                Some(requirements) => {
                    requirements.is_empty()
                        || requirements.iter().any(|r| r.as_object().is_some_and(|r| r.is_empty()))
                }
            };
            let body_required = op.get("requestBody").map(|body| {
                let schema = &body["content"]["application/json"]["schema"];
                let schema = resolve(doc, schema);
                assert_eq!(schema["type"], "object", "{method} {path}: the body is not an object");
                schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default()
            });
            let query_required = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(doc, p))
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            let documented = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} documents no responses"))
                .keys()
                .cloned()
                .collect();
            ops.push(Operation {
                params: path_params(path),
                id,
                method,
                path: path.clone(),
                public,
                body_required,
                query_required,
                documented,
            });
        }
    }
    ops
}

/// `value`, or what it points to when it is a `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => value,
    }
}

fn path_params(path: &str) -> Vec<(String, Param)> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut params = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let collection = if i > 0 { segments[i - 1] } else { "" };
            params.push((name.to_owned(), param_kind(path, collection, name)));
        }
    }
    params
}

/// Registered users and ended sessions.
struct World {
    owner: TestUser,
    participant: TestUser,
    outsider: TestUser,
    third: TestUser,
    /// Put in every group and removed again before the call.
    former: TestUser,
    /// A token of the owner that was signed out with `POST /api/auth/logout`.
    signed_out: String,
    /// A token of the owner whose session was ended by `DELETE /api/sessions/{id}` from
    /// another of the owner's sessions.
    revoked: String,
}

impl World {
    async fn new(server: &TestServer, n: usize) -> World {
        let owner = server.user(&format!("owner{n}")).await;
        let participant = server.user(&format!("member{n}")).await;
        let outsider = server.user(&format!("outsider{n}")).await;
        let third = server.user(&format!("third{n}")).await;
        let former = server.user(&format!("former{n}")).await;
        // The outsider knows the owner: they share a direct conversation.
        let direct = outsider.create_direct(owner.id()).await.unwrap();
        outsider.send_text(&direct.id, "hello").await.unwrap();

        let mut signing_out = server.reconnect_by_login(owner.name()).await;
        let signed_out = signing_out.token().unwrap().to_owned();
        signing_out.logout().await.unwrap();
        let revoking = server.reconnect_by_login(owner.name()).await;
        let revoked = revoking.token().unwrap().to_owned();
        owner.revoke_session(&current_session(&revoking).await).await.unwrap();

        World { owner, participant, outsider, third, former, signed_out, revoked }
    }

    fn token(&self, caller: Caller) -> Option<String> {
        let user = match caller {
            Caller::Owner => &self.owner,
            Caller::Participant => &self.participant,
            Caller::Outsider => &self.outsider,
            Caller::Former => &self.former,
            Caller::Anonymous => return None,
            Caller::SignedOut => return Some(self.signed_out.clone()),
            Caller::Revoked => return Some(self.revoked.clone()),
        };
        Some(user.token().unwrap().to_owned())
    }
}

/// The id of the session `client` is using.
async fn current_session(client: &Client) -> String {
    let sessions = client.list_sessions().await.unwrap();
    sessions.into_iter().find(|s| s.current).expect("the current session is listed").id
}

/// What one call works on: a fresh group, so that no call sees what another did.
struct Fixture {
    /// Unique per call, for names.
    n: usize,
    conversation_id: String,
    message_id: String,
    member_id: String,
    outsider_id: String,
    former_id: String,
    third_name: String,
    /// What only members may see: the ids, the title and the message.
    secrets: [String; 4],
    /// A session of the owner's (its id and a client using it), when the path takes one.
    session: Option<(String, Client)>,
}

impl Fixture {
    async fn new(server: &TestServer, world: &World, n: usize, with_session: bool) -> Fixture {
        let members = [world.participant.id(), world.third.id(), world.former.id()];
        let title = format!("group title {n}");
        let content = format!("message content {n}");
        let group = world.owner.create_group(&title, &members).await.unwrap();
        let message = world.owner.send_text(&group.id, &content).await.unwrap();
        world.owner.remove_participant(&group.id, world.former.id()).await.unwrap();
        let session = match with_session {
            true => {
                let victim = server.reconnect_by_login(world.owner.name()).await;
                Some((current_session(&victim).await, victim.client))
            }
            false => None,
        };
        Fixture {
            n,
            conversation_id: group.id.clone(),
            message_id: message.id.clone(),
            member_id: world.third.id().to_owned(),
            outsider_id: world.outsider.id().to_owned(),
            former_id: world.former.id().to_owned(),
            third_name: world.third.name().to_owned(),
            secrets: [group.id, message.id, title, content],
            session,
        }
    }

    fn value(&self, param: Param) -> &str {
        match param {
            Param::Conversation => &self.conversation_id,
            Param::Message => &self.message_id,
            Param::Member => &self.member_id,
            Param::Session => &self.session.as_ref().expect("a session for this path").0,
        }
    }
}

/// The group and its history as the owner sees them.
async fn snapshot(observer: &Client, fixture: &Fixture) -> (Conversation, Vec<Message>) {
    let conversation = observer.get_conversation(&fixture.conversation_id).await.unwrap();
    (conversation, history(observer, &fixture.conversation_id).await)
}

/// An answer: the status, for an error status its body (or the text that was not one), and
/// the text of any JSON answer.
struct Answer {
    status: u16,
    error: Option<Result<ErrorBody, String>>,
    text: Option<String>,
}

impl Answer {
    fn error_summary(&self) -> Option<(u16, String, String)> {
        match &self.error {
            Some(Ok(body)) => {
                Some((self.status, body.error.code.clone(), body.error.message.clone()))
            }
            _ => None,
        }
    }
}

/// Calls `op` with `token`, the path's ids given by `id_of`.
async fn call(
    server: &TestServer,
    token: Option<String>,
    op: &Operation,
    spec: &Spec,
    fixture: &Fixture,
    id_of: impl Fn(Param) -> String,
) -> Answer {
    let mut path = op.path.clone();
    for (name, param) in &op.params {
        path = path.replace(&format!("{{{name}}}"), &encode_segment(&id_of(*param)));
    }
    if !spec.query.is_empty() {
        path = format!("{path}?{}", spec.query);
    }
    let client = match token {
        Some(token) => server.client().with_token(token),
        None => server.client(),
    };
    let mut request = client.raw(op.method.clone(), &path);
    if let Some(body) = spec.body {
        let body = body(fixture);
        for field in op.body_required.iter().flatten() {
            assert!(body.get(field).is_some(), "{}: the body lacks required `{field}`", op.label());
        }
        request = request.json(&body);
    }
    if spec.upgrade {
        request = request
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{}: {e}", op.label()));
    let status = response.status().as_u16();
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // Only JSON and errors are read: event streams and upgraded connections never end.
    let text = match json || status >= 400 {
        true => Some(response.text().await.unwrap()),
        false => None,
    };
    let error = match status >= 400 {
        true => text.clone().map(|t| serde_json::from_str::<ErrorBody>(&t).map_err(|_| t)),
        false => None,
    };
    Answer { status, error, text }
}

/// The answer `caller` must get.
fn expected(op: &Operation, spec: &Spec, caller: Caller) -> u16 {
    match caller {
        Caller::Owner => spec.owner,
        Caller::Participant => spec.participant,
        Caller::Outsider | Caller::Former if op.scoped() => 404,
        Caller::Outsider | Caller::Former => spec.owner,
        Caller::Anonymous | Caller::SignedOut | Caller::Revoked if op.public => spec.owner,
        Caller::Anonymous | Caller::SignedOut | Caller::Revoked => 401,
    }
}

fn error_code(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("unauthorized"),
        403 => Some("forbidden"),
        404 => Some("not_found"),
        _ => None,
    }
}

/// One cell of the matrix.
struct Cell {
    operation: String,
    status: u16,
    expected: u16,
}

#[tokio::test]
async fn every_documented_operation_answers_each_caller_as_the_rules_say() {
    // Every caller comes from 127.0.0.1 and the matrix signs in a few hundred times: the
    // per-address sign-in limit (a flood guard, not an authorization rule) is lifted.
    let server = TestServer::spawn_with(|c| c.rates.auth_per_ip = None).await;
    let response = server.client().raw(Method::GET, "/api/openapi.json").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "the document is public");
    let doc: Value = response.json().await.unwrap();

    let ops = operations(&doc);
    assert!(ops.len() >= MIN_OPERATIONS, "only {} operations in the document", ops.len());
    let specs = specs();
    for spec in &specs {
        assert!(ops.iter().any(|op| op.id == spec.id), "`{}` is not in the document", spec.id);
    }
    let spec_of = |op: &Operation| -> &Spec {
        let spec = specs.iter().find(|s| s.id == op.id).unwrap_or_else(|| {
            panic!("{}: not in the matrix; add its answers to `specs`", op.label())
        });
        assert_eq!(
            spec.body.is_some(),
            op.body_required.is_some(),
            "{}: the document and the matrix disagree about its body",
            op.label()
        );
        for name in &op.query_required {
            let given = spec.query.split('&').any(|pair| pair.split('=').next() == Some(name));
            assert!(given, "{}: the required query parameter `{name}` is not given", op.label());
        }
        spec
    };
    for op in &ops {
        spec_of(op);
    }

    let shared = World::new(&server, 0).await;
    let mut cells: Vec<Cell> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for op in &ops {
        let spec = spec_of(op);
        for caller in Caller::ALL {
            let n = cells.len() + 1;
            let fresh;
            let world = match spec.fresh_accounts {
                true => {
                    fresh = World::new(&server, n).await;
                    &fresh
                }
                false => &shared,
            };
            let (status, problems) = check(&server, world, op, spec, caller, n).await;
            let expected = expected(op, spec, caller);
            cells.push(Cell { operation: op.label(), status, expected });
            let label = op.label();
            failures
                .extend(problems.into_iter().map(|p| format!("{label} as {}: {p}", caller.name())));
        }
    }

    assert!(
        failures.is_empty(),
        "{} failed checks:\n{}\n\n{}",
        failures.len(),
        table(&cells),
        failures.join("\n")
    );
}

/// Calls `op` as `caller` on a fresh group of `world`: the status, and what was wrong.
async fn check(
    server: &TestServer,
    world: &World,
    op: &Operation,
    spec: &Spec,
    caller: Caller,
    n: usize,
) -> (u16, Vec<String>) {
    let fixture = Fixture::new(server, world, n, op.has(Param::Session)).await;
    let want = expected(op, spec, caller);
    let before = snapshot(&world.owner, &fixture).await;

    let answer =
        call(server, world.token(caller), op, spec, &fixture, |p| fixture.value(p).into()).await;

    let mut problems = Vec::new();
    if answer.status != want {
        let detail = match &answer.error {
            Some(Ok(body)) => format!(" {}: {}", body.error.code, body.error.message),
            Some(Err(text)) => format!(" {text}"),
            None => String::new(),
        };
        problems.push(format!("answered {}{detail}, expected {want}", answer.status));
    }
    if !op.documented.contains(&answer.status.to_string()) {
        problems.push(format!("answered {}, which the document does not list", answer.status));
    }
    match &answer.error {
        Some(Err(text)) => problems.push(format!("an error without the JSON error body: {text}")),
        Some(Ok(body)) => {
            if let Some(code) = error_code(answer.status)
                && body.error.code != code
            {
                problems.push(format!("error code {:?}, expected {code:?}", body.error.code));
            }
        }
        None => {}
    }
    // Outsiders cannot tell an existing conversation (message, session) from a missing one.
    if matches!(caller, Caller::Outsider | Caller::Former) && op.scoped() {
        let missing = call(server, world.token(caller), op, spec, &fixture, |p| match p {
            Param::Session => MISSING_SESSION.into(),
            _ => MISSING_ID.into(),
        })
        .await;
        if answer.error_summary() != missing.error_summary() || missing.error.is_none() {
            problems.push(format!(
                "answered {:?}, but {:?} for ids that do not exist",
                answer.error_summary(),
                missing.error_summary()
            ));
        }
    }
    // Nor read anything of it in any answer.
    if !matches!(caller, Caller::Owner | Caller::Participant) {
        let text = answer.text.as_deref().unwrap_or_default();
        if let Some(secret) = fixture.secrets.iter().find(|s| text.contains(s.as_str())) {
            problems.push(format!("the answer mentions {secret:?}"));
        }
    }
    if want >= 400 {
        // In a world of its own, the call may have ended the owner's sessions: look with a
        // new one.
        let observer = match spec.fresh_accounts {
            true => server.reconnect_by_login(world.owner.name()).await.client,
            false => world.owner.client.clone(),
        };
        if snapshot(&observer, &fixture).await != before {
            problems.push("a refused call changed the group or its history".into());
        }
    }
    if let Some((_, victim)) = &fixture.session {
        match (victim.me().await.is_ok(), answer.status < 400) {
            (true, true) => problems.push("the owner's session still works".into()),
            (false, false) => problems.push("a refused call ended the owner's session".into()),
            _ => {}
        }
    }
    (answer.status, problems)
}

/// The matrix as text: one row per operation, one column per caller; `got≠want` marks a
/// wrong answer.
fn table(cells: &[Cell]) -> String {
    let width = cells.iter().map(|c| c.operation.len()).max().unwrap_or(0);
    let mut out = format!("{:width$}", "operation");
    for caller in Caller::ALL {
        let _ = write!(out, " {:>11}", caller.name());
    }
    let mut current = "";
    for cell in cells {
        if cell.operation != current {
            current = &cell.operation;
            let _ = write!(out, "\n{current:width$}");
        }
        let shown = match cell.status == cell.expected {
            true => cell.status.to_string(),
            false => format!("{}≠{}", cell.status, cell.expected),
        };
        let _ = write!(out, " {shown:>11}");
    }
    out
}
