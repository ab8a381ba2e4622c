//! Messages: send (seq, idempotency, replies, size limits), history paging, edit, delete,
//! read state and unread counts.

use confab_client::reqwest::Method;
use confab_client::{MessageQuery, SendMessage};

use crate::harness::{TestServer, assert_api_error, history, json_error, send_numbered, seqs};

fn with_client_id(content: &str, client_id: &str) -> SendMessage {
    SendMessage {
        content: content.to_owned(),
        client_id: Some(client_id.to_owned()),
        reply_to: None,
    }
}

fn replying(content: &str, reply_to: &str) -> SendMessage {
    SendMessage {
        content: content.to_owned(),
        client_id: None,
        reply_to: Some(reply_to.to_owned()),
    }
}

fn page(limit: Option<u32>, before: Option<i64>, after: Option<i64>) -> MessageQuery {
    MessageQuery { limit, before, after }
}

// ---- send ----

#[tokio::test]
async fn a_sent_message_answers_201_with_the_stored_message() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let body = SendMessage { content: "hello bob".into(), client_id: None, reply_to: None };

    let sent = alice.send_message(&conversation.id, &body).await.unwrap();

    assert!(sent.created);
    let message = sent.value;
    assert_eq!(message.conversation_id, conversation.id);
    assert_eq!(message.sender_id, alice.id());
    assert_eq!(message.content, "hello bob");
    assert_eq!(message.seq, 1);
    assert_eq!(message.edited_at, None);
    assert!(!message.deleted);
    assert_eq!(history(&bob, &conversation.id).await, [message]);
}

#[tokio::test]
async fn seqs_count_up_from_1_in_each_conversation() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let with_bob = alice.create_direct(bob.id()).await.unwrap();
    let with_carol = alice.create_direct(carol.id()).await.unwrap();
    send_numbered(&alice, &with_bob.id, 2).await;

    let first_elsewhere = alice.send_text(&with_carol.id, "hi carol").await.unwrap();
    let third_here = bob.send_text(&with_bob.id, "hi alice").await.unwrap();

    assert_eq!(first_elsewhere.seq, 1);
    assert_eq!(third_here.seq, 3);
    assert_eq!(seqs(&history(&alice, &with_bob.id).await), [1, 2, 3]);
}

#[tokio::test]
async fn a_repeated_client_id_answers_200_with_the_first_message_and_stores_nothing_new() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let first =
        alice.send_message(&conversation.id, &with_client_id("once", "key-1")).await.unwrap();

    let retry =
        alice.send_message(&conversation.id, &with_client_id("once", "key-1")).await.unwrap();
    let changed = alice.send_message(&conversation.id, &with_client_id("twice?", "key-1")).await;

    assert!(first.created);
    assert!(!retry.created);
    assert_eq!(retry.value, first.value);
    assert_eq!(changed.unwrap().value, first.value);
    assert_eq!(first.value.client_id.as_deref(), Some("key-1"));
    assert_eq!(history(&alice, &conversation.id).await, [first.value]);
}

#[tokio::test]
async fn a_client_id_is_scoped_to_its_sender_and_conversation() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    let first = alice.send_message(&direct.id, &with_client_id("a", "key-1")).await.unwrap();

    let by_bob = bob.send_message(&direct.id, &with_client_id("b", "key-1")).await.unwrap();
    let elsewhere = alice.send_message(&group.id, &with_client_id("c", "key-1")).await.unwrap();

    assert!(by_bob.created);
    assert_ne!(by_bob.value.id, first.value.id);
    assert_eq!(by_bob.value.seq, 2);
    assert!(elsewhere.created);
    assert_eq!(elsewhere.value.seq, 1);
}

#[tokio::test]
async fn a_reply_names_a_message_of_the_same_conversation() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let question = alice.send_text(&conversation.id, "lunch?").await.unwrap();

    let answer = bob.send_message(&conversation.id, &replying("yes", &question.id)).await.unwrap();

    assert!(answer.created);
    assert_eq!(answer.value.reply_to.as_deref(), Some(question.id.as_str()));
}

