//! Malformed and hostile input: every refusal is a 4xx with the JSON error body, never a 500;
//! and the API's surface (unknown routes, wrong methods, health, the OpenAPI document).

use confab_client::reqwest::{Method, Response};
use confab_client::{Client, MessageQuery, UpdateMe};

use crate::harness::{PASSWORD, TestServer, TestUser, history, json_error};

/// A conversation between alice and bob with one message from alice, for routes that need ids.
struct Scene {
    server: TestServer,
    alice: TestUser,
    bob: TestUser,
    conversation_id: String,
    message_id: String,
}

async fn scene() -> Scene {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    let message = alice.send_text(&group.id, "hello").await.unwrap();
    Scene { server, alice, bob, conversation_id: group.id, message_id: message.id }
}

impl Scene {
    /// Every route that reads a JSON body, with its method.
    fn body_routes(&self) -> Vec<(Method, String)> {
        let (c, m) = (&self.conversation_id, &self.message_id);
        vec![
            (Method::POST, "/api/auth/register".to_owned()),
            (Method::POST, "/api/auth/login".to_owned()),
            (Method::POST, "/api/conversations".to_owned()),
            (Method::PATCH, format!("/api/conversations/{c}")),
            (Method::POST, format!("/api/conversations/{c}/participants")),
            (Method::POST, format!("/api/conversations/{c}/messages")),
            (Method::POST, format!("/api/conversations/{c}/read")),
            (Method::PATCH, format!("/api/messages/{m}")),
        ]
    }
}

