//! Events reproduce state: a client that applies the events it receives to an old snapshot
//! ends with exactly what a fresh REST snapshot shows. And every cursor that cannot be
//! replayed (pruned, foreign, malformed, from the future) gets `resync_required` on every
//! transport: never an empty success, never a 500.

use std::collections::{BTreeMap, HashMap};

use confab_client::{
    Client, Conversation, ConversationType, CreateConversation, Event, Message, Role,
};

use crate::harness::*;

/// A tiny deterministic generator (64-bit LCG), so a failing sequence can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

#[derive(Clone)]
struct Mirror {
    conversation: Conversation,
    messages: BTreeMap<i64, Message>,
    my_read: i64,
}

/// What the observing client knows, built only from a snapshot and events.
struct State {
    me: String,
    conversations: HashMap<String, Mirror>,
}

impl State {
    async fn snapshot(client: &Client, me: &str) -> State {
        let mut conversations = HashMap::new();
        for conversation in client.list_conversations().await.unwrap() {
            conversations
                .insert(conversation.id.clone(), mirror_of(client, me, conversation).await);
        }
        State { me: me.to_owned(), conversations }
    }

    async fn apply(&mut self, client: &Client, event: Event) {
        match event {
            Event::ConversationCreated(c) => {
                let mirror = mirror_of(client, &self.me, c).await;
                self.conversations.insert(mirror.conversation.id.clone(), mirror);
            }
            Event::ConversationUpdated(c) => {
                if let Some(m) = self.conversations.get_mut(&c.id) {
                    m.conversation.title = c.title;
                    m.conversation.participants = c.participants;
                }
            }
            Event::ParticipantAdded(change) if change.user_id == self.me => {
                // Joined (again): fetch what happened before, like a real client would.
                let mirror = mirror_of(client, &self.me, change.conversation).await;
                self.conversations.insert(change.conversation_id, mirror);
            }
            Event::ParticipantRemoved(change) if change.user_id == self.me => {
                self.conversations.remove(&change.conversation_id);
            }
            Event::ParticipantAdded(change) | Event::ParticipantRemoved(change) => {
                if let Some(m) = self.conversations.get_mut(&change.conversation_id) {
                    m.conversation.participants = change.conversation.participants;
                }
            }
            Event::NewMessage(message) => {
                if let Some(m) = self.conversations.get_mut(&message.conversation_id) {
                    m.conversation.last_activity_at = message.created_at;
                    if message.sender_id == self.me {
                        m.my_read = m.my_read.max(message.seq);
                    }
                    m.messages.insert(message.seq, message);
                }
            }
            Event::MessageUpdated(message) | Event::MessageDeleted(message) => {
                if let Some(m) = self.conversations.get_mut(&message.conversation_id) {
                    m.messages.insert(message.seq, message);
                }
            }
            Event::Read(receipt) if receipt.user_id == self.me => {
                if let Some(m) = self.conversations.get_mut(&receipt.conversation_id) {
                    m.my_read = m.my_read.max(receipt.seq);
                }
            }
            _ => {}
        }
    }

    /// Conversation ids, most recent activity first (ties: larger id first), as the list is.
    fn order(&self) -> Vec<String> {
        let mut all: Vec<&Mirror> = self.conversations.values().collect();
        all.sort_by(|a, b| {
            (b.conversation.last_activity_at, &b.conversation.id)
                .cmp(&(a.conversation.last_activity_at, &a.conversation.id))
        });
        all.into_iter().map(|m| m.conversation.id.clone()).collect()
    }
}

async fn mirror_of(client: &Client, me: &str, conversation: Conversation) -> Mirror {
    let messages =
        history(client, &conversation.id).await.into_iter().map(|m| (m.seq, m)).collect();
    let fresh = client.get_conversation(&conversation.id).await.unwrap();
    let my_read =
        fresh.participants.iter().find(|p| p.user_id == me).map_or(0, |p| p.last_read_seq);
    Mirror { conversation, messages, my_read }
}

fn roles(conversation: &Conversation) -> Vec<(String, Role)> {
    let mut roles: Vec<_> =
        conversation.participants.iter().map(|p| (p.user_id.clone(), p.role)).collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    roles
}