#[tokio::test]
async fn a_reply_to_a_message_elsewhere_or_nowhere_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let with_bob = alice.create_direct(bob.id()).await.unwrap();
    let with_carol = alice.create_direct(carol.id()).await.unwrap();
    let elsewhere = alice.send_text(&with_carol.id, "for carol").await.unwrap();

    let other = alice.send_message(&with_bob.id, &replying("x", &elsewhere.id)).await;
    let missing = alice.send_message(&with_bob.id, &replying("x", "no-such-message")).await;

    assert_api_error(&other.unwrap_err(), 422, "invalid_input");
    assert_api_error(&missing.unwrap_err(), 422, "invalid_input");
    assert!(history(&alice, &with_bob.id).await.is_empty());
}

#[tokio::test]
async fn empty_content_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();

    let err = alice.send_text(&conversation.id, "").await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert!(history(&alice, &conversation.id).await.is_empty());
}

#[tokio::test]
async fn content_of_exactly_16384_bytes_is_accepted() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let ascii = "a".repeat(16384);
    let two_byte_chars = "é".repeat(8192);

    let first = alice.send_text(&conversation.id, &ascii).await.unwrap();
    let second = alice.send_text(&conversation.id, &two_byte_chars).await.unwrap();

    assert_eq!(first.content, ascii);
    assert_eq!(second.content, two_byte_chars);
}

#[tokio::test]
async fn content_over_16384_bytes_is_too_large() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();

    let ascii = alice.send_text(&conversation.id, &"a".repeat(16385)).await.unwrap_err();
    let chars = alice.send_text(&conversation.id, &"é".repeat(8193)).await.unwrap_err();

    assert_api_error(&ascii, 413, "payload_too_large");
    assert_api_error(&chars, 413, "payload_too_large");
    assert!(history(&alice, &conversation.id).await.is_empty());
}

#[tokio::test]
async fn the_content_limit_follows_max_message_bytes() {
    let server = TestServer::spawn_with(|c| c.max_message_bytes = 10).await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();

    let fits = alice.send_text(&conversation.id, "0123456789").await;
    let over = alice.send_text(&conversation.id, "0123456789x").await;

    assert!(fits.is_ok(), "{fits:?}");
    assert_api_error(&over.unwrap_err(), 413, "payload_too_large");
}

// ---- history ----

#[tokio::test]
async fn without_a_cursor_history_is_the_newest_50_in_ascending_order() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 60).await;

    let newest = bob.list_messages(&conversation.id, &MessageQuery::default()).await.unwrap();

    assert_eq!(seqs(&newest.messages), (11..=60).collect::<Vec<_>>());
    assert!(newest.has_more);
    assert_eq!(newest.messages[0].content, "message 11");
}

#[tokio::test]
async fn a_short_history_fits_one_page_without_more() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 3).await;

    let all = bob.list_messages(&conversation.id, &MessageQuery::default()).await.unwrap();
    let exact = bob.list_messages(&conversation.id, &page(Some(3), None, None)).await.unwrap();

    assert_eq!(seqs(&all.messages), [1, 2, 3]);
    assert!(!all.has_more);
    assert_eq!(seqs(&exact.messages), [1, 2, 3]);
    assert!(!exact.has_more);
}

#[tokio::test]
async fn limits_above_100_are_clamped_to_100() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 101).await;

    let newest = bob.list_messages(&conversation.id, &page(Some(1000), None, None)).await.unwrap();

    assert_eq!(seqs(&newest.messages), (2..=101).collect::<Vec<_>>());
    assert!(newest.has_more);
}

