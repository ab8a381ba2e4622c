//! Durability: concurrent senders get a gapless, unique sequence, and a graceful restart keeps
//! everything (accounts, sessions, conversations, messages, read state, idempotency keys).

use std::collections::HashSet;

use confab_client::{Message, SendMessage};
use futures_util::future::join_all;

use crate::harness::{
    PASSWORD, TestServer, TestUser, assert_api_error, contains, database_bytes, history,
    on_postgres, send_numbered, seqs,
};

/// Registers `n` senders and alice, puts them all in one group, and has every sender send
/// `per_sender` messages at once, each from its own task and client. Answers the group id and
/// what each sender was acknowledged, in its own sending order.
async fn concurrent_sends(
    server: &TestServer,
    n: usize,
    per_sender: usize,
) -> (TestUser, String, Vec<Vec<Message>>) {
    let alice = server.user("alice").await;
    let mut senders = Vec::with_capacity(n);
    for i in 0..n {
        senders.push(server.user(&format!("sender{i:02}")).await);
    }
    let member_ids: Vec<&str> = senders.iter().map(TestUser::id).collect();
    let group = alice.create_group("Crowd", &member_ids).await.unwrap();

    let tasks = senders.into_iter().enumerate().map(|(i, sender)| {
        let group_id = group.id.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::with_capacity(per_sender);
            for j in 0..per_sender {
                let content = format!("sender {i} message {j}");
                acknowledged.push(sender.send_text(&group_id, &content).await.unwrap());
            }
            acknowledged
        })
    });
    let acknowledged =
        join_all(tasks).await.into_iter().map(|joined| joined.unwrap()).collect::<Vec<_>>();
    (alice, group.id, acknowledged)
}

#[tokio::test]
async fn fifty_concurrent_senders_get_gapless_unique_seqs() {
    let server = TestServer::spawn().await;

    let (alice, group_id, acknowledged) = concurrent_sends(&server, 50, 4).await;

    let stored = history(&alice, &group_id).await;
    assert_eq!(seqs(&stored), (1..=200).collect::<Vec<i64>>());
    let unique_ids: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(unique_ids.len(), 200);
    for sent in &acknowledged {
        assert!(sent.windows(2).all(|w| w[0].seq < w[1].seq), "one sender's seqs go up");
        for message in sent {
            assert_eq!(&stored[(message.seq - 1) as usize], message);
        }
    }
    assert_eq!(alice.get_conversation(&group_id).await.unwrap().last_seq, 200);
}

#[tokio::test]
async fn every_acknowledged_message_survives_a_restart() {
    let mut server = TestServer::spawn().await;
    let (alice, group_id, acknowledged) = concurrent_sends(&server, 10, 5).await;

    server.restart().await;

    let alice = server.reconnect(&alice);
    let stored = history(&alice, &group_id).await;
    let mut expected: Vec<Message> = acknowledged.into_iter().flatten().collect();
    expected.sort_by_key(|m| m.seq);
    assert_eq!(stored, expected);
    assert_eq!(seqs(&stored), (1..=50).collect::<Vec<i64>>());
}

#[tokio::test]
async fn a_restart_keeps_users_sessions_conversations_messages_and_read_state() {
    let mut server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();
    let sent = send_numbered(&alice, &direct.id, 3).await;
    alice.edit_message(&sent[0].id, "edited before the restart").await.unwrap();
    alice.delete_message(&sent[1].id).await.unwrap();
    let keyed = SendMessage {
        content: "a keyed reply".into(),
        client_id: Some("key-1".into()),
        reply_to: Some(sent[0].id.clone()),
    };
    let keyed_reply = bob.send_message(&direct.id, &keyed).await.unwrap().value;
    let group = alice.create_group("Before", &[bob.id()]).await.unwrap();
    bob.rename_conversation(&group.id, "After").await.unwrap();
    alice.add_participants(&group.id, &[carol.id()]).await.unwrap();
    send_numbered(&alice, &group.id, 2).await;
    bob.mark_read(&group.id, 1).await.unwrap();
    let alice_before = (alice.me().await.unwrap(), alice.list_conversations().await.unwrap());
    let bob_before = (bob.me().await.unwrap(), bob.list_conversations().await.unwrap());
    let direct_history = history(&alice, &direct.id).await;
    let group_history = history(&alice, &group.id).await;

    server.restart().await;

    let (alice, bob) = (server.reconnect(&alice), server.reconnect(&bob));
    assert_eq!(
        (alice.me().await.unwrap(), alice.list_conversations().await.unwrap()),
        alice_before
    );
    assert_eq!((bob.me().await.unwrap(), bob.list_conversations().await.unwrap()), bob_before);
    assert_eq!(history(&bob, &direct.id).await, direct_history);
    assert_eq!(history(&bob, &group.id).await, group_history);
    assert_eq!(bob.get_conversation(&group.id).await.unwrap().unread_count, 1);
    assert_eq!(alice.get_conversation(&direct.id).await.unwrap().unread_count, 1);
    let replay = bob.send_message(&direct.id, &keyed).await.unwrap();
    assert!(!replay.created);
    assert_eq!(replay.value, keyed_reply);
    let next = alice.send_text(&direct.id, "after the restart").await.unwrap();
    assert_eq!(next.seq, 5);
}

#[tokio::test]
async fn accounts_survive_a_restart() {
    let mut server = TestServer::spawn().await;
    let alice = server.user("Alice").await;

    server.restart().await;

    let mut client = server.client();
    let auth = client.login("alice", PASSWORD).await.unwrap();
    assert_eq!(auth.user, alice.user);
    let taken = server.client().register("ALICE", PASSWORD).await.unwrap_err();
    assert_api_error(&taken, 409, "conflict");
}

