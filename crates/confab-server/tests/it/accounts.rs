//! Accounts: register, login, logout, `GET /api/me`, user search.

use confab_client::reqwest::Method;
use confab_client::reqwest::header::SET_COOKIE;
use serde_json::json;

use crate::harness::{PASSWORD, TestServer, assert_api_error};

#[tokio::test]
async fn registering_answers_the_user_and_a_token_that_signs_in() {
    let server = TestServer::spawn().await;
    let mut client = server.client();

    let auth = client.register("alice", PASSWORD).await.unwrap();

    assert_eq!(auth.user.username, "alice");
    assert!(!auth.token.is_empty());
    assert_eq!(client.token(), Some(auth.token.as_str()));
    assert_eq!(client.me().await.unwrap(), auth.user);
}

#[tokio::test]
async fn registering_sets_an_http_only_session_cookie() {
    let server = TestServer::spawn().await;

    let response = server
        .client()
        .raw(Method::POST, "/api/auth/register")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 201);
    let cookie = response.headers().get(SET_COOKIE).expect("a Set-Cookie header");
    let cookie = cookie.to_str().unwrap();
    assert!(cookie.starts_with("confab_session="), "{cookie}");
    assert!(cookie.to_ascii_lowercase().contains("httponly"), "{cookie}");
}

#[tokio::test]
async fn usernames_keep_their_case_but_are_unique_ignoring_case() {
    let server = TestServer::spawn().await;
    let alice = server.user("Alice").await;

    let err = server.client().register("aLICE", PASSWORD).await.unwrap_err();

    assert_eq!(alice.name(), "Alice");
    assert_api_error(&err, 409, "conflict");
}

#[tokio::test]
async fn login_ignores_the_case_of_the_username() {
    let server = TestServer::spawn().await;
    let alice = server.user("Alice").await;
    let mut client = server.client();

    let auth = client.login("ALICE", PASSWORD).await.unwrap();

    assert_eq!(auth.user, alice.user);
    assert_eq!(client.me().await.unwrap().id, alice.id());
}

#[tokio::test]
async fn usernames_outside_the_rules_are_refused() {
    let server = TestServer::spawn().await;
    let too_long = "a".repeat(33);

    for bad in ["ab", "", "with space", "émile", "a/b", "semi;colon", too_long.as_str()] {
        let err = server.client().register(bad, PASSWORD).await.unwrap_err();

        assert_api_error(&err, 422, "invalid_input");
    }
}

#[tokio::test]
async fn usernames_of_3_to_32_allowed_characters_are_accepted() {
    let server = TestServer::spawn().await;
    let longest = "Z".repeat(32);

    for good in ["abc", "a.b-c_D9", longest.as_str()] {
        let auth = server.client().register(good, PASSWORD).await.unwrap();

        assert_eq!(auth.user.username, good);
    }
}