#[tokio::test]
async fn query_integers_beyond_64_bits_are_clamped_not_refused() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 3).await;
    let huge = "99999999999999999999";
    let path = |query: String| format!("/api/conversations/{}/messages?{query}", conversation.id);

    for query in
        [format!("limit={huge}"), format!("before={huge}"), format!("limit={huge}&before={huge}")]
    {
        let response = bob.raw(Method::GET, &path(query.clone())).send().await.unwrap();

        assert_eq!(response.status().as_u16(), 200, "{query}");
        let page: confab_client::MessagePage = response.json().await.unwrap();
        assert_eq!(seqs(&page.messages), [1, 2, 3], "{query}");
    }
    let after = bob.raw(Method::GET, &path(format!("after={huge}"))).send().await.unwrap();
    let page: confab_client::MessagePage = after.json().await.unwrap();
    assert!(page.messages.is_empty() && !page.has_more);
    // Still not integers: 400; below zero: 422.
    for (query, status) in
        [("limit=1e3", 400), ("limit=12abc", 400), (&format!("limit=-{huge}")[..], 422)]
    {
        let response = bob.raw(Method::GET, &path(query.to_owned())).send().await.unwrap();

        let (got, body) = json_error(response).await;
        assert_eq!((got, body.error.code.as_str()), (status, "invalid_input"), "{query}");
    }
}

#[tokio::test]
async fn a_limit_of_zero_or_less_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let path = format!("/api/conversations/{}/messages?limit=-1", conversation.id);

    let zero = alice.list_messages(&conversation.id, &page(Some(0), None, None)).await;
    let negative = alice.raw(Method::GET, &path).send().await.unwrap();

    assert_api_error(&zero.unwrap_err(), 422, "invalid_input");
    let (status, body) = json_error(negative).await;
    assert_eq!((status, body.error.code.as_str()), (422, "invalid_input"));
}

#[tokio::test]
async fn before_pages_backwards_through_older_messages() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 10).await;

    let middle = bob.list_messages(&conversation.id, &page(Some(3), Some(8), None)).await.unwrap();
    let oldest = bob.list_messages(&conversation.id, &page(Some(3), Some(4), None)).await.unwrap();
    let nothing = bob.list_messages(&conversation.id, &page(Some(3), Some(1), None)).await.unwrap();

    assert_eq!(seqs(&middle.messages), [5, 6, 7]);
    assert!(middle.has_more);
    assert_eq!(seqs(&oldest.messages), [1, 2, 3]);
    assert!(!oldest.has_more);
    assert!(nothing.messages.is_empty());
    assert!(!nothing.has_more);
}

#[tokio::test]
async fn after_pages_forwards_through_newer_messages() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 10).await;

    let early = bob.list_messages(&conversation.id, &page(Some(3), None, Some(2))).await.unwrap();
    let newest = bob.list_messages(&conversation.id, &page(Some(3), None, Some(7))).await.unwrap();
    let caught_up = bob.list_messages(&conversation.id, &page(Some(3), None, Some(10))).await;

    assert_eq!(seqs(&early.messages), [3, 4, 5]);
    assert!(early.has_more);
    assert_eq!(seqs(&newest.messages), [8, 9, 10]);
    assert!(!newest.has_more);
    let caught_up = caught_up.unwrap();
    assert!(caught_up.messages.is_empty());
    assert!(!caught_up.has_more);
}

#[tokio::test]
async fn paging_with_after_walks_the_whole_history_once() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let sent = send_numbered(&alice, &conversation.id, 7).await;

    let mut walked = Vec::new();
    let mut after = 0;
    loop {
        let query = page(Some(2), None, Some(after));
        let next = bob.list_messages(&conversation.id, &query).await.unwrap();
        after = next.messages.last().map_or(after, |m| m.seq);
        walked.extend(next.messages);
        if !next.has_more {
            break;
        }
    }

    assert_eq!(walked, sent);
}

// ---- edit ----

#[tokio::test]
async fn editing_your_message_changes_its_content_and_sets_edited_at() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let original = alice.send_text(&conversation.id, "helo").await.unwrap();

    let edited = alice.edit_message(&original.id, "hello").await.unwrap();

    assert_eq!(edited.content, "hello");
    assert!(edited.edited_at.is_some());
    assert_eq!((edited.id.as_str(), edited.seq), (original.id.as_str(), original.seq));
    assert_eq!(history(&bob, &conversation.id).await, [edited]);
}

