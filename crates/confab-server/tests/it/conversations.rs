//! Conversations: direct and group creation, listing, renaming, membership and leaving.

use confab_client::{ConversationType, CreateConversation, MessageQuery, Role};

use crate::harness::{
    TestServer, assert_api_error, ids, member_ids, next_timestamp, role_of, sorted,
};

fn direct_with(ids: &[&str]) -> CreateConversation {
    CreateConversation {
        kind: ConversationType::Direct,
        participant_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        title: None,
    }
}

#[tokio::test]
async fn creating_a_direct_conversation_answers_201_with_both_participants() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;

    let made = alice.create_conversation(&direct_with(&[bob.id()])).await.unwrap();

    assert!(made.created);
    let conversation = made.value;
    assert_eq!(conversation.kind, ConversationType::Direct);
    assert_eq!(conversation.title, None);
    assert_eq!(member_ids(&conversation), sorted(&[alice.id(), bob.id()]));
    let bob_entry = conversation.participants.iter().find(|p| p.user_id == bob.id()).unwrap();
    assert_eq!(bob_entry.username, "bob");
}

#[tokio::test]
async fn the_same_direct_pair_again_from_either_side_answers_200_with_the_same_conversation() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let first = alice.create_conversation(&direct_with(&[bob.id()])).await.unwrap().value;

    let again = alice.create_conversation(&direct_with(&[bob.id()])).await.unwrap();
    let reverse = bob.create_conversation(&direct_with(&[alice.id()])).await.unwrap();

    assert!(!again.created);
    assert!(!reverse.created);
    assert_eq!(again.value.id, first.id);
    assert_eq!(reverse.value.id, first.id);
    assert_eq!(alice.list_conversations().await.unwrap().len(), 1);
}

#[tokio::test]
async fn participant_ids_may_include_the_caller() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;

    let made = alice.create_conversation(&direct_with(&[alice.id(), bob.id()])).await.unwrap();

    assert!(made.created);
    assert_eq!(member_ids(&made.value), sorted(&[alice.id(), bob.id()]));
}

#[tokio::test]
async fn a_direct_conversation_with_an_unknown_user_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice] = server.users(["alice"]).await;

    let err = alice.create_direct("no-such-user").await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert!(err.to_string().contains("participant_ids"), "names the request's field: {err}");
    assert!(alice.list_conversations().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_direct_conversation_needs_exactly_one_other_participant() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;

    for participants in [vec![], vec![alice.id()], vec![bob.id(), carol.id()]] {
        let err = alice.create_conversation(&direct_with(&participants)).await.unwrap_err();

        assert_api_error(&err, 422, "invalid_input");
    }
    assert!(alice.list_conversations().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_group_makes_its_creator_admin_and_the_others_members() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;

    let group = alice.create_group("Book club", &[bob.id(), carol.id()]).await.unwrap();

    assert_eq!(group.kind, ConversationType::Group);
    assert_eq!(group.title.as_deref(), Some("Book club"));
    assert_eq!(role_of(&group, alice.id()), Some(Role::Admin));
    assert_eq!(role_of(&group, bob.id()), Some(Role::Member));
    assert_eq!(role_of(&group, carol.id()), Some(Role::Member));
    assert_eq!(group.participants.len(), 3);
}

#[tokio::test]
async fn a_new_conversation_has_no_messages_and_nothing_unread() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;

    let group = alice.create_group("Quiet", &[bob.id()]).await.unwrap();

    assert_eq!(group.last_message, None);
    assert_eq!(group.last_seq, 0);
    assert_eq!(group.unread_count, 0);
    assert!(group.participants.iter().all(|p| p.last_read_seq == 0));
    assert_eq!(group.last_activity_at, group.created_at);
}

#[tokio::test]
async fn a_group_needs_a_title_of_1_to_128_characters() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let too_long = "t".repeat(129);
    let no_title = CreateConversation {
        kind: ConversationType::Group,
        participant_ids: vec![bob.id().to_owned()],
        title: None,
    };

    let missing = alice.create_conversation(&no_title).await.unwrap_err();
    let empty = alice.create_group("", &[bob.id()]).await.unwrap_err();
    let blank = alice.create_group("   ", &[bob.id()]).await.unwrap_err();
    let long = alice.create_group(&too_long, &[bob.id()]).await.unwrap_err();
    let longest = alice.create_group(&"t".repeat(128), &[bob.id()]).await;

    for err in [missing, empty, blank, long] {
        assert_api_error(&err, 422, "invalid_input");
    }
    assert!(longest.is_ok(), "{longest:?}");
}

