// state.js — the client's single source of truth: the signed-in user, conversations by id,
// each conversation's loaded messages keyed by seq, the outbox of unsent messages, typing and
// presence. Mutations go through these functions, which then `emit` a topic so the views
// re-render. No fetch here (see actions.js), no DOM (see views/).

/** @typedef {{id: string, conversation_id: string, sender_id: string, content: string, created_at: string, seq: number, client_id: string|null, reply_to: string|null, edited_at: string|null, deleted: boolean}} Message */
/** @typedef {{user_id: string, username: string, joined_at: string, role: "admin"|"member", last_read_seq: number, last_delivered_seq: number}} Participant */
/** @typedef {{id: string, type: "direct"|"group", title: string|null, created_at: string, participants: Participant[], last_message: Message|null, unread_count: number, last_seq: number, last_activity_at: string}} Conversation */
/** @typedef {{bySeq: Map<number, Message>, hasMore: boolean, loaded: boolean, loading: boolean}} MessageCache */
/** @typedef {{client_id: string, conversation_id: string, content: string, reply_to: string|null, created_at: string, status: "sending"|"queued"|"failed", error?: string}} OutboxEntry */

export const state = {
  /** @type {{id: string, username: string, created_at: string, share_read_receipts: boolean}|null} */
  me: null,
  /** @type {Map<string, Conversation>} */
  conversations: new Map(),
  /** @type {Map<string, MessageCache>} */
  messages: new Map(),
  /** @type {OutboxEntry[]} */
  outbox: [],
  /** conversation id → user id → expiry timer @type {Map<string, Map<string, number>>} */
  typing: new Map(),
  /** @type {Map<string, {online: boolean, last_seen: string|null}>} */
  presence: new Map(),
  /** @type {string|null} */
  currentId: null,
  /** @type {"connecting"|"online"|"offline"} */
  connection: "connecting",
};

const listeners = new Set();

/** @param {(topic: string) => void} fn */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Topics: "conversations", "messages", "outbox", "typing", "presence", "connection", "me", "route". */
export function emit(topic) {
  for (const fn of listeners) fn(topic);
}

export function reset() {
  state.me = null;
  state.conversations.clear();
  state.messages.clear();
  state.outbox = [];
  for (const users of state.typing.values()) for (const t of users.values()) clearTimeout(t);
  state.typing.clear();
  state.presence.clear();
  state.currentId = null;
  state.connection = "connecting";
}

// --- conversations -------------------------------------------------------------------------

/** @param {Conversation} conv */
export function putConversation(conv) {
  const old = state.conversations.get(conv.id);
  // A snapshot may be older than what the stream already told us: never move backwards.
  if (old && old.last_seq > conv.last_seq) {
    conv = { ...conv, last_seq: old.last_seq, last_message: old.last_message, last_activity_at: old.last_activity_at };
  }
  state.conversations.set(conv.id, conv);
  emit("conversations");
}

export function removeConversation(id) {
  state.conversations.delete(id);
  state.messages.delete(id);
  state.typing.delete(id);
  emit("conversations");
}

/** Most recent activity first (ties by id, descending, like the server). */
export function sortedConversations() {
  return [...state.conversations.values()].sort((a, b) => {
    const t = Date.parse(b.last_activity_at) - Date.parse(a.last_activity_at);
    return t !== 0 ? t : a.id < b.id ? 1 : -1;
  });
}

export function totalUnread() {
  let n = 0;
  for (const c of state.conversations.values()) n += c.unread_count;
  return n;
}

/** The other member of a direct conversation (or null). */
export function otherParticipant(conv) {
  if (conv.type !== "direct") return null;
  return conv.participants.find((p) => p.user_id !== state.me?.id) || null;
}

/** The other person's name for a direct chat, the group title otherwise. */
export function conversationTitle(conv) {
  if (conv.type === "group") return conv.title || "Group";
  return otherParticipant(conv)?.username || "Direct chat";
}

export function myParticipant(conv) {
  return conv.participants.find((p) => p.user_id === state.me?.id) || null;
}

export function usernameOf(conv, userId) {
  if (userId === state.me?.id) return state.me.username;
  return conv?.participants.find((p) => p.user_id === userId)?.username || "Someone";
}

/** Moves a participant's read or delivered watermark forward. */
export function applyReceipt(kind, { conversation_id, user_id, seq }) {
  const conv = state.conversations.get(conversation_id);
  const member = conv?.participants.find((p) => p.user_id === user_id);
  if (!member) return;
  const field = kind === "read" ? "last_read_seq" : "last_delivered_seq";
  if (member[field] >= seq) return;
  member[field] = seq;
  // Reading implies having received.
  if (kind === "read" && member.last_delivered_seq < seq) member.last_delivered_seq = seq;
  emit("messages");
}

// --- messages ------------------------------------------------------------------------------

/** @returns {MessageCache} */
export function cacheOf(conversationId) {
  let cache = state.messages.get(conversationId);
  if (!cache) {
    cache = { bySeq: new Map(), hasMore: true, loaded: false, loading: false };
    state.messages.set(conversationId, cache);
  }
  return cache;
}

/** Adds or replaces messages (by seq, so a message seen twice is stored once). */
export function putMessages(conversationId, messages) {
  const cache = cacheOf(conversationId);
  for (const m of messages) cache.bySeq.set(m.seq, m);
  emit("messages");
}

/** Loaded messages of a conversation in ascending seq. @returns {Message[]} */
export function messagesOf(conversationId) {
  const cache = state.messages.get(conversationId);
  if (!cache) return [];
  return [...cache.bySeq.values()].sort((a, b) => a.seq - b.seq);
}

export function findMessage(conversationId, id) {
  const cache = state.messages.get(conversationId);
  if (!cache) return null;
  for (const m of cache.bySeq.values()) if (m.id === id) return m;
  return null;
}

// --- typing and presence -------------------------------------------------------------------

const TYPING_TTL_MS = 6000;

/** Records a typing signal; it expires by itself in case the `typing: false` is lost. */
export function setTyping({ conversation_id, user_id, typing }) {
  let users = state.typing.get(conversation_id);
  if (!users) state.typing.set(conversation_id, (users = new Map()));
  clearTimeout(users.get(user_id));
  if (typing) {
    users.set(user_id, setTimeout(() => setTyping({ conversation_id, user_id, typing: false }), TYPING_TTL_MS));
  } else {
    users.delete(user_id);
  }
  emit("typing");
}

export function clearTyping() {
  for (const users of state.typing.values()) for (const t of users.values()) clearTimeout(t);
  state.typing.clear();
  emit("typing");
}

/** User ids typing in a conversation. */
export function typingIn(conversationId) {
  return [...(state.typing.get(conversationId)?.keys() || [])];
}

export function setPresence({ user_id, online, last_seen }) {
  state.presence.set(user_id, { online, last_seen });
  emit("presence");
}
