//! Real-time delivery over real sockets: WebSocket, SSE and long-poll; every event type;
//! privacy of the stream; resume after disconnects and restarts; the too-old cursor; slow
//! consumers; typing expiry; presence; cross-site WebSocket hijacking; a third-party client.

use std::collections::HashSet;
use std::time::Duration;

use confab_client::reqwest::Method;
use confab_client::{Event, Frame, Message, SseStream, WsStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;

/// Frames until (and including) the first of type `kind`.
async fn frames_until(ws: &mut WsStream, kind: &str) -> Vec<Frame> {
    let mut seen = Vec::new();
    loop {
        let frame = ws.next_frame().await.unwrap().expect("the socket stays open");
        let done = frame.kind == kind;
        seen.push(frame);
        if done {
            return seen;
        }
    }
}

/// The next `n` messages of `new_message` frames on a WebSocket, skipping other frames.
async fn ws_messages(ws: &mut WsStream, n: usize) -> Vec<Message> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Event::NewMessage(m) = ws.next_of("new_message").await.unwrap().event().unwrap() {
            out.push(m);
        }
    }
    out
}

async fn sse_messages(sse: &mut SseStream, n: usize) -> Vec<Message> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Event::NewMessage(m) = sse.next_of("new_message").await.unwrap().event().unwrap() {
            out.push(m);
        }
    }
    out
}

/// Proves that nothing about `conversation_id` reached `ws` before now: a marker message in a
/// conversation of the stream's own user must be the next message event to arrive, and no
/// frame before it may mention `conversation_id`.
async fn assert_nothing_about(
    ws: &mut WsStream,
    marker_conv: &str,
    marker_sender: &TestUser,
    conversation_id: &str,
) {
    let marker = marker_sender.send_text(marker_conv, "marker").await.unwrap();
    loop {
        let frame = ws.next_frame().await.unwrap().expect("open");
        let text = serde_json::to_string(&frame.payload).unwrap();
        assert!(!text.contains(conversation_id), "leaked frame: {} {text}", frame.kind);
        if let Ok(Event::NewMessage(m)) = frame.event()
            && m.id == marker.id
        {
            return;
        }
    }
}

#[tokio::test]
async fn every_event_type_reaches_every_device_of_every_member_and_nobody_else() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol, dave, eve] =
        server.users(["alice", "bob", "carol", "dave", "eve"]).await;
    let mut alice_phone = alice.connect_ws(None).await.unwrap();
    let mut alice_laptop = alice.connect_ws(None).await.unwrap();
    let mut bob_ws = bob.connect_ws(None).await.unwrap();
    let mut eve_ws = eve.connect_ws(None).await.unwrap();
    for ws in [&mut alice_phone, &mut alice_laptop, &mut bob_ws, &mut eve_ws] {
        ws.next_of("ready").await.unwrap();
    }

    let group = alice.create_group("Trip", &[bob.id(), carol.id()]).await.unwrap();
    let sent = alice.send_text(&group.id, "first").await.unwrap();
    alice.edit_message(&sent.id, "first!").await.unwrap();
    alice.rename_conversation(&group.id, "Trip 2027").await.unwrap();
    alice.add_participants(&group.id, &[dave.id()]).await.unwrap();
    alice.remove_participant(&group.id, dave.id()).await.unwrap();
    bob.mark_read(&group.id, 1).await.unwrap();
    // Over REST, so each is done before the next call (the socket variants are tested below).
    bob.mark_delivered(&group.id, 1).await.unwrap();
    bob.set_typing(&group.id, true).await.unwrap();
    alice.delete_message(&sent.id).await.unwrap();

    let expected = [
        "conversation_created",
        "new_message",
        "message_updated",
        "conversation_updated",
        "participant_added",
        "participant_removed",
        "read",
        "delivered",
        "typing",
        "message_deleted",
    ];
    // Presence is not part of this sequence: a contact's "online" is announced in the
    // background when a socket opens, so it may land anywhere once the group makes the members
    // contacts (its own test is below).
    for ws in [&mut alice_phone, &mut alice_laptop, &mut bob_ws] {
        let kinds: Vec<String> = frames_until(ws, "message_deleted")
            .await
            .into_iter()
            .map(|f| f.kind)
            .filter(|kind| kind != "presence")
            .collect();
        assert_eq!(kinds, expected);
    }
    let eve_and_carol = eve.create_direct(carol.id()).await.unwrap();
    assert_nothing_about(&mut eve_ws, &eve_and_carol.id, &carol, &group.id).await;
}