#[tokio::test]
async fn a_group_with_an_unknown_member_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;

    let err = alice.create_group("Club", &[bob.id(), "no-such-user"]).await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert!(bob.list_conversations().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_group_larger_than_max_group_members_is_invalid() {
    let server = TestServer::spawn_with(|c| c.max_group_members = 3).await;
    let [alice, bob, carol, dave] = server.users(["alice", "bob", "carol", "dave"]).await;

    let too_big = alice.create_group("Four", &[bob.id(), carol.id(), dave.id()]).await;
    let just_fits = alice.create_group("Three", &[bob.id(), carol.id()]).await;

    assert_api_error(&too_big.unwrap_err(), 422, "invalid_input");
    assert_eq!(just_fits.unwrap().participants.len(), 3);
}

#[tokio::test]
async fn conversations_are_listed_most_recent_activity_first() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let with_bob = alice.create_direct(bob.id()).await.unwrap();
    next_timestamp().await;
    let with_carol = alice.create_direct(carol.id()).await.unwrap();
    let before = alice.list_conversations().await.unwrap();
    next_timestamp().await;

    alice.send_text(&with_bob.id, "bump").await.unwrap();

    let after = alice.list_conversations().await.unwrap();
    assert_eq!(ids(&before), [with_carol.id.as_str(), with_bob.id.as_str()]);
    assert_eq!(ids(&after), [with_bob.id.as_str(), with_carol.id.as_str()]);
    assert!(after[0].last_activity_at > before[1].last_activity_at);
}

#[tokio::test]
async fn a_conversation_shows_its_last_message_and_the_callers_unread_count() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conversation = alice.create_direct(bob.id()).await.unwrap();
    alice.send_text(&conversation.id, "one").await.unwrap();

    let second = alice.send_text(&conversation.id, "two").await.unwrap();

    let seen_by_bob = bob.get_conversation(&conversation.id).await.unwrap();
    let seen_by_alice = alice.get_conversation(&conversation.id).await.unwrap();
    assert_eq!(seen_by_bob.last_message.as_ref(), Some(&second));
    assert_eq!(seen_by_bob.last_seq, 2);
    assert_eq!(seen_by_bob.unread_count, 2);
    assert_eq!(seen_by_alice.unread_count, 0);
    let listed = bob.list_conversations().await.unwrap();
    assert_eq!(listed, [seen_by_bob]);
}

#[tokio::test]
async fn an_unknown_conversation_is_not_found() {
    let server = TestServer::spawn().await;
    let [alice] = server.users(["alice"]).await;

    let err = alice.get_conversation("0190aaaa-0000-7000-8000-000000000000").await.unwrap_err();

    assert_api_error(&err, 404, "not_found");
}

#[tokio::test]
async fn any_member_may_rename_a_group() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Old name", &[bob.id()]).await.unwrap();

    let renamed = bob.rename_conversation(&group.id, "New name").await.unwrap();

    assert_eq!(renamed.title.as_deref(), Some("New name"));
    let seen_by_alice = alice.get_conversation(&group.id).await.unwrap();
    assert_eq!(seen_by_alice.title.as_deref(), Some("New name"));
}

#[tokio::test]
async fn renaming_to_a_blank_or_overlong_title_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Name", &[bob.id()]).await.unwrap();
    let too_long = "t".repeat(129);

    for title in ["", "  ", too_long.as_str()] {
        let err = alice.rename_conversation(&group.id, title).await.unwrap_err();

        assert_api_error(&err, 422, "invalid_input");
    }
    assert_eq!(alice.get_conversation(&group.id).await.unwrap().title.as_deref(), Some("Name"));
}

#[tokio::test]
async fn a_direct_conversation_cannot_be_renamed() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();

    let err = alice.rename_conversation(&direct.id, "Us").await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert_eq!(alice.get_conversation(&direct.id).await.unwrap().title, None);
}

#[tokio::test]
async fn an_admin_adds_members_and_people_already_in_are_ignored() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();

    let updated = alice.add_participants(&group.id, &[bob.id(), carol.id(), carol.id()]).await;

    let updated = updated.unwrap();
    assert_eq!(member_ids(&updated), sorted(&[alice.id(), bob.id(), carol.id()]));
    assert_eq!(role_of(&updated, carol.id()), Some(Role::Member));
    let seen_by_carol = carol.get_conversation(&group.id).await.unwrap();
    assert_eq!(seen_by_carol.id, group.id);
    assert_eq!(ids(&carol.list_conversations().await.unwrap()), [group.id.as_str()]);
}

#[tokio::test]
async fn a_member_who_is_not_admin_cannot_add_members() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();

    let err = bob.add_participants(&group.id, &[carol.id()]).await.unwrap_err();

    assert_api_error(&err, 403, "forbidden");
    let now = alice.get_conversation(&group.id).await.unwrap();
    assert_eq!(member_ids(&now), sorted(&[alice.id(), bob.id()]));
}

#[tokio::test]
async fn adding_an_unknown_user_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();

    let err = alice.add_participants(&group.id, &["no-such-user"]).await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert!(err.to_string().contains("user_ids"), "names the request's field: {err}");
    assert_eq!(alice.get_conversation(&group.id).await.unwrap().participants.len(), 2);
}