#[tokio::test]
async fn editing_someone_elses_message_is_forbidden() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let original = alice.send_text(&conversation.id, "mine").await.unwrap();

    let err = bob.edit_message(&original.id, "yours now").await.unwrap_err();

    assert_api_error(&err, 403, "forbidden");
    assert_eq!(history(&alice, &conversation.id).await, [original]);
}

#[tokio::test]
async fn editing_a_deleted_message_is_a_conflict() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let message = alice.send_text(&conversation.id, "oops").await.unwrap();
    alice.delete_message(&message.id).await.unwrap();

    let err = alice.edit_message(&message.id, "back again").await.unwrap_err();

    assert_api_error(&err, 409, "conflict");
    let stored = history(&alice, &conversation.id).await;
    assert!(stored[0].deleted);
    assert_eq!(stored[0].content, "");
}

#[tokio::test]
async fn an_edit_follows_the_content_rules() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let message = alice.send_text(&conversation.id, "fine").await.unwrap();

    let empty = alice.edit_message(&message.id, "").await.unwrap_err();
    let huge = alice.edit_message(&message.id, &"a".repeat(16385)).await.unwrap_err();

    assert_api_error(&empty, 422, "invalid_input");
    assert_api_error(&huge, 413, "payload_too_large");
    assert_eq!(history(&alice, &conversation.id).await, [message]);
}

#[tokio::test]
async fn editing_an_unknown_message_is_not_found() {
    let server = TestServer::spawn().await;
    let [alice] = server.users(["alice"]).await;

    let err = alice.edit_message("0190aaaa-0000-7000-8000-000000000000", "x").await.unwrap_err();

    assert_api_error(&err, 404, "not_found");
}

// ---- delete ----

#[tokio::test]
async fn a_deleted_message_stays_in_history_as_a_tombstone() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let sent = send_numbered(&alice, &conversation.id, 3).await;

    alice.delete_message(&sent[1].id).await.unwrap();

    let stored = history(&bob, &conversation.id).await;
    assert_eq!(seqs(&stored), [1, 2, 3]);
    assert_eq!(stored[1].id, sent[1].id);
    assert!(stored[1].deleted);
    assert_eq!(stored[1].content, "");
    assert_eq!((stored[0].clone(), stored[2].clone()), (sent[0].clone(), sent[2].clone()));
}

#[tokio::test]
async fn deleting_twice_succeeds() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let message = alice.send_text(&conversation.id, "bye").await.unwrap();
    alice.delete_message(&message.id).await.unwrap();

    let again = alice.delete_message(&message.id).await;

    assert!(again.is_ok(), "{again:?}");
    assert!(history(&alice, &conversation.id).await[0].deleted);
}

#[tokio::test]
async fn deleting_someone_elses_message_in_a_direct_conversation_is_forbidden() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let message = alice.send_text(&conversation.id, "keep me").await.unwrap();

    let err = bob.delete_message(&message.id).await.unwrap_err();

    assert_api_error(&err, 403, "forbidden");
    assert_eq!(history(&alice, &conversation.id).await, [message]);
}

#[tokio::test]
async fn a_group_admin_may_delete_anyones_message() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    let message = bob.send_text(&group.id, "spam").await.unwrap();

    alice.delete_message(&message.id).await.unwrap();

    let stored = history(&bob, &group.id).await;
    assert!(stored[0].deleted);
    assert_eq!(stored[0].content, "");
}

#[tokio::test]
async fn a_group_member_cannot_delete_others_messages() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id(), carol.id()]).await.unwrap();
    let by_admin = alice.send_text(&group.id, "from the admin").await.unwrap();
    let by_member = carol.send_text(&group.id, "from carol").await.unwrap();

    let admins = bob.delete_message(&by_admin.id).await.unwrap_err();
    let members = bob.delete_message(&by_member.id).await.unwrap_err();

    assert_api_error(&admins, 403, "forbidden");
    assert_api_error(&members, 403, "forbidden");
    assert_eq!(history(&alice, &group.id).await, [by_admin, by_member]);
}