#[tokio::test]
async fn passwords_must_be_8_to_1024_bytes() {
    let server = TestServer::spawn().await;

    let short = server.client().register("short", "1234567").await.unwrap_err();
    let long = server.client().register("long", &"x".repeat(1025)).await.unwrap_err();
    let shortest = server.client().register("shortest", "12345678").await;
    let longest = server.client().register("longest", &"x".repeat(1024)).await;

    assert_api_error(&short, 422, "invalid_input");
    assert_api_error(&long, 422, "invalid_input");
    assert!(shortest.is_ok(), "{shortest:?}");
    assert!(longest.is_ok(), "{longest:?}");
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized() {
    let server = TestServer::spawn().await;
    server.user("alice").await;

    let err = server.client().login("alice", "not the password").await.unwrap_err();

    assert_api_error(&err, 401, "unauthorized");
}

#[tokio::test]
async fn an_unknown_user_cannot_log_in() {
    let server = TestServer::spawn().await;

    let err = server.client().login("nobody", PASSWORD).await.unwrap_err();

    assert_api_error(&err, 401, "unauthorized");
}

#[tokio::test]
async fn each_login_gets_its_own_token() {
    let server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let mut second = server.client();

    let auth = second.login("alice", PASSWORD).await.unwrap();

    assert_ne!(Some(auth.token.as_str()), alice.token());
    assert_eq!(alice.me().await.unwrap().id, alice.id());
    assert_eq!(second.me().await.unwrap().id, alice.id());
}

#[tokio::test]
async fn a_logged_out_token_is_unauthorized() {
    let server = TestServer::spawn().await;
    let mut alice = server.user("alice").await;
    let old_token = alice.token().unwrap().to_owned();

    alice.logout().await.unwrap();

    assert_eq!(alice.token(), None);
    let err = server.client().with_token(old_token).me().await.unwrap_err();
    assert_api_error(&err, 401, "unauthorized");
}

#[tokio::test]
async fn logging_out_ends_only_that_session() {
    let server = TestServer::spawn().await;
    let mut alice = server.user("alice").await;
    let mut other_device = server.client();
    other_device.login("alice", PASSWORD).await.unwrap();

    alice.logout().await.unwrap();

    assert_eq!(other_device.me().await.unwrap().id, alice.id());
}

#[tokio::test]
async fn logging_out_twice_with_the_same_token_is_unauthorized() {
    let server = TestServer::spawn().await;
    let mut alice = server.user("alice").await;
    let token = alice.token().unwrap().to_owned();
    alice.logout().await.unwrap();
    let mut stale = server.client().with_token(token);

    let err = stale.logout().await.unwrap_err();

    assert_api_error(&err, 401, "unauthorized");
}

#[tokio::test]
async fn me_requires_a_token() {
    let server = TestServer::spawn().await;

    let err = server.client().me().await.unwrap_err();

    assert_api_error(&err, 401, "unauthorized");
}

#[tokio::test]
async fn an_invented_token_is_unauthorized() {
    let server = TestServer::spawn().await;
    server.user("alice").await;
    let huge = "a".repeat(4096);

    for token in ["invented", "x", huge.as_str()] {
        let err = server.client().with_token(token).me().await.unwrap_err();

        assert_api_error(&err, 401, "unauthorized");
    }
}

#[tokio::test]
async fn other_authorization_schemes_are_unauthorized() {
    let server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let token = alice.token().unwrap();

    for header in [format!("Basic {token}"), token.to_owned(), "Bearer".to_owned()] {
        let response = server
            .client()
            .raw(Method::GET, "/api/me")
            .header("authorization", header)
            .send()
            .await
            .unwrap();

        assert_eq!(response.status().as_u16(), 401);
    }
}

#[tokio::test]
async fn search_finds_users_by_case_insensitive_prefix_ordered_by_name() {
    let server = TestServer::spawn().await;
    server.users(["alice", "Albert", "bob", "xalice", "alfred"]).await;
    let [carol] = server.users(["carol"]).await;

    let found = carol.search_users("AL").await.unwrap();

    let names: Vec<&str> = found.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["Albert", "alfred", "alice"]);
}

#[tokio::test]
async fn search_answers_at_most_20_users() {
    let server = TestServer::spawn().await;
    for i in 0..21 {
        server.user(&format!("user{i:02}")).await;
    }
    let [carol] = server.users(["carol"]).await;

    let found = carol.search_users("user").await.unwrap();

    assert_eq!(found.len(), 20);
    assert_eq!(found[0].username, "user00");
    assert_eq!(found[19].username, "user19");
}

#[tokio::test]
async fn search_with_query_syntax_in_the_prefix_matches_nobody() {
    let server = TestServer::spawn().await;
    let [alice, _bob] = server.users(["alice", "bob"]).await;

    let found = alice.search_users("zz&q=b").await.unwrap();

    assert!(found.is_empty(), "{found:?}");
}