#[tokio::test]
async fn a_logged_out_token_stays_invalid_after_a_restart() {
    let mut server = TestServer::spawn().await;
    let mut alice = server.user("alice").await;
    let token = alice.token().unwrap().to_owned();
    alice.logout().await.unwrap();

    server.restart().await;

    let err = server.client().with_token(token).me().await.unwrap_err();
    assert_api_error(&err, 401, "unauthorized");
}

/// Migration 0008 rebuilt the SQLite `messages` table in conversation order. A database whose
/// table still has the earlier layout (rows in arrival order, interleaved across
/// conversations) comes through the upgrade with every message, edit, tombstone, reply, read
/// state and idempotency key, its foreign keys, and no copy of the old rows left in free pages.
#[tokio::test]
async fn messages_stored_before_the_conversation_order_migration_keep_everything() {
    use sqlx::Connection;
    if on_postgres() {
        return; // the migration is SQLite's
    }
    let mut server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();
    let group = alice.create_group("Both", &[bob.id()]).await.unwrap();
    let mut keyed = Vec::new();
    for i in 0..40 {
        // Interleaved: the two conversations' rows alternate in arrival order.
        let conversation = if i % 2 == 0 { &direct.id } else { &group.id };
        let body = SendMessage {
            content: format!("message {i}"),
            client_id: Some(format!("key-{i}")),
            reply_to: None,
        };
        let message = bob.send_message(conversation, &body).await.unwrap().value;
        keyed.push((conversation.clone(), body, message));
    }
    let first = keyed[0].2.clone();
    bob.edit_message(&keyed[2].2.id, "edited").await.unwrap();
    bob.delete_message(&keyed[4].2.id).await.unwrap();
    let reply = SendMessage {
        content: "a reply".into(),
        client_id: None,
        reply_to: Some(first.id.clone()),
    };
    alice.send_message(&direct.id, &reply).await.unwrap();
    // Longer than what such a table keeps on the row's own page.
    alice.send_text(&direct.id, &"long ".repeat(3000)).await.unwrap();
    let secret =
        bob.send_text(&group.id, "heron-dawn-6083, deleted after the upgrade").await.unwrap();
    alice.mark_read(&group.id, 5).await.unwrap();
    let before = (
        alice.list_conversations().await.unwrap(),
        history(&alice, &direct.id).await,
        history(&alice, &group.id).await,
    );
    server.stop().await;

    // Back to the layout before 0008, rows in arrival order, and 0008 not yet applied.
    let url = server.database_url();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "PRAGMA foreign_keys = OFF;
         PRAGMA secure_delete = ON;
         BEGIN;
         CREATE TABLE messages_before (
             id TEXT PRIMARY KEY,
             conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
             sender_id TEXT NOT NULL REFERENCES users(id),
             content TEXT NOT NULL, created_at INTEGER NOT NULL, seq INTEGER NOT NULL,
             client_id TEXT, reply_to TEXT, edited_at INTEGER,
             deleted INTEGER NOT NULL DEFAULT 0,
             UNIQUE (conversation_id, seq));
         INSERT INTO messages_before (id, conversation_id, sender_id, content, created_at, seq,
             client_id, reply_to, edited_at, deleted)
         SELECT id, conversation_id, sender_id, content, created_at, seq, client_id, reply_to,
             edited_at, deleted FROM messages ORDER BY id;
         DROP TABLE messages;
         ALTER TABLE messages_before RENAME TO messages;
         CREATE UNIQUE INDEX messages_by_client_id ON messages(conversation_id, sender_id,
             client_id) WHERE client_id IS NOT NULL;
         DELETE FROM _sqlx_migrations WHERE version = 8;
         COMMIT;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert!(!messages_layout(&mut conn).await.contains("WITHOUT ROWID"), "the old layout");
    conn.close().await.unwrap();

    server.restart().await;

    let (alice, bob) = (server.reconnect(&alice), server.reconnect(&bob));
    let after = (
        alice.list_conversations().await.unwrap(),
        history(&alice, &direct.id).await,
        history(&alice, &group.id).await,
    );
    assert_eq!(after, before);
    // Every idempotency key still answers with its first message.
    for (conversation, body, message) in &keyed {
        let retried = bob.send_message(conversation, body).await.unwrap();
        assert!(!retried.created, "{} was stored again", body.content);
        assert_eq!(&retried.value.id, &message.id);
    }
    // The messages stay editable and deletable by id, and the sequence goes on.
    bob.edit_message(&first.id, "edited after the upgrade").await.unwrap();
    bob.delete_message(&keyed[6].2.id).await.unwrap();
    bob.delete_message(&secret.id).await.unwrap();
    let next = bob.send_text(&group.id, "after the upgrade").await.unwrap();
    assert_eq!(next.seq, 22);
    let group_history = history(&bob, &group.id).await;
    assert_eq!(seqs(&group_history), (1..=22).collect::<Vec<_>>());
    server.stop().await;

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert!(messages_layout(&mut conn).await.contains("WITHOUT ROWID"), "the migration ran");
    let parents: Vec<(String, String)> = sqlx::query_as(
        "SELECT \"table\", on_delete FROM pragma_foreign_key_list('messages') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        parents,
        [("conversations".to_owned(), "CASCADE".to_owned()), ("users".into(), "NO ACTION".into())]
    );
    conn.close().await.unwrap();
    // The old table's pages were zeroed when the migration freed them: the deleted message
    // is in none of the database's files.
    let bytes = database_bytes(&server).await;
    assert!(!contains(&bytes, "heron-dawn-6083"), "the deleted text is still on disk");
}

async fn messages_layout(conn: &mut sqlx::SqliteConnection) -> String {
    sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'messages'")
        .fetch_one(conn)
        .await
        .unwrap()
}