#[tokio::test]
async fn deleting_an_unknown_message_is_not_found() {
    let server = TestServer::spawn().await;
    let [alice] = server.users(["alice"]).await;

    let err = alice.delete_message("0190aaaa-0000-7000-8000-000000000000").await.unwrap_err();

    assert_api_error(&err, 404, "not_found");
}

// ---- read state ----

#[tokio::test]
async fn marking_read_lowers_the_readers_unread_count() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 3).await;

    bob.mark_read(&conversation.id, 2).await.unwrap();

    let seen_by_bob = bob.get_conversation(&conversation.id).await.unwrap();
    assert_eq!(seen_by_bob.unread_count, 1);
    let bob_entry = seen_by_bob.participants.iter().find(|p| p.user_id == bob.id()).unwrap();
    assert_eq!(bob_entry.last_read_seq, 2);
}

#[tokio::test]
async fn your_own_messages_are_never_unread_and_sending_marks_them_read() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 3).await;

    bob.send_text(&conversation.id, "caught up").await.unwrap();

    let seen_by_bob = bob.get_conversation(&conversation.id).await.unwrap();
    let seen_by_alice = alice.get_conversation(&conversation.id).await.unwrap();
    assert_eq!(seen_by_bob.unread_count, 0);
    assert_eq!(seen_by_alice.unread_count, 1);
    let bob_entry = seen_by_bob.participants.iter().find(|p| p.user_id == bob.id()).unwrap();
    assert_eq!(bob_entry.last_read_seq, 4);
    let alice_entry = seen_by_alice.participants.iter().find(|p| p.user_id == alice.id()).unwrap();
    assert_eq!(alice_entry.last_read_seq, 3);
}

#[tokio::test]
async fn deleted_messages_are_not_unread() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    let sent = send_numbered(&alice, &conversation.id, 3).await;

    alice.delete_message(&sent[0].id).await.unwrap();

    assert_eq!(bob.get_conversation(&conversation.id).await.unwrap().unread_count, 2);
}

#[tokio::test]
async fn the_read_watermark_never_moves_backwards() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 3).await;
    bob.mark_read(&conversation.id, 3).await.unwrap();

    bob.mark_read(&conversation.id, 1).await.unwrap();

    let seen_by_bob = bob.get_conversation(&conversation.id).await.unwrap();
    assert_eq!(seen_by_bob.unread_count, 0);
    let bob_entry = seen_by_bob.participants.iter().find(|p| p.user_id == bob.id()).unwrap();
    assert_eq!(bob_entry.last_read_seq, 3);
}

#[tokio::test]
async fn a_read_beyond_the_last_message_is_clamped_to_it() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 3).await;
    bob.mark_read(&conversation.id, 999).await.unwrap();

    alice.send_text(&conversation.id, "new after the read").await.unwrap();

    let seen_by_bob = bob.get_conversation(&conversation.id).await.unwrap();
    assert_eq!(seen_by_bob.unread_count, 1);
    let bob_entry = seen_by_bob.participants.iter().find(|p| p.user_id == bob.id()).unwrap();
    assert_eq!(bob_entry.last_read_seq, 3);
}

#[tokio::test]
async fn a_negative_read_seq_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    send_numbered(&alice, &conversation.id, 2).await;

    let err = bob.mark_read(&conversation.id, -1).await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert_eq!(bob.get_conversation(&conversation.id).await.unwrap().unread_count, 2);
}

#[tokio::test]
async fn unread_counts_are_per_reader_in_a_group() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id(), carol.id()]).await.unwrap();
    send_numbered(&alice, &group.id, 4).await;

    bob.mark_read(&group.id, 4).await.unwrap();

    assert_eq!(bob.get_conversation(&group.id).await.unwrap().unread_count, 0);
    assert_eq!(carol.get_conversation(&group.id).await.unwrap().unread_count, 4);
    let listed = carol.list_conversations().await.unwrap();
    assert_eq!(listed[0].unread_count, 4);
}
