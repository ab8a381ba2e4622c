//! What only the PostgreSQL store has to show, in every run (each test on a database of its
//! own): it survives its connections being cut, and its schema is what the docs promise.

use crate::harness::{TestDatabase, TestServer, history, send_numbered, seqs};

#[tokio::test]
async fn the_store_reconnects_after_postgresql_cuts_its_connections() {
    let database = TestDatabase::create().await;
    let url = database.url.clone();
    let server = TestServer::spawn_with(move |c| c.database_url = url.clone()).await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let chat = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &chat.id, 3).await;

    // As after a PostgreSQL restart or failover: every connection of the server is gone.
    let terminated = database.terminate_connections().await;
    assert!(terminated >= 2, "the writer and at least one reader were connected: {terminated}");

    // The next writes and reads work, through new connections, with nothing lost or doubled.
    alice.send_text(&chat.id, "message 4").await.unwrap();
    let all = history(&bob, &chat.id).await;
    assert_eq!(seqs(&all), vec![1, 2, 3, 4]);
    assert_eq!(all[3].content, "message 4");
}

#[tokio::test]
async fn messages_are_stored_in_a_table_partitioned_by_hash_of_the_conversation() {
    let database = TestDatabase::create().await;
    let url = database.url.clone();
    let server = TestServer::spawn_with(move |c| c.database_url = url.clone()).await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    for other in [&bob, &carol] {
        let chat = alice.create_direct(other.id()).await.unwrap();
        send_numbered(&alice, &chat.id, 5).await;
    }

    let (strategy, key, partitions, rows) = database.partitioning_of("messages").await;
    assert_eq!((strategy.as_str(), key.as_str()), ("hash", "conversation_id"));
    assert_eq!(partitions, 16);
    assert_eq!(rows, 10, "every message is in a partition");
}