#[tokio::test]
async fn a_new_message_payload_is_exactly_the_rest_message_on_every_transport() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut ws = bob.connect_ws(None).await.unwrap();
    let ready = ws.next_of("ready").await.unwrap();
    let mut sse = bob.connect_sse(None).await.unwrap();
    sse.next_of("ready").await.unwrap();
    let start = bob.poll_events(None, 0).await.unwrap();

    let sent = alice.send_text(&conv.id, "hello <b>bob</b>").await.unwrap();

    let from_rest = bob.list_messages(&conv.id, &Default::default()).await.unwrap().messages;
    let over_ws = ws.next_of("new_message").await.unwrap();
    let over_sse = sse.next_of("new_message").await.unwrap();
    let polled = bob.poll_events(Some(&start.cursor), 10).await.unwrap();
    assert_eq!(from_rest, vec![sent.clone()]);
    assert_eq!(over_ws.payload, serde_json::to_value(&sent).unwrap());
    assert_eq!(over_sse, over_ws);
    assert_eq!(polled.events, vec![over_ws.clone()]);
    assert_eq!(polled.cursor, over_ws.cursor.clone().unwrap());
    assert_eq!(ready.payload["cursor"], start.cursor);
}

#[tokio::test]
async fn concurrent_senders_reach_every_receiver_once_each_in_order() {
    const SENDERS: usize = 5;
    const EACH: usize = 20;
    let server = TestServer::spawn().await;
    let [a, b, c, d, e] = server.users(["ann", "ben", "cat", "dan", "eva"]).await;
    let others = [b.id(), c.id(), d.id(), e.id()];
    let group = a.create_group("busy", &others).await.unwrap();
    let mut receivers = Vec::new();
    for user in [&a, &b, &c, &d, &e] {
        let mut ws = user.connect_ws(None).await.unwrap();
        ws.next_of("ready").await.unwrap();
        receivers.push(ws);
    }

    let mut tasks = Vec::new();
    for user in [&a, &b, &c, &d, &e] {
        let client = user.client.clone();
        let conv = group.id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                client.send_text(&conv, &format!("{i}")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    for ws in &mut receivers {
        let got = ws_messages(ws, SENDERS * EACH).await;
        let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
        let expected: Vec<i64> = (1..=(SENDERS * EACH) as i64).collect();
        assert_eq!(seqs, expected, "every message once, in seq order");
    }
}

#[tokio::test]
async fn a_websocket_client_resumes_with_every_missed_message_exactly_once() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut ws = bob.connect_ws(None).await.unwrap();
    ws.next_of("ready").await.unwrap();
    let cursor = ws.cursor().unwrap().to_owned();
    ws.close().await;

    let sent = send_numbered(&alice.client, &conv.id, 100).await;
    let mut resumed = bob.connect_ws(Some(&cursor)).await.unwrap();
    let got = ws_messages(&mut resumed, 100).await;
    let after = alice.send_text(&conv.id, "live").await.unwrap();

    assert_eq!(got, sent);
    assert_eq!(ws_messages(&mut resumed, 1).await, vec![after], "no duplicate before live");
}

#[tokio::test]
async fn an_sse_client_resumes_from_last_event_id() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut sse = bob.connect_sse(None).await.unwrap();
    sse.next_of("ready").await.unwrap();
    let first = alice.send_text(&conv.id, "before").await.unwrap();
    assert_eq!(sse_messages(&mut sse, 1).await, vec![first]);
    let cursor = sse.cursor().unwrap().to_owned();
    drop(sse);

    let sent = send_numbered(&alice.client, &conv.id, 100).await;
    let mut resumed = bob.connect_sse(Some(&cursor)).await.unwrap();
    let got = sse_messages(&mut resumed, 100).await;
    let after = alice.send_text(&conv.id, "live").await.unwrap();

    assert_eq!(got, sent);
    assert_eq!(sse_messages(&mut resumed, 1).await, vec![after]);
}

#[tokio::test]
async fn a_long_poll_client_gets_every_missed_message_once_across_polls() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let start = bob.poll_events(None, 0).await.unwrap();

    let sent = send_numbered(&alice.client, &conv.id, 100).await;
    let mut cursor = start.cursor;
    let mut got: Vec<Message> = Vec::new();
    while got.len() < 100 {
        let answer = bob.poll_events(Some(&cursor), 5).await.unwrap();
        assert!(!answer.events.is_empty(), "a poll with missed events answers them");
        for frame in answer.events {
            if let Ok(Event::NewMessage(m)) = frame.event() {
                got.push(m);
            }
        }
        cursor = answer.cursor;
    }
    let empty = bob.poll_events(Some(&cursor), 1).await.unwrap();

    assert_eq!(got, sent);
    assert!(empty.events.is_empty());
    assert_eq!(empty.cursor, cursor);
}