async fn send_body(client: &Client, method: Method, path: &str, body: Vec<u8>) -> Response {
    client
        .raw(method, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_a_400_on_every_route_that_reads_a_body() {
    let scene = scene().await;

    for (method, path) in scene.body_routes() {
        // Cut short, and an object of the wrong shape followed by garbage: serde meets the
        // missing fields first, but the body is still not JSON.
        for body in [&b"{\"content\":"[..], &b"{} x"[..], &b"{\"seq\": true} ]"[..]] {
            let response = send_body(&scene.alice, method.clone(), &path, body.to_vec()).await;

            let (status, error) = json_error(response).await;
            let body = String::from_utf8_lossy(body);
            assert_eq!(
                (status, error.error.code.as_str()),
                (400, "invalid_input"),
                "{method} {path} {body}"
            );
        }
    }
    assert_eq!(history(&scene.alice, &scene.conversation_id).await.len(), 1);
}

#[tokio::test]
async fn wrongly_typed_fields_are_refused_as_invalid_input() {
    let scene = scene().await;
    let c = &scene.conversation_id;
    let cases = [
        (Method::POST, "/api/auth/register".to_owned(), r#"{"username": 5, "password": "x"}"#),
        (
            Method::POST,
            "/api/conversations".to_owned(),
            r#"{"type": "channel", "participant_ids": []}"#,
        ),
        (
            Method::POST,
            "/api/conversations".to_owned(),
            r#"{"type": "direct", "participant_ids": "bob"}"#,
        ),
        (Method::POST, format!("/api/conversations/{c}/messages"), r#"{"content": 5}"#),
        (Method::POST, format!("/api/conversations/{c}/messages"), r#"{"content": null}"#),
        (Method::POST, format!("/api/conversations/{c}/read"), r#"{"seq": "abc"}"#),
        (Method::POST, format!("/api/conversations/{c}/read"), r#"{"seq": 1.5}"#),
        (Method::POST, format!("/api/conversations/{c}/participants"), r#"{"user_ids": 7}"#),
    ];

    for (method, path, body) in cases {
        let response = send_body(&scene.alice, method.clone(), &path, body.into()).await;

        let (status, error) = json_error(response).await;
        assert!(matches!(status, 400 | 422), "{method} {path} {body}: {status}");
        assert_eq!(error.error.code, "invalid_input", "{method} {path} {body}");
    }
    assert_eq!(history(&scene.alice, c).await.len(), 1);
}

#[tokio::test]
async fn missing_fields_and_missing_bodies_are_invalid_input() {
    let scene = scene().await;

    for (method, path) in scene.body_routes() {
        for body in [&b"{}"[..], &b""[..]] {
            let response = send_body(&scene.alice, method.clone(), &path, body.to_vec()).await;

            let (status, error) = json_error(response).await;
            assert!(matches!(status, 400 | 422), "{method} {path}: {status}");
            assert_eq!(error.error.code, "invalid_input", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_invalid_input_and_changes_nothing() {
    let scene = scene().await;
    let (alice, c, m) = (&scene.alice, &scene.conversation_id, &scene.message_id);
    let messages = format!("/api/conversations/{c}/messages");
    let me_before = alice.update_me(&UpdateMe::default()).await.unwrap();
    let conversation_before = alice.get_conversation(c).await.unwrap();
    let history_before = history(alice, c).await;
    // Arrays, strings, numbers and literals where an object is expected.
    let mut cases: Vec<(Method, String, String)> = Vec::new();
    for body in ["[true]", "[false]", "[]", "\"share_read_receipts\"", "0", "true", "null"] {
        cases.push((Method::PATCH, "/api/me".to_owned(), body.to_owned()));
    }
    for body in [r#"["hello"]"#, r#"["hello", "client-1"]"#, "[]", r#""hello""#, "42", "false"] {
        cases.push((Method::POST, messages.clone(), body.to_owned()));
    }
    // Arrays that would fill each body's fields in order.
    let (b, name) = (scene.bob.id(), alice.name());
    cases.extend([
        (Method::POST, "/api/auth/register".to_owned(), format!(r#"["mallory", "{PASSWORD}"]"#)),
        (Method::POST, "/api/auth/login".to_owned(), format!(r#"["{name}", "{PASSWORD}"]"#)),
        (Method::POST, "/api/conversations".to_owned(), format!(r#"["group", ["{b}"], "T"]"#)),
        (Method::PATCH, format!("/api/conversations/{c}"), r#"["renamed"]"#.to_owned()),
        (Method::POST, format!("/api/conversations/{c}/participants"), format!(r#"[["{b}"]]"#)),
        (Method::POST, format!("/api/conversations/{c}/read"), "[1]".to_owned()),
        (Method::POST, format!("/api/conversations/{c}/delivered"), "[1]".to_owned()),
        (Method::POST, format!("/api/conversations/{c}/typing"), "[true]".to_owned()),
        (Method::PATCH, format!("/api/messages/{m}"), r#"["edited"]"#.to_owned()),
        (Method::POST, "/api/me/password".to_owned(), format!(r#"["{PASSWORD}", "new-pass-1"]"#)),
    ]);

    for (method, path, body) in cases {
        let response = send_body(alice, method.clone(), &path, body.clone().into_bytes()).await;

        let (status, error) = json_error(response).await;
        assert_eq!(
            (status, error.error.code.as_str()),
            (422, "invalid_input"),
            "{method} {path} {body}: {}",
            error.error.message
        );
    }
    assert_eq!(alice.update_me(&UpdateMe::default()).await.unwrap(), me_before);
    assert_eq!(alice.get_conversation(c).await.unwrap(), conversation_before);
    assert_eq!(history(alice, c).await, history_before);
    assert!(alice.search_users("mallory").await.unwrap().is_empty());
    assert_eq!(alice.list_conversations().await.unwrap().len(), 1);
    assert_eq!(alice.list_sessions().await.unwrap().len(), 1);
    scene.server.reconnect_by_login(alice.name()).await;
}

#[tokio::test]
async fn a_body_of_one_mebibyte_is_too_large() {
    let scene = scene().await;
    let content = "a".repeat(1024 * 1024);
    let message_body = serde_json::to_vec(&serde_json::json!({"content": content})).unwrap();
    let register_body =
        serde_json::to_vec(&serde_json::json!({"username": content, "password": PASSWORD}))
            .unwrap();
    let messages = format!("/api/conversations/{}/messages", scene.conversation_id);

    let send = send_body(&scene.alice, Method::POST, &messages, message_body).await;
    let register =
        send_body(&scene.server.client(), Method::POST, "/api/auth/register", register_body).await;

    let (status, error) = json_error(send).await;
    assert_eq!((status, error.error.code.as_str()), (413, "payload_too_large"));
    let (status, error) = json_error(register).await;
    assert_eq!((status, error.error.code.as_str()), (413, "payload_too_large"));
    assert_eq!(history(&scene.alice, &scene.conversation_id).await.len(), 1);
}

#[tokio::test]
async fn bodies_that_are_not_utf8_or_nest_too_deep_are_refused() {
    let scene = scene().await;
    let messages = format!("/api/conversations/{}/messages", scene.conversation_id);
    let deep = "[".repeat(10_000).into_bytes();
    let not_utf8 = b"{\"content\": \"\xff\xfe\"}".to_vec();
    let lone_surrogate = br#"{"content": "\ud800"}"#.to_vec();

    for body in [deep, not_utf8, lone_surrogate] {
        let response = send_body(&scene.alice, Method::POST, &messages, body).await;

        let (status, error) = json_error(response).await;
        assert!(matches!(status, 400 | 422), "{status}");
        assert_eq!(error.error.code, "invalid_input");
    }
}

#[tokio::test]
async fn hostile_ids_are_not_found_everywhere() {
    let scene = scene().await;
    let alice = &scene.alice;
    let long = "9".repeat(5000);
    let hostile = [
        "../x",
        "..%2F..",
        "a b",
        "✓ unicode ✓",
        "' OR 1=1 --",
        "\0",
        "x?limit=1#frag",
        long.as_str(),
    ];

    for id in hostile {
        let attempts = [
            ("get_conversation", alice.get_conversation(id).await.unwrap_err()),
            ("list_messages", alice.list_messages(id, &MessageQuery::default()).await.unwrap_err()),
            ("send_message", alice.send_text(id, "hi").await.unwrap_err()),
            ("rename_conversation", alice.rename_conversation(id, "t").await.unwrap_err()),
            ("add_participants", alice.add_participants(id, &[scene.bob.id()]).await.unwrap_err()),
            ("leave_conversation", alice.leave_conversation(id).await.unwrap_err()),
            ("mark_read", alice.mark_read(id, 1).await.unwrap_err()),
            ("edit_message", alice.edit_message(id, "x").await.unwrap_err()),
            ("delete_message", alice.delete_message(id).await.unwrap_err()),
            (
                "remove_participant (hostile user)",
                alice.remove_participant(&scene.conversation_id, id).await.unwrap_err(),
            ),
        ];

        for (attempt, err) in &attempts {
            assert_eq!((err.status(), err.code()), (Some(404), "not_found"), "{attempt} {id:?}");
        }
    }
    assert_eq!(alice.get_conversation(&scene.conversation_id).await.unwrap().participants.len(), 2);
}

#[tokio::test]
async fn hostile_raw_paths_are_not_found_with_a_json_body() {
    let scene = scene().await;
    let long = format!("/api/conversations/{}", "9".repeat(10_000));
    let paths = [
        (Method::GET, "/api/conversations/..%2F..%2Fapi%2Fme"),
        (Method::GET, "/api/conversations/%2e%2e%2fetc%2fpasswd/messages"),
        (Method::GET, "/api/conversations/%E2%9C%93"),
        (Method::DELETE, "/api/messages/%27%20OR%201%3D1%20--"),
        (Method::POST, "/api/conversations/%00/leave"),
        (Method::GET, long.as_str()),
    ];

    for (method, path) in paths {
        let response = scene.alice.raw(method.clone(), path).send().await.unwrap();

        let (status, error) = json_error(response).await;
        assert_eq!((status, error.error.code.as_str()), (404, "not_found"), "{method} {path}");
    }
}

#[tokio::test]
async fn unparsable_query_parameters_are_a_400() {
    let scene = scene().await;
    let messages = format!("/api/conversations/{}/messages", scene.conversation_id);

    // (An integer too large for 64 bits is still an integer: clamped, see messages.rs.)
    for query in ["limit=abc", "before=x", "after=1.5", "limit=", "before=1e3", "after=%2B"] {
        let response = scene.alice.raw(Method::GET, &format!("{messages}?{query}")).send().await;

        let (status, error) = json_error(response.unwrap()).await;
        assert_eq!((status, error.error.code.as_str()), (400, "invalid_input"), "{query}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_with_a_json_body() {
    let scene = scene().await;
    let nested = format!("/api/conversations/{}/nope", scene.conversation_id);

    for path in ["/api/nope", "/api", "/api/conversations/x/y/z", nested.as_str()] {
        let response = scene.alice.raw(Method::GET, path).send().await.unwrap();

        let (status, error) = json_error(response).await;
        assert_eq!((status, error.error.code.as_str()), (404, "not_found"), "{path}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_a_json_body() {
    let scene = scene().await;
    let messages = format!("/api/conversations/{}/messages", scene.conversation_id);
    let routes = [
        (Method::PUT, "/api/conversations"),
        (Method::DELETE, "/api/me"),
        (Method::GET, "/api/auth/login"),
        (Method::PATCH, messages.as_str()),
    ];

    for (method, path) in routes {
        let response = scene.alice.raw(method.clone(), path).send().await.unwrap();

        let (status, error) = json_error(response).await;
        assert_eq!(
            (status, error.error.code.as_str()),
            (405, "method_not_allowed"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn no_garbage_body_on_any_route_gets_a_500() {
    let scene = scene().await;
    let garbage: [&[u8]; 14] = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b"\"just a string\"",
        b"1e999",
        b"{\"content\":",
        b"{\"content\": \"\\u0000\"}",
        b"{\"title\": 5, \"seq\": [], \"user_ids\": {}}",
        b"{\"type\": \"group\", \"participant_ids\": [null], \"title\": []}",
        b"{\"username\": \"\", \"password\": \"\"}",
        b"{\"seq\": 99999999999999999999999999}",
        b"\xef\xbb\xbf{}",
        b"{\"content\": \"x\", \"content\": 5}",
    ];

    for (method, path) in scene.body_routes() {
        for body in garbage {
            let response = send_body(&scene.alice, method.clone(), &path, body.to_vec()).await;

            let (status, error) = json_error(response).await;
            let shown = String::from_utf8_lossy(body);
            assert!((400..500).contains(&status), "{method} {path} {shown}: {status}");
            assert!(!error.error.code.is_empty(), "{method} {path} {shown}");
        }
    }
    assert_eq!(history(&scene.alice, &scene.conversation_id).await.len(), 1);
}

#[tokio::test]
async fn the_health_check_answers_once_the_server_is_up() {
    let server = TestServer::spawn().await;

    let health = server.client().health().await;

    assert!(health.is_ok(), "{health:?}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let server = TestServer::spawn().await;

    let response = server.client().raw(Method::GET, "/api/openapi.json").send().await.unwrap();

    assert_eq!(response.status().as_u16(), 200);
    let document: serde_json::Value = response.json().await.unwrap();
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi: {version:?}");
    assert!(document["paths"].get("/api/conversations/{id}/messages").is_some());
    assert!(document["paths"].get("/api/auth/register").is_some());
}
