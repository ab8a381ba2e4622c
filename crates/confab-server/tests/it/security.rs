//! Attacks a messenger meets, tried the way an attacker would: cross-site requests with the
//! victim's cookie, brute-forced passwords, floods, stolen sessions, and reading the database
//! file of a server with encryption at rest.

use std::time::Duration;

use confab_client::reqwest::{Method, StatusCode, header};
use confab_client::{Client, MessageQuery};
use confab_server::security::crypto::Keyring;
use confab_server::security::crypto::generate_key;
use confab_server::security::rate::Rate;
use serde_json::json;

use crate::harness::{
    PASSWORD, TestServer, assert_api_error, contains, database_bytes, history, json_error,
};

/// The `name=value` pairs of a response's Set-Cookie headers, by name.
fn cookie(response: &confab_client::reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or("")
}

/// Registers `name` through the raw API as a browser would; answers the Set-Cookie lines of
/// the session and CSRF cookies and the JSON body.
async fn browser_register(server: &TestServer, name: &str) -> (String, String, serde_json::Value) {
    let response = server
        .client()
        .raw(Method::POST, "/api/auth/register")
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session = cookie(&response, "confab_session").expect("session cookie");
    let csrf = cookie(&response, "confab_csrf").expect("csrf cookie");
    (session, csrf, response.json().await.unwrap())
}

#[tokio::test]
async fn a_cookie_authenticated_post_needs_the_csrf_token_and_bearer_calls_do_not() {
    let server = TestServer::spawn().await;
    let bob = server.user("bob").await;
    let (session, csrf, body) = browser_register(&server, "alice").await;
    let token = pair(&csrf).trim_start_matches("confab_csrf=").to_owned();
    assert_eq!(body["csrf_token"], token.as_str(), "the login answer carries the same token");
    assert!(session.to_ascii_lowercase().contains("httponly"));
    assert!(!csrf.to_ascii_lowercase().contains("httponly"), "the web client must read it");
    let create = |csrf_header: Option<&str>| {
        let mut request = server
            .client()
            .raw(Method::POST, "/api/conversations")
            .header(header::COOKIE, format!("{}; {}", pair(&session), pair(&csrf)))
            .json(&json!({"type": "direct", "participant_ids": [bob.id()]}));
        if let Some(value) = csrf_header {
            request = request.header("X-CSRF-Token", value);
        }
        request.send()
    };

    let (status, error) = json_error(create(None).await.unwrap()).await;
    assert_eq!((status, error.error.code.as_str()), (403, "forbidden"));
    let (status, _) = json_error(create(Some("forged")).await.unwrap()).await;
    assert_eq!(status, 403);
    assert!(bob.list_conversations().await.unwrap().is_empty(), "refused requests change nothing");

    // The right token from another site's page is still refused: the browser says where the
    // request comes from (Origin, Sec-Fetch-Site).
    for (name, value) in [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")] {
        let response = server
            .client()
            .raw(Method::POST, "/api/conversations")
            .header(header::COOKIE, format!("{}; {}", pair(&session), pair(&csrf)))
            .header("X-CSRF-Token", &token)
            .header(name, value)
            .json(&json!({"type": "direct", "participant_ids": [bob.id()]}))
            .send()
            .await
            .unwrap();
        let (status, error) = json_error(response).await;
        assert_eq!((status, error.error.code.as_str()), (403, "forbidden"), "{name}: {value}");
    }
    assert!(bob.list_conversations().await.unwrap().is_empty(), "refused requests change nothing");
    assert_eq!(create(Some(&token)).await.unwrap().status(), 201);
    // A program with a bearer token has no cookie for a hostile page to ride on: exempt.
    let alice = Client::new(server.base_url()).with_token(body["token"].as_str().unwrap());
    assert!(alice.create_group("Team", &[bob.id()]).await.is_ok());
}