/// The messages `user` replays from `cursor` to the head, by long-polling.
async fn replayed_messages(user: &TestUser, cursor: &str) -> Vec<Message> {
    let (mut cursor, mut got) = (cursor.to_owned(), Vec::new());
    loop {
        let answer = user.poll_events(Some(&cursor), 0).await.unwrap();
        if answer.events.is_empty() {
            return got;
        }
        for frame in answer.events {
            if let Ok(Event::NewMessage(m)) = frame.event() {
                got.push(m);
            }
        }
        cursor = answer.cursor;
    }
}

#[tokio::test]
async fn a_long_replay_is_whole_and_carries_edits_and_deletes_across_restarts() {
    // Enough events that the log's index tables are filled more than once (every 512 events
    // on SQLite) and some are left after the last filling; another conversation's events are
    // interleaved with Bob's.
    let mut server = TestServer::spawn_with(|c| c.rates.send_per_user = None).await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let ours = alice.create_direct(bob.id()).await.unwrap();
    let theirs = alice.create_direct(carol.id()).await.unwrap();
    let start = bob.poll_events(None, 0).await.unwrap().cursor;
    let mut sent = Vec::new();
    for i in 1..=600 {
        sent.push(alice.send_text(&ours.id, &format!("ours {i}")).await.unwrap());
        alice.send_text(&theirs.id, &format!("theirs {i}")).await.unwrap();
    }
    alice.edit_message(&sent[2].id, "edited early").await.unwrap();
    alice.delete_message(&sent[4].id).await.unwrap();
    alice.delete_message(&sent[599].id).await.unwrap();
    // Edits and deletes file every event before them; these are left unfiled.
    sent.extend(send_numbered(&alice.client, &ours.id, 10).await);

    for round in ["before a restart", "after a restart"] {
        let bob = server.reconnect(&bob);
        let got = replayed_messages(&bob, &start).await;
        let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=610).collect::<Vec<i64>>(), "{round}: Bob's messages, each once");
        assert_eq!(got[0].content, "ours 1", "{round}");
        assert_eq!(got[2].content, "edited early", "{round}: the edit reached the old event");
        for deleted in [4, 599] {
            assert!(got[deleted].deleted && got[deleted].content.is_empty(), "{round}: {deleted}");
        }
        assert_eq!(got[598].content, "ours 599", "{round}");
        assert_eq!(got[609].content, "message 10", "{round}");
        if round == "before a restart" {
            server.restart().await;
        }
    }
}

#[tokio::test]
async fn a_poll_timeout_beyond_64_bits_is_the_longest_wait_not_an_error() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let start = bob.poll_events(None, 0).await.unwrap();
    let sent = alice.send_text(&conv.id, "waiting for you").await.unwrap();

    let query = [("cursor", start.cursor.as_str()), ("timeout", "99999999999999999999")];
    let response = bob.raw(Method::GET, "/api/events/poll").query(&query).send().await.unwrap();

    assert_eq!(response.status().as_u16(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    let ids: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "new_message")
        .map(|e| e["payload"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sent.id.as_str()], "the missed message, at once");
}