#[tokio::test]
async fn adding_beyond_max_group_members_is_invalid() {
    let server = TestServer::spawn_with(|c| c.max_group_members = 3).await;
    let [alice, bob, carol, dave] = server.users(["alice", "bob", "carol", "dave"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();

    let err = alice.add_participants(&group.id, &[carol.id(), dave.id()]).await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert_eq!(alice.get_conversation(&group.id).await.unwrap().participants.len(), 2);
}

#[tokio::test]
async fn a_removed_member_loses_sight_of_the_conversation() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id(), carol.id()]).await.unwrap();
    alice.send_text(&group.id, "before the removal").await.unwrap();

    alice.remove_participant(&group.id, bob.id()).await.unwrap();

    assert_api_error(&bob.get_conversation(&group.id).await.unwrap_err(), 404, "not_found");
    let history = bob.list_messages(&group.id, &MessageQuery::default()).await;
    assert_api_error(&history.unwrap_err(), 404, "not_found");
    assert_api_error(&bob.send_text(&group.id, "hello?").await.unwrap_err(), 404, "not_found");
    assert!(bob.list_conversations().await.unwrap().is_empty());
    let now = alice.get_conversation(&group.id).await.unwrap();
    assert_eq!(member_ids(&now), sorted(&[alice.id(), carol.id()]));
}

#[tokio::test]
async fn a_member_who_is_not_admin_cannot_remove_others() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id(), carol.id()]).await.unwrap();

    let err = bob.remove_participant(&group.id, carol.id()).await.unwrap_err();
    let against_admin = bob.remove_participant(&group.id, alice.id()).await.unwrap_err();

    assert_api_error(&err, 403, "forbidden");
    assert_api_error(&against_admin, 403, "forbidden");
    assert_eq!(alice.get_conversation(&group.id).await.unwrap().participants.len(), 3);
}

#[tokio::test]
async fn a_member_may_remove_themself() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();

    bob.remove_participant(&group.id, bob.id()).await.unwrap();

    assert!(bob.list_conversations().await.unwrap().is_empty());
    let now = alice.get_conversation(&group.id).await.unwrap();
    assert_eq!(member_ids(&now), sorted(&[alice.id()]));
}

#[tokio::test]
async fn leaving_a_group_removes_you_from_it() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();

    bob.leave_conversation(&group.id).await.unwrap();

    assert_api_error(&bob.get_conversation(&group.id).await.unwrap_err(), 404, "not_found");
    assert!(bob.list_conversations().await.unwrap().is_empty());
    let now = alice.get_conversation(&group.id).await.unwrap();
    assert_eq!(member_ids(&now), sorted(&[alice.id()]));
}

#[tokio::test]
async fn leaving_a_direct_conversation_is_invalid() {
    let server = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let direct = alice.create_direct(bob.id()).await.unwrap();

    let err = bob.leave_conversation(&direct.id).await.unwrap_err();

    assert_api_error(&err, 422, "invalid_input");
    assert_eq!(bob.get_conversation(&direct.id).await.unwrap().participants.len(), 2);
}

#[tokio::test]
async fn when_the_last_admin_leaves_the_longest_standing_member_becomes_admin() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol, dave] = server.users(["alice", "bob", "carol", "dave"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    next_timestamp().await;
    alice.add_participants(&group.id, &[carol.id()]).await.unwrap();

    alice.leave_conversation(&group.id).await.unwrap();

    let now = carol.get_conversation(&group.id).await.unwrap();
    assert_eq!(role_of(&now, bob.id()), Some(Role::Admin));
    assert_eq!(role_of(&now, carol.id()), Some(Role::Member));
    assert_eq!(role_of(&now, alice.id()), None);
    let grown = bob.add_participants(&group.id, &[dave.id()]).await.unwrap();
    assert_eq!(grown.participants.len(), 3);
}

#[tokio::test]
async fn a_member_let_in_a_moment_ago_is_refused_once_removed() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id(), carol.id()]).await.unwrap();
    // Bob's access was checked (and may be remembered) just before his removal.
    bob.send_text(&group.id, "still here").await.unwrap();
    bob.get_conversation(&group.id).await.unwrap();
    bob.list_messages(&group.id, &MessageQuery::default()).await.unwrap();
    bob.set_typing(&group.id, true).await.unwrap();

    alice.remove_participant(&group.id, bob.id()).await.unwrap();

    assert_api_error(&bob.set_typing(&group.id, true).await.unwrap_err(), 404, "not_found");
    assert_api_error(&bob.send_text(&group.id, "and now?").await.unwrap_err(), 404, "not_found");
    assert_api_error(&bob.get_conversation(&group.id).await.unwrap_err(), 404, "not_found");
    let history = bob.list_messages(&group.id, &MessageQuery::default()).await;
    assert_api_error(&history.unwrap_err(), 404, "not_found");
    let history = alice.list_messages(&group.id, &MessageQuery::default()).await.unwrap();
    let contents: Vec<&str> = history.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["still here"]);
}

#[tokio::test]
async fn a_member_refused_as_a_non_admin_may_act_as_admin_once_promoted() {
    let server = TestServer::spawn().await;
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let group = alice.create_group("Club", &[bob.id()]).await.unwrap();
    let refused = bob.add_participants(&group.id, &[carol.id()]).await.unwrap_err();
    assert_api_error(&refused, 403, "forbidden");

    alice.leave_conversation(&group.id).await.unwrap();

    let grown = bob.add_participants(&group.id, &[carol.id()]).await.unwrap();
    assert_eq!(member_ids(&grown), sorted(&[bob.id(), carol.id()]));
}