#[tokio::test]
async fn sessions_are_listed_and_revoking_one_signs_it_out_everywhere() {
    let server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let mut laptop = server.client();
    laptop.login("alice", PASSWORD).await.unwrap();
    let mut socket = laptop.connect_ws(None).await.unwrap();
    socket.next_of("ready").await.unwrap();

    let sessions = alice.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s.current).count(), 1);
    let other = sessions.iter().find(|s| !s.current).unwrap();
    assert_eq!(other.ip.as_deref(), Some("127.0.0.1"));

    alice.revoke_session(&other.id).await.unwrap();

    assert_api_error(&laptop.me().await.unwrap_err(), 401, "unauthorized");
    let closed = socket.next_frame_within(Duration::from_secs(10)).await;
    assert!(
        matches!(closed, Ok(None) | Err(_)),
        "the revoked session's socket is closed, got {closed:?}"
    );
    assert_eq!(socket.close_code(), Some(4003));
    assert!(alice.me().await.is_ok(), "the current session lives on");
    assert_api_error(&alice.revoke_session(&other.id).await.unwrap_err(), 404, "not_found");
}

#[tokio::test]
async fn another_users_session_cannot_be_revoked_and_looks_missing() {
    let server = TestServer::spawn().await;
    let [alice, eve] = server.users(["alice", "eve"]).await;
    let alices = alice.list_sessions().await.unwrap();

    let err = eve.revoke_session(&alices[0].id).await.unwrap_err();

    assert_api_error(&err, 404, "not_found");
    assert!(alice.me().await.is_ok());
}

#[tokio::test]
async fn changing_the_password_signs_out_the_other_sessions() {
    let server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let mut phone = server.client();
    phone.login("alice", PASSWORD).await.unwrap();
    let mut tablet = server.client();
    tablet.login("alice", PASSWORD).await.unwrap();

    let wrong = alice.change_password("not my password", "a brand new password").await;
    assert_api_error(&wrong.unwrap_err(), 403, "forbidden");
    assert!(phone.me().await.is_ok(), "a refused change changes nothing");

    alice.change_password(PASSWORD, "a brand new password").await.unwrap();

    assert_api_error(&phone.me().await.unwrap_err(), 401, "unauthorized");
    assert_api_error(&tablet.me().await.unwrap_err(), 401, "unauthorized");
    assert!(alice.me().await.is_ok());
    let mut again = server.client();
    assert_api_error(&again.login("alice", PASSWORD).await.unwrap_err(), 401, "unauthorized");
    assert!(again.login("alice", "a brand new password").await.is_ok());
}

#[tokio::test]
async fn revoking_all_other_sessions_keeps_the_current_one() {
    let server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut c = server.client();
        c.login("alice", PASSWORD).await.unwrap();
        others.push(c);
    }

    assert_eq!(alice.revoke_other_sessions().await.unwrap(), 3);

    for c in &others {
        assert_api_error(&c.me().await.unwrap_err(), 401, "unauthorized");
    }
    assert_eq!(alice.list_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_idle_session_ends() {
    let server = TestServer::spawn_with(|c| c.session_idle_ms = 1500).await;
    let alice = server.user("alice").await;
    assert!(alice.me().await.is_ok());

    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert_api_error(&alice.me().await.unwrap_err(), 401, "unauthorized");
}

#[tokio::test]
async fn the_streams_of_a_session_that_ends_by_disuse_are_closed() {
    let server = TestServer::spawn_with(|c| c.session_idle_ms = 1500).await;
    let alice = server.user("alice").await;
    let mut ws = alice.connect_ws(None).await.unwrap();
    let mut sse = alice.connect_sse(None).await.unwrap();

    // No request from alice for longer than the idle timeout: her session ends, and its
    // streams with it, even though they were open all along.
    let closed = loop {
        match ws.next_frame_within(Duration::from_secs(10)).await.unwrap() {
            Some(_) => continue,
            None => break ws.close_code(),
        }
    };
    let sse_ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = sse.next_frame().await {}
    })
    .await;

    assert_eq!(closed, Some(4003), "closed with 'session ended'");
    assert!(sse_ended.is_ok(), "the SSE stream ended too");
    assert_api_error(&alice.me().await.unwrap_err(), 401, "unauthorized");
}