#[tokio::test]
async fn the_event_stream_is_never_stored_by_caches() {
    let server = TestServer::spawn().await;
    let [bob] = server.users(["bob"]).await;

    let response = bob.raw(Method::GET, "/api/events").send().await.unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_websocket_frame_over_the_limit_is_answered_then_closed_with_1009() {
    use futures_util::{SinkExt, StreamExt};
    let server = TestServer::spawn().await;
    let [bob] = server.users(["bob"]).await;
    let url = format!("{}/api/ws", server.base_url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", bob.token().unwrap()).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(300 * 1024));

    ws.send(tungstenite::Message::text(huge)).await.unwrap();

    let (mut error, mut close) = (None, None);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match frame {
            tungstenite::Message::Text(text) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "error" {
                    error = Some(frame["payload"]["code"].as_str().unwrap().to_owned());
                }
            }
            tungstenite::Message::Close(frame) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(error.as_deref(), Some("payload_too_large"), "the client is told why");
    assert_eq!(close, Some(1009), "then closed with RFC 6455's 'message too big'");
}

#[tokio::test]
async fn a_held_long_poll_answers_when_a_message_arrives() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let start = bob.poll_events(None, 0).await.unwrap();
    let bob_client = bob.client.clone();
    let cursor = start.cursor.clone();
    let poll = tokio::spawn(async move { bob_client.poll_events(Some(&cursor), 30).await });
    tokio::time::sleep(Duration::from_millis(300)).await; // let the poll start waiting

    let sent = alice.send_text(&conv.id, "wake up").await.unwrap();
    let answer = poll.await.unwrap().unwrap();

    let messages: Vec<Message> = answer
        .events
        .iter()
        .filter_map(|f| match f.event() {
            Ok(Event::NewMessage(m)) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(messages, vec![sent]);
}

#[tokio::test]
async fn nothing_is_lost_when_the_server_restarts_between_disconnect_and_resume() {
    let mut server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut ws = bob.connect_ws(None).await.unwrap();
    ws.next_of("ready").await.unwrap();
    let cursor = ws.cursor().unwrap().to_owned();
    ws.close().await;
    let sent = send_numbered(&alice.client, &conv.id, 50).await;

    server.restart().await;
    let bob = server.reconnect(&bob);
    let mut resumed = bob.connect_ws(Some(&cursor)).await.unwrap();

    assert_eq!(ws_messages(&mut resumed, 50).await, sent);
}

#[tokio::test]
async fn a_cursor_too_far_behind_gets_resync_required_instead_of_a_silent_gap() {
    let server = TestServer::spawn_with(|c| c.replay_limit = 10).await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let start = bob.poll_events(None, 0).await.unwrap();
    send_numbered(&alice.client, &conv.id, 20).await;

    let mut ws = bob.connect_ws(Some(&start.cursor)).await.unwrap();
    let first = ws.next_frame().await.unwrap().unwrap();
    let polled = bob.poll_events(Some(&start.cursor), 0).await.unwrap();
    let mut garbage = bob.connect_ws(Some("not-a-cursor")).await.unwrap();

    assert_eq!(first.kind, "resync_required");
    let Event::ResyncRequired(resync) = first.event().unwrap() else { unreachable!() };
    assert_eq!(polled.events[0].kind, "resync_required");
    assert_eq!(polled.cursor, resync.cursor);
    assert_eq!(garbage.next_frame().await.unwrap().unwrap().kind, "resync_required");
    // After a REST re-sync, the new cursor resumes normally.
    let mut again = bob.connect_ws(Some(&resync.cursor)).await.unwrap();
    assert_eq!(again.next_frame().await.unwrap().unwrap().kind, "ready");
}

#[tokio::test]
async fn a_consumer_that_cannot_keep_up_is_cut_off_while_others_stay_on_time() {
    const MESSAGES: usize = 400;
    let server = TestServer::spawn_with(|c| c.connection_queue = 16).await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut fast = bob.connect_ws(None).await.unwrap();
    fast.next_of("ready").await.unwrap();
    // A socket with a tiny receive buffer that we never read from.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = server.base_url().trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/api/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", bob.token().unwrap()).parse().unwrap());
    let (mut slow, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    let big = "x".repeat(16 * 1024);

    let reader = tokio::spawn(async move { ws_messages(&mut fast, MESSAGES).await.len() });
    for _ in 0..MESSAGES {
        alice.send_text(&conv.id, &big).await.unwrap();
    }

    assert_eq!(reader.await.unwrap(), MESSAGES, "the fast reader got everything");
    use futures_util::StreamExt;
    let close_code = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
            Ok(Some(Ok(tungstenite::Message::Close(Some(frame))))) => break u16::from(frame.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close_code, 4008, "cut off with the 'resume from your cursor' code");
}

#[tokio::test]
async fn typing_reaches_the_others_and_expires_without_a_refresh() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut alice_ws = alice.connect_ws(None).await.unwrap();
    alice_ws.next_of("ready").await.unwrap();
    let mut bob_ws = bob.connect_ws(None).await.unwrap();
    bob_ws.next_of("ready").await.unwrap();

    bob_ws.send_typing(&conv.id, true).await.unwrap();

    let started = alice_ws.next_of("typing").await.unwrap().event().unwrap();
    let Event::Typing(started) = started else { unreachable!() };
    assert!(started.typing);
    assert_eq!(started.user_id, bob.id());
    // No refresh: the server ends it by itself about 5 s later.
    let ended = alice_ws.next_of("typing").await.unwrap().event().unwrap();
    let Event::Typing(ended) = ended else { unreachable!() };
    assert!(!ended.typing);
    assert_eq!(ended.user_id, bob.id());
}

#[tokio::test]
async fn presence_goes_online_and_offline_after_the_last_connection_closes() {
    let server = TestServer::spawn_with(|c| c.presence_grace_ms = 300).await;
    let [alice, bob, eve] = server.users(["alice", "bob", "eve"]).await;
    alice.create_direct(bob.id()).await.unwrap();
    let mut alice_ws = alice.connect_ws(None).await.unwrap();
    alice_ws.next_of("ready").await.unwrap();
    let mut eve_ws = eve.connect_ws(None).await.unwrap();
    eve_ws.next_of("ready").await.unwrap();

    let bob_phone = bob.connect_ws(None).await.unwrap();
    let bob_laptop = bob.connect_ws(None).await.unwrap();
    let online = alice_ws.next_of("presence").await.unwrap();
    bob_phone.close().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still_online = alice.list_presence().await.unwrap();
    bob_laptop.close().await;
    let offline = alice_ws.next_of("presence").await.unwrap();

    let Event::Presence(online) = online.event().unwrap() else { unreachable!() };
    assert_eq!((online.user_id.as_str(), online.online), (bob.id(), true));
    assert!(
        still_online.iter().any(|p| p.user_id == bob.id() && p.online),
        "one device is still on"
    );
    let Event::Presence(offline) = offline.event().unwrap() else { unreachable!() };
    assert_eq!((offline.user_id.as_str(), offline.online), (bob.id(), false));
    assert!(offline.last_seen.is_some());
    let listed = alice.list_presence().await.unwrap();
    assert!(listed.iter().any(|p| p.user_id == bob.id() && !p.online && p.last_seen.is_some()));
    assert!(eve.list_presence().await.unwrap().is_empty(), "eve shares no conversation with bob");
    let eve_marker = eve.create_direct(alice.id()).await.unwrap();
    alice.send_text(&eve_marker.id, "marker").await.unwrap();
    for frame in frames_until(&mut eve_ws, "new_message").await {
        assert_ne!(frame.kind, "presence", "eve must not see bob's presence");
    }
}

#[tokio::test]
async fn a_removed_participant_stops_receiving_at_once() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("g", &[bob.id(), carol.id()]).await.unwrap();
    let mut carol_ws = carol.connect_ws(None).await.unwrap();
    carol_ws.next_of("ready").await.unwrap();

    alice.remove_participant(&group.id, carol.id()).await.unwrap();
    let removed = carol_ws.next_of("participant_removed").await.unwrap();
    alice.send_text(&group.id, "secret plans").await.unwrap();

    let Event::ParticipantRemoved(change) = removed.event().unwrap() else { unreachable!() };
    assert_eq!(change.user_id, carol.id());
    let side = carol.create_direct(bob.id()).await.unwrap();
    assert_nothing_about(&mut carol_ws, &side.id, &bob, &group.id).await;
}

#[tokio::test]
async fn read_receipts_can_be_kept_private() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    alice.send_text(&conv.id, "did you read this?").await.unwrap();
    let me =
        bob.update_me(&confab_client::UpdateMe { share_read_receipts: Some(false) }).await.unwrap();
    let mut alice_ws = alice.connect_ws(None).await.unwrap();
    alice_ws.next_of("ready").await.unwrap();
    let mut bob_ws = bob.connect_ws(None).await.unwrap();
    bob_ws.next_of("ready").await.unwrap();

    bob.mark_read(&conv.id, 1).await.unwrap();
    let own_device = bob_ws.next_of("read").await.unwrap();
    let bob_view = bob.get_conversation(&conv.id).await.unwrap();
    alice.send_text(&conv.id, "marker").await.unwrap();

    assert!(!me.share_read_receipts);
    assert_eq!(bob_view.unread_count, 0);
    assert_eq!(own_device.payload["seq"], 1);
    for frame in frames_until(&mut alice_ws, "new_message").await {
        assert_ne!(frame.kind, "read", "alice must not see bob's read receipt");
    }
    let seen_by_alice = alice.get_conversation(&conv.id).await.unwrap();
    let bob_row = seen_by_alice.participants.iter().find(|p| p.user_id == bob.id()).unwrap();
    assert_eq!(bob_row.last_read_seq, 0);
}

#[tokio::test]
async fn a_message_sent_over_the_websocket_is_acknowledged_once_per_client_id() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut ws = alice.connect_ws(None).await.unwrap();
    ws.next_of("ready").await.unwrap();

    ws.send_message(&conv.id, "via socket", Some("k-1")).await.unwrap();
    let first = ws.next_of("ack").await.unwrap();
    ws.send_message(&conv.id, "via socket", Some("k-1")).await.unwrap();
    let second = ws.next_of("ack").await.unwrap();
    ws.send_message("no-such-conversation", "x", Some("k-2")).await.unwrap();
    let refused = ws.next_of("error").await.unwrap();
    let mut bob_ws = bob.connect_ws(None).await.unwrap();
    bob_ws.next_of("ready").await.unwrap();
    bob_ws.send_delivered(&conv.id, 1).await.unwrap();
    let delivered = ws.next_of("delivered").await.unwrap();

    assert_eq!(first.payload, second.payload);
    assert_eq!(first.payload["message"]["seq"], 1);
    assert_eq!(refused.payload["code"], "not_found");
    assert_eq!(refused.payload["client_id"], "k-2");
    assert_eq!(delivered.payload["user_id"], bob.id());
    assert_eq!(delivered.payload["seq"], 1);
    assert_eq!(history(&alice.client, &conv.id).await.len(), 1);
}