/// One random action by one of `users`; rule-breaking attempts (4xx) are part of the game.
async fn random_action(rng: &mut Rng, users: &[TestUser], conversations: &mut Vec<String>) {
    let actor = &users[rng.below(users.len())];
    let Some(conv_id) = conversations.get(rng.below(conversations.len())).cloned() else { return };
    let Ok(conv) = actor.get_conversation(&conv_id).await else { return };
    let other = &users[rng.below(users.len())];
    let _ = match rng.below(10) {
        0..=2 => actor.send_text(&conv_id, &format!("msg {}", rng.below(1000))).await.map(|_| ()),
        3 => {
            let page = actor.list_messages(&conv_id, &Default::default()).await.unwrap();
            match page.messages.iter().rev().find(|m| m.sender_id == actor.id() && !m.deleted) {
                Some(m) => actor.edit_message(&m.id, "edited").await.map(|_| ()),
                None => Ok(()),
            }
        }
        4 => {
            let page = actor.list_messages(&conv_id, &Default::default()).await.unwrap();
            match page.messages.get(rng.below(page.messages.len())) {
                Some(m) => actor.delete_message(&m.id).await,
                None => Ok(()),
            }
        }
        5 => actor.add_participants(&conv_id, &[other.id()]).await.map(|_| ()),
        6 => actor.remove_participant(&conv_id, other.id()).await,
        7 => actor.mark_read(&conv_id, rng.below(conv.last_seq as usize + 2) as i64).await,
        8 => actor
            .rename_conversation(&conv_id, &format!("title {}", rng.below(100)))
            .await
            .map(|_| ()),
        _ => match rng.below(3) {
            0 => actor.leave_conversation(&conv_id).await,
            _ => {
                let body = CreateConversation {
                    kind: ConversationType::Direct,
                    participant_ids: vec![other.id().to_owned()],
                    title: None,
                };
                match actor.create_conversation(&body).await {
                    Ok(made) => {
                        conversations.push(made.value.id);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        },
    };
}

async fn run_sequence(seed: u64, actions: usize) {
    let server = TestServer::spawn().await;
    let users = server.users(["alice", "bob", "carol", "dave"]).await;
    let alice = &users[0];
    let g1 = alice.create_group("one", &[users[1].id(), users[2].id()]).await.unwrap();
    let g2 = users[1].create_group("two", &[alice.id(), users[3].id()]).await.unwrap();
    let d = users[2].create_direct(alice.id()).await.unwrap();
    let marker_conv = users[3].create_direct(alice.id()).await.unwrap();
    let mut conversations = vec![g1.id, g2.id, d.id];
    send_numbered(&users[1].client, &conversations[0], 3).await;
    let mut rng = Rng(seed);

    let mut state = State::snapshot(&alice.client, alice.id()).await;
    let mut ws = alice.connect_ws(None).await.unwrap();
    ws.next_of("ready").await.unwrap();
    for _ in 0..actions {
        random_action(&mut rng, &users, &mut conversations).await;
    }
    let marker = users[3].send_text(&marker_conv.id, "end").await.unwrap();
    loop {
        let frame = ws.next_frame().await.unwrap().expect("open");
        let Ok(event) = frame.event() else { continue };
        let is_marker = matches!(&event, Event::NewMessage(m) if m.id == marker.id);
        state.apply(&alice.client, event).await;
        if is_marker {
            break;
        }
    }

    let fresh = alice.list_conversations().await.unwrap();
    let fresh_order: Vec<String> = fresh.iter().map(|c| c.id.clone()).collect();
    assert_eq!(state.order(), fresh_order, "seed {seed}: conversation order");
    for conversation in fresh {
        let mirror = &state.conversations[&conversation.id];
        let messages: Vec<Message> = mirror.messages.values().cloned().collect();
        let unread = messages
            .iter()
            .filter(|m| m.seq > mirror.my_read && m.sender_id != alice.id() && !m.deleted)
            .count() as i64;
        assert_eq!(messages, history(&alice.client, &conversation.id).await, "seed {seed}: bodies");
        assert_eq!(unread, conversation.unread_count, "seed {seed}: unread count");
        assert_eq!(
            messages.last().map_or(0, |m| m.seq),
            conversation.last_seq,
            "seed {seed}: last_seq"
        );
        assert_eq!(mirror.conversation.title, conversation.title, "seed {seed}: title");
        assert_eq!(roles(&mirror.conversation), roles(&conversation), "seed {seed}: participants");
    }
}

#[tokio::test]
async fn applying_the_events_to_an_old_snapshot_gives_the_fresh_snapshot() {
    let sequences =
        std::env::var("CONFAB_REPLAY_SEQUENCES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    for seed in 1..=sequences {
        run_sequence(seed, 40).await;
    }
}

#[tokio::test]
async fn unreplayable_cursors_get_resync_required_on_every_transport() {
    let mut server = TestServer::spawn_with(|c| c.event_retention_ms = 1).await;
    let other = TestServer::spawn().await;
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_direct(bob.id()).await.unwrap();
    let old = bob.poll_events(None, 0).await.unwrap().cursor;
    send_numbered(&alice.client, &conv.id, 3).await;
    let stranger = other.user("stranger").await;
    other.user("friend").await;
    let foreign = stranger.poll_events(None, 0).await.unwrap().cursor;
    // A restart prunes everything older than the (tiny) retention.
    server.restart().await;
    let bob = server.reconnect(&bob);
    let head = bob.poll_events(None, 0).await.unwrap().cursor;
    let (instance, head_id) = head.rsplit_once('-').unwrap();
    let future = format!("{instance}-{}", head_id.parse::<i64>().unwrap() + 1000);

    for (name, cursor) in
        [("pruned", old.as_str()), ("foreign", &foreign), ("garbage", "x%y"), ("future", &future)]
    {
        let mut ws = bob.connect_ws(Some(cursor)).await.unwrap();
        let over_ws = ws.next_frame().await.unwrap().unwrap();
        let mut sse = bob.connect_sse(Some(cursor)).await.unwrap();
        let over_sse = sse.next_frame().await.unwrap().unwrap();
        let polled = bob.poll_events(Some(cursor), 0).await.unwrap();

        for frame in [&over_ws, &over_sse, &polled.events[0]] {
            assert_eq!(frame.kind, "resync_required", "{name} cursor");
            assert_eq!(frame.payload["cursor"], head.as_str(), "{name}: continue from the head");
        }
        assert_eq!(polled.events.len(), 1, "{name}");
        assert_eq!(polled.cursor, head, "{name}");
    }
    let mut ws = bob.connect_ws(Some(&head)).await.unwrap();
    assert_eq!(ws.next_frame().await.unwrap().unwrap().kind, "ready", "the head cursor resumes");
}