#[tokio::test]
async fn a_sign_out_racing_with_new_streams_leaves_no_stream_and_no_token_alive() {
    let server = TestServer::spawn().await;
    server.users(["alice"]).await;
    for round in 0..20 {
        let mut alice = server.reconnect_by_login("alice").await;
        let token_holder = alice.client.clone();
        // Streams opening while the sign-out runs.
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let client = token_holder.clone();
                tokio::spawn(async move {
                    let mut opened = Vec::new();
                    for _ in 0..5 {
                        match client.connect_ws(None).await {
                            Ok(ws) => opened.push(ws),
                            Err(_) => break, // refused: the sign-out came first
                        }
                    }
                    opened
                })
            })
            .collect();
        tokio::task::yield_now().await;
        alice.client.logout().await.unwrap();

        assert_api_error(&token_holder.me().await.unwrap_err(), 401, "unauthorized");
        for opener in openers {
            for mut ws in opener.await.unwrap() {
                let closed = loop {
                    match ws.next_frame_within(Duration::from_secs(5)).await {
                        Ok(Some(_)) => continue,
                        Ok(None) => break ws.close_code(),
                        Err(e) => panic!("round {round}: a stream outlived its sign-out ({e})"),
                    }
                };
                assert_eq!(closed, Some(4003), "round {round}");
            }
        }
        // Still dead a moment later (no request re-cached it).
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_api_error(&token_holder.me().await.unwrap_err(), 401, "unauthorized");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::spawn().await;
    if server.database().is_some() {
        return; // PostgreSQL keeps its own files
    }
    let alice = server.user("alice").await;
    let notes = alice.create_group::<&str>("Notes", &[]).await.unwrap();
    alice.send_text(&notes.id, "private").await.unwrap();

    for name in ["confab.db", "confab.db-wal", "confab.db-shm"] {
        let mode = std::fs::metadata(server.data_dir().join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
    }
}

#[tokio::test]
async fn clients_that_send_too_slowly_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let addr = server.base_url().trim_start_matches("http://").to_owned();
    let conv = alice.create_group::<&str>("Notes", &[]).await.unwrap();
    let token = alice.token().unwrap().to_owned();
    // Headers that never end, a body that never comes, and a connection that says nothing.
    let mut half_headers = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half_headers.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut half_body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/conversations/{}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"content\":",
        conv.id
    );
    half_body.write_all(head.as_bytes()).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();

    for (name, stream) in
        [("headers", &mut half_headers), ("body", &mut half_body), ("silence", &mut silent)]
    {
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(40), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a slow client ({name}) holds its connection");
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.starts_with("HTTP/1.1 2"), "{name}: {answer}");
    }
    assert_eq!(history(&alice, &conv.id).await.len(), 0, "the half-sent message was not stored");
}