#[tokio::test]
async fn shutdown_closes_websockets_with_the_restart_code() {
    let mut server = TestServer::spawn().await;
    let alice = server.user("alice").await;
    let mut ws = alice.connect_ws(None).await.unwrap();
    ws.next_of("ready").await.unwrap();

    server.restart().await;

    loop {
        if ws.next_frame().await.unwrap().is_none() {
            break;
        }
    }
    assert_eq!(ws.close_code(), Some(1012));
}

#[tokio::test]
async fn a_cookie_authenticated_websocket_from_another_origin_is_refused() {
    let server = TestServer::spawn().await;
    let response = server
        .client()
        .raw(confab_client::reqwest::Method::POST, "/api/auth/register")
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie =
        response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let host = server.base_url().trim_start_matches("http://").to_owned();
    let upgrade = |origin: String| {
        let mut request = format!("ws://{host}/api/ws").into_client_request().unwrap();
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };

    let hijack = upgrade("http://evil.example".into()).await;
    let same_site = upgrade(format!("http://{host}")).await;

    match hijack {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!("a cross-origin upgrade must be refused, got {:?}", other.map(|_| ())),
    }
    assert!(same_site.is_ok(), "the same origin may upgrade with its cookie");
}

#[tokio::test]
async fn a_third_party_python_websocket_client_speaks_the_protocol() {
    let python = std::env::var("CONFAB_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").to_owned()
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/ws_client.py");
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let url = format!("{}/api/ws", server.base_url().replacen("http", "ws", 1));
    let mut child = tokio::process::Command::new(&python)
        .args([script, &url, alice.token().unwrap(), &conv.id])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (install tests/interop/requirements.txt into .venv, or set CONFAB_PYTHON): {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap();
        let line = line.expect("the client says READY_FOR_RUST before ending");
        seen.push(line.clone());
        if line == "READY_FOR_RUST" {
            break;
        }
    }

    bob.send_text(&conv.id, "from rust").await.unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }

    assert!(status.success(), "python client failed: {seen:#?}");
    assert_eq!(seen.last().map(String::as_str), Some("INTEROP_OK"));
    let stored = history(&bob.client, &conv.id).await;
    let contents: HashSet<&str> = stored.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, HashSet::from(["from python", "from rust"]));
}

#[tokio::test]
async fn connections_per_user_are_limited_and_a_reconnect_resumes() {
    let server = TestServer::spawn_with(|c| c.max_connections_per_user = 2).await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let mut first = bob.connect_ws(None).await.unwrap();
    first.next_of("ready").await.unwrap();
    let _second = bob.connect_sse(None).await.unwrap();

    let third = bob.connect_ws(None).await;
    let polled = bob.poll_events(Some(first.cursor().unwrap()), 0).await;
    let sent = alice.send_text(&conv.id, "still here").await.unwrap();
    first.reconnect().await.unwrap();

    assert_api_error(&third.err().expect("a third stream is refused"), 429, "websocket_refused");
    assert_api_error(&polled.unwrap_err(), 429, "rate_limited");
    assert_eq!(ws_messages(&mut first, 1).await, vec![sent], "the reconnect resumed");
}
