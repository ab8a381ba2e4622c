//! The authorization matrix: outsiders get 404 for everything about a conversation they are
//! not in (they cannot even learn that it exists) and change nothing; anonymous callers get
//! 401 everywhere but register, login and health.

use confab_client::reqwest::Method;
use confab_client::{ClientError, MessageQuery, SendMessage};
use serde_json::json;

use crate::harness::{TestServer, TestUser, assert_api_error, history, ids, json_error};

/// Everything `outsider` might try against a conversation and one of its messages, with the
/// error each attempt got (an attempt that succeeded fails the test here).
async fn attempts_by(
    outsider: &TestUser,
    conversation_id: &str,
    message_id: &str,
    member_id: &str,
) -> Vec<(&'static str, ClientError)> {
    let id = conversation_id;
    vec![
        ("get_conversation", outsider.get_conversation(id).await.unwrap_err()),
        ("list_messages", outsider.list_messages(id, &MessageQuery::default()).await.unwrap_err()),
        ("send_message", outsider.send_text(id, "let me in").await.unwrap_err()),
        ("rename_conversation", outsider.rename_conversation(id, "mine").await.unwrap_err()),
        (
            "add_participants (themself)",
            outsider.add_participants(id, &[outsider.id()]).await.unwrap_err(),
        ),
        ("remove_participant", outsider.remove_participant(id, member_id).await.unwrap_err()),
        (
            "remove_participant (themself)",
            outsider.remove_participant(id, outsider.id()).await.unwrap_err(),
        ),
        ("leave_conversation", outsider.leave_conversation(id).await.unwrap_err()),
        ("mark_read", outsider.mark_read(id, 1).await.unwrap_err()),
        ("edit_message", outsider.edit_message(message_id, "edited").await.unwrap_err()),
        ("delete_message", outsider.delete_message(message_id).await.unwrap_err()),
    ]
}

#[tokio::test]
async fn an_outsider_gets_404_for_everything_about_a_group_and_changes_nothing() {
    let server = TestServer::spawn().await;
    let [alice, bob, eve] = server.users(["alice", "bob", "eve"]).await;
    let group = alice.create_group("Private", &[bob.id()]).await.unwrap();
    let message = alice.send_text(&group.id, "secret").await.unwrap();
    let conversation_before = alice.get_conversation(&group.id).await.unwrap();
    let history_before = history(&alice, &group.id).await;

    let attempts = attempts_by(&eve, &group.id, &message.id, bob.id()).await;

    for (attempt, err) in &attempts {
        assert_eq!((err.status(), err.code()), (Some(404), "not_found"), "{attempt}: {err}");
    }
    assert_eq!(alice.get_conversation(&group.id).await.unwrap(), conversation_before);
    assert_eq!(history(&alice, &group.id).await, history_before);
}