#[tokio::test]
async fn the_sixth_rapid_wrong_password_is_throttled_for_that_account_only() {
    let server = TestServer::spawn().await;
    server.users(["alice", "bob"]).await;
    let mut attacker = server.client();

    for attempt in 1..=5 {
        let err = attacker.login("alice", "guess number x").await.unwrap_err();
        assert_api_error(&err, 401, "unauthorized");
        let _ = attempt;
    }
    let sixth = attacker
        .raw(Method::POST, "/api/auth/login")
        .json(&json!({"username": "alice", "password": "guess number 6"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 =
        sixth.headers()[header::RETRY_AFTER].to_str().unwrap().parse().expect("whole seconds");
    assert!(retry_after >= 1);
    assert_eq!(json_error(sixth).await.1.error.code, "rate_limited");
    // Even the right password waits: the back-off protects the account, not the guess.
    let err = attacker.login("alice", PASSWORD).await.unwrap_err();
    assert_api_error(&err, 429, "rate_limited");

    assert!(server.client().login("bob", PASSWORD).await.is_ok(), "other accounts are unaffected");
}

#[tokio::test]
async fn a_flood_of_sends_gets_429_with_retry_after_and_stores_nothing_more() {
    let server =
        TestServer::spawn_with(|c| c.rates.send_per_user = Some("1/m,20".parse::<Rate>().unwrap()))
            .await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let chat = alice.create_direct(bob.id()).await.unwrap();

    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..40 {
        let response = alice
            .raw(Method::POST, &format!("/api/conversations/{}/messages", chat.id))
            .json(&json!({"content": format!("spam {i}")}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => accepted += 1,
            429 => {
                assert!(response.headers().contains_key(header::RETRY_AFTER));
                assert_eq!(json_error(response).await.1.error.code, "rate_limited");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }

    assert_eq!((accepted, refused), (20, 20));
    assert_eq!(history(&alice, &chat.id).await.len(), 20, "a refused send stores nothing");
    assert!(bob.send_text(&chat.id, "I can still talk").await.is_ok(), "bob is unaffected");
}

#[tokio::test]
async fn responses_carry_the_security_headers_and_no_server_version() {
    let server = TestServer::spawn().await;
    let client = server.client();

    for path in ["/", "/api/me", "/healthz"] {
        let response = client.raw(Method::GET, path).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers.contains_key("permissions-policy"), "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(!headers.contains_key("server"), "{path}: no server banner");
        assert!(!headers.contains_key("strict-transport-security"), "{path}: HSTS only over TLS");
    }
}

/// Sends, edits and deletes marked messages; answers the texts that must not be on disk.
async fn write_secrets(server: &TestServer) -> (Vec<&'static str>, String) {
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let chat = alice.create_direct(bob.id()).await.unwrap();
    let kept = alice.send_text(&chat.id, "zebra-sunrise-4471 stays").await.unwrap();
    let edited = alice.send_text(&chat.id, "walrus-midnight-9032 before").await.unwrap();
    alice.edit_message(&edited.id, "walrus edited to otter-noon-5520").await.unwrap();
    let deleted = bob.send_text(&chat.id, "falcon-dusk-7719 gone").await.unwrap();
    bob.delete_message(&deleted.id).await.unwrap();
    let _ = kept;
    (
        vec!["zebra-sunrise-4471", "walrus-midnight-9032", "otter-noon-5520", "falcon-dusk-7719"],
        chat.id,
    )
}

#[tokio::test]
async fn without_a_key_content_is_plain_text_on_disk() {
    // The control for the test below: the byte search does find plain text.
    let mut server = TestServer::spawn().await;
    write_secrets(&server).await;
    server.stop().await;

    assert!(contains(&database_bytes(&server).await, "zebra-sunrise-4471"));
}

#[tokio::test]
async fn with_a_key_no_message_text_reaches_the_disk_and_rotation_keeps_everything_readable() {
    let old_key = generate_key();
    let key = old_key.clone();
    let mut server = TestServer::spawn_with(move |c| {
        c.keyring = Some(std::sync::Arc::new(Keyring::new(&key, "").unwrap()));
    })
    .await;
    let (secrets, chat) = write_secrets(&server).await;
    let alice = server.reconnect_by_login("alice").await;
    let before = history(&alice, &chat).await;
    assert_eq!(before[0].content, "zebra-sunrise-4471 stays", "readable through the API");
    assert_eq!(before[1].content, "walrus edited to otter-noon-5520");
    server.stop().await;

    let bytes = database_bytes(&server).await;
    for secret in &secrets {
        assert!(!contains(&bytes, secret), "{secret} is on disk in plain text");
    }

    // Rotate: the server runs with the new key and the old one retired, while
    // `confab keys rotate` re-encrypts everything under the new key.
    let new_key = generate_key();
    let (k_new, k_old) = (new_key.clone(), old_key.clone());
    server
        .restart_with(move |c| {
            c.keyring = Some(std::sync::Arc::new(Keyring::new(&k_new, &k_old).unwrap()));
        })
        .await;
    let url = server.database_url();
    let keys = std::sync::Arc::new(Keyring::new(&new_key, &old_key).unwrap());
    let rotate = |keys| {
        let url = url.clone();
        async move {
            if url.starts_with("postgres") {
                confab_server::store::postgres::rotate_keys(&url, keys).await.unwrap()
            } else {
                confab_server::store::sqlite::rotate_keys(&url, keys).await.unwrap()
            }
        }
    };
    let rotated = rotate(keys.clone()).await;
    assert!(rotated.messages >= 2 && rotated.events >= 2, "{rotated:?}");
    let again = rotate(keys).await;
    assert_eq!((again.messages, again.events), (0, 0), "a second pass finds nothing left");

    // Now the old key can go: everything reads with the new key alone, history and replay.
    let k_new = new_key.clone();
    server
        .restart_with(move |c| {
            c.keyring = Some(std::sync::Arc::new(Keyring::new(&k_new, "").unwrap()));
        })
        .await;
    let alice = server.reconnect_by_login("alice").await;
    assert_eq!(history(&alice, &chat).await, before);
    let page = alice.list_messages(&chat, &MessageQuery::default()).await.unwrap();
    assert_eq!(page.messages, before);
}

#[tokio::test]
async fn look_alike_usernames_are_refused() {
    let server = TestServer::spawn().await;
    server.user("alice").await;

    for look_alike in ["AL1CE", "al1ce", "aIice"] {
        let err = server.client().register(look_alike, PASSWORD).await.unwrap_err();
        assert_api_error(&err, 409, "conflict");
    }
    server.user("bob.smith").await;
    let err = server.client().register("bob_smith", PASSWORD).await.unwrap_err();
    assert_api_error(&err, 409, "conflict");
    // v's and w's, however they line up ("vwx" and "vvvx" both read "vvvx").
    for (first, second) in [("vwx", "vvvx"), ("xvw", "xwv"), ("mrn", "rnm")] {
        server.user(first).await;
        let err = server.client().register(second, PASSWORD).await.unwrap_err();
        assert_api_error(&err, 409, "conflict");
    }
}

#[tokio::test]
async fn tls_serves_https_with_hsts_and_secure_cookies() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a self-signed certificate");
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = (cert_path.clone(), key_path.clone());
    let server = TestServer::spawn_with(move |c| c.tls = Some(tls.clone())).await;
    let https = server.base_url().replace("http://", "https://");
    // A client that trusts the test certificate.
    let trusting = |builder: confab_client::reqwest::ClientBuilder| {
        builder
            .add_root_certificate(
                confab_client::reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .no_proxy()
            .build()
            .unwrap()
    };
    let client = trusting(confab_client::reqwest::Client::builder());

    let health = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers()["strict-transport-security"].to_str().unwrap().contains("max-age="));
    let registered = client
        .post(format!("{https}/api/auth/register"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    for name in ["confab_session", "confab_csrf"] {
        let set = cookie(&registered, name).unwrap();
        assert!(set.contains("; Secure"), "{set}");
    }
    // HTTP/2 and HTTP/1.1 are both served, chosen by ALPN.
    for (builder, version) in [
        (confab_client::reqwest::Client::builder(), confab_client::reqwest::Version::HTTP_2),
        (
            confab_client::reqwest::Client::builder().http1_only(),
            confab_client::reqwest::Version::HTTP_11,
        ),
    ] {
        let health = trusting(builder).get(format!("{https}/healthz")).send().await.unwrap();
        assert_eq!((health.status().as_u16(), health.version()), (200, version));
    }
    // Plain HTTP on the TLS port is not served.
    let plain = Client::new(server.base_url()).health().await;
    assert!(plain.is_err());
}