#[tokio::test]
async fn an_outsider_gets_404_for_everything_about_a_direct_conversation_and_changes_nothing() {
    let server = TestServer::spawn().await;
    let [alice, bob, eve] = server.users(["alice", "bob", "eve"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();
    let message = bob.send_text(&direct.id, "just us").await.unwrap();
    let conversation_before = alice.get_conversation(&direct.id).await.unwrap();
    let history_before = history(&alice, &direct.id).await;

    let attempts = attempts_by(&eve, &direct.id, &message.id, bob.id()).await;

    for (attempt, err) in &attempts {
        assert_eq!((err.status(), err.code()), (Some(404), "not_found"), "{attempt}: {err}");
    }
    assert_eq!(alice.get_conversation(&direct.id).await.unwrap(), conversation_before);
    assert_eq!(history(&alice, &direct.id).await, history_before);
}

#[tokio::test]
async fn an_outsider_gets_the_same_answer_as_for_a_conversation_that_does_not_exist() {
    let server = TestServer::spawn().await;
    let [alice, bob, eve] = server.users(["alice", "bob", "eve"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();
    let missing = "0190aaaa-0000-7000-8000-000000000000";

    let existing = eve.get_conversation(&direct.id).await.unwrap_err();
    let nonexistent = eve.get_conversation(missing).await.unwrap_err();

    assert_api_error(&existing, 404, "not_found");
    assert_eq!(existing.to_string(), nonexistent.to_string());
}

#[tokio::test]
async fn an_outsider_does_not_see_the_conversation_in_their_list() {
    let server = TestServer::spawn().await;
    let [alice, bob, eve] = server.users(["alice", "bob", "eve"]).await;
    let group = alice.create_group("Private", &[bob.id()]).await.unwrap();
    alice.send_text(&group.id, "secret").await.unwrap();
    let own = eve.create_direct(bob.id()).await.unwrap();

    let listed = eve.list_conversations().await.unwrap();

    assert_eq!(ids(&listed), [own.id.as_str()]);
}

#[tokio::test]
async fn an_outsider_cannot_reply_to_a_message_they_cannot_see() {
    let server = TestServer::spawn().await;
    let [alice, bob, eve] = server.users(["alice", "bob", "eve"]).await;
    let private = alice.create_direct(bob.id()).await.unwrap();
    let secret = alice.send_text(&private.id, "secret").await.unwrap();
    let own = eve.create_direct(bob.id()).await.unwrap();
    let body = SendMessage {
        content: "quoting".into(),
        client_id: None,
        reply_to: Some(secret.id.clone()),
    };

    let err = eve.send_message(&own.id, &body).await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert!(history(&eve, &own.id).await.is_empty());
}

#[tokio::test]
async fn a_removed_member_can_no_longer_edit_or_delete_their_old_messages() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    let old = bob.send_text(&group.id, "from before").await.unwrap();
    alice.remove_participant(&group.id, bob.id()).await.unwrap();

    let edit = bob.edit_message(&old.id, "rewritten").await.unwrap_err();
    let delete = bob.delete_message(&old.id).await.unwrap_err();

    assert_api_error(&edit, 404, "not_found");
    assert_api_error(&delete, 404, "not_found");
    assert_eq!(history(&alice, &group.id).await, [old]);
}

#[tokio::test]
async fn anonymous_requests_are_unauthorized_on_every_protected_route() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    let message = alice.send_text(&group.id, "hi").await.unwrap();
    let (c, m, b) = (&group.id, &message.id, bob.id());
    let routes = [
        (Method::GET, "/api/me".to_owned(), None),
        (Method::POST, "/api/auth/logout".to_owned(), None),
        (Method::GET, "/api/users?q=al".to_owned(), None),
        (Method::GET, "/api/conversations".to_owned(), None),
        (
            Method::POST,
            "/api/conversations".to_owned(),
            Some(json!({"type": "direct", "participant_ids": [b]})),
        ),
        (Method::GET, format!("/api/conversations/{c}"), None),
        (Method::PATCH, format!("/api/conversations/{c}"), Some(json!({"title": "x"}))),
        (
            Method::POST,
            format!("/api/conversations/{c}/participants"),
            Some(json!({"user_ids": [b]})),
        ),
        (Method::DELETE, format!("/api/conversations/{c}/participants/{b}"), None),
        (Method::POST, format!("/api/conversations/{c}/leave"), None),
        (Method::GET, format!("/api/conversations/{c}/messages"), None),
        (Method::POST, format!("/api/conversations/{c}/messages"), Some(json!({"content": "x"}))),
        (Method::POST, format!("/api/conversations/{c}/read"), Some(json!({"seq": 1}))),
        (Method::PATCH, format!("/api/messages/{m}"), Some(json!({"content": "x"}))),
        (Method::DELETE, format!("/api/messages/{m}"), None),
    ];
    let anonymous = server.client();

    for (method, path, body) in routes {
        let mut request = anonymous.raw(method.clone(), &path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();

        let (status, error) = json_error(response).await;
        assert_eq!((status, error.error.code.as_str()), (401, "unauthorized"), "{method} {path}");
    }
    assert_eq!(history(&alice, &group.id).await, [message]);
    assert_eq!(alice.get_conversation(&group.id).await.unwrap().participants.len(), 2);
}
