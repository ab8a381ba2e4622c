// actions.js — the use cases: sign in/out, sync by REST, apply real-time frames, open a
// conversation, page history, send/edit/delete, receipts and typing. Combines api.js, events.js,
// outbox.js and state.js; views call these and never fetch themselves.
import { api, ApiError } from "./api.js";
import { Realtime } from "./events.js";
import * as outbox from "./outbox.js";
import {
  state, emit, reset, putConversation, removeConversation, cacheOf, putMessages, applyReceipt,
  setTyping, clearTyping, setPresence, myParticipant, findMessage,
} from "./state.js";

const PAGE = 50;
/** @type {Realtime|null} */
let realtime = null;
let toast = (/** @type {string} */ _text, /** @type {string} */ _kind) => {};
let signedOut = () => {};

/** Hooks the views provide: how to show a toast, what to do when the session ends. */
export function configure(hooks) {
  toast = hooks.toast;
  signedOut = hooks.signedOut;
}

// --- session -------------------------------------------------------------------------------

/** Starts the signed-in app: settings, conversations, presence, then the live stream. */
export async function start(me) {
  state.me = me;
  emit("me");
  outbox.loadOutbox((message) => receiveMessage(message));
  // Take the stream's starting point before the REST snapshot, so nothing falls between them;
  // events replayed on top of the snapshot are applied idempotently.
  const { cursor } = await api.currentCursor();
  await syncAll();
  realtime = new Realtime({ onFrame, onStatus, onAuthLost: () => endSession() });
  realtime.start(cursor);
  outbox.flush();
}

export async function signOut() {
  try {
    await api.logout();
  } catch {
    // Already signed out or offline: forget the session locally either way.
  }
  endSession();
}

function endSession() {
  if (realtime) realtime.stop();
  realtime = null;
  // Unsent text must not stay on a shared computer after its user has gone.
  outbox.forgetAll();
  reset();
  signedOut();
}

export async function setShareReadReceipts(value) {
  state.me = await api.updateMe({ share_read_receipts: value });
  emit("me");
}

// --- sync ----------------------------------------------------------------------------------

/** Reloads everything shown from REST (at start and when the stream says `resync_required`). */
async function syncAll() {
  const [{ conversations }, presence] = await Promise.all([api.listConversations(), api.presence().catch(() => ({ presence: [] }))]);
  const ids = new Set(conversations.map((c) => c.id));
  for (const id of [...state.conversations.keys()]) if (!ids.has(id)) removeConversation(id);
  for (const conv of conversations) state.conversations.set(conv.id, conv);
  for (const p of presence.presence) state.presence.set(p.user_id, p);
  // Cached pages may have gaps now: drop them, and reload the open one.
  state.messages.clear();
  emit("conversations");
  emit("presence");
  if (state.currentId) await loadLatest(state.currentId);
  for (const conv of conversations) acknowledgeDelivery(conv);
}

/** Presence covers only people we share a conversation with: ask again when that set grows. */
function refreshPresence() {
  api.presence().then((p) => p.presence.forEach(setPresence)).catch(() => {});
}

async function refreshConversation(id) {
  try {
    const known = state.conversations.has(id);
    putConversation(await api.getConversation(id));
    if (!known) refreshPresence();
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_found") dropConversation(id);
  }
}

function dropConversation(id) {
  removeConversation(id);
  outbox.forgetConversation(id);
  if (state.currentId === id) location.hash = "#/";
}

// --- real-time -----------------------------------------------------------------------------

function onStatus(status) {
  state.connection = status;
  emit("connection");
  if (status === "online") {
    // Presence and typing are not replayed: refresh the one, forget the other.
    clearTyping();
    refreshPresence();
    outbox.flush();
  }
}

/** @param {import("./events.js").Frame} frame */
function onFrame(frame) {
  const p = frame.payload;
  switch (frame.type) {
    case "resync_required":
      syncAll().catch(() => toast("Could not refresh. Retrying when the connection is back.", "error"));
      break;
    case "new_message":
      receiveMessage(p);
      break;
    case "message_updated":
    case "message_deleted":
      updateMessage(p);
      break;
    case "conversation_created":
    case "conversation_updated":
      refreshConversation(p.id);
      break;
    case "participant_added":
      refreshConversation(p.conversation_id);
      break;
    case "participant_removed":
      if (p.user_id === state.me?.id) {
        if (p.by !== state.me.id) toast(`You were removed from ${p.conversation?.title || "a group"}`, "info");
        dropConversation(p.conversation_id);
      } else {
        refreshConversation(p.conversation_id);
      }
      break;
    case "read":
    case "delivered":
      applyReceipt(frame.type, p);
      if (frame.type === "read" && p.user_id === state.me?.id) ownReadElsewhere(p);
      break;
    case "typing":
      if (p.user_id !== state.me?.id) setTyping(p);
      break;
    case "presence":
      setPresence(p);
      break;
    default:
      break; // ready, ack, pong, and types from newer servers
  }
}

/** A message arrived (stream or REST answer). Idempotent: seen twice, counted once. */
function receiveMessage(msg) {
  const conv = state.conversations.get(msg.conversation_id);
  if (!conv) {
    refreshConversation(msg.conversation_id);
    return;
  }
  const mine = msg.sender_id === state.me?.id;
  if (mine && msg.client_id) outbox.confirm(msg.client_id);
  putMessages(conv.id, [msg]);
  if (msg.seq > conv.last_seq) {
    conv.last_seq = msg.seq;
    conv.last_message = msg;
    conv.last_activity_at = msg.created_at;
    const me = myParticipant(conv);
    if (mine) {
      // Sending reads everything before it (the server moves the read watermark too).
      if (me) me.last_read_seq = Math.max(me.last_read_seq, msg.seq);
      conv.unread_count = 0;
    } else {
      conv.unread_count += msg.deleted ? 0 : 1;
      setTyping({ conversation_id: conv.id, user_id: msg.sender_id, typing: false });
    }
    emit("conversations");
    if (!mine) {
      acknowledgeDelivery(conv);
      if (isViewing(conv.id)) markRead(conv.id);
    }
  }
}

function updateMessage(msg) {
  const cache = state.messages.get(msg.conversation_id);
  if (cache && cache.bySeq.has(msg.seq)) putMessages(msg.conversation_id, [msg]);
  const conv = state.conversations.get(msg.conversation_id);
  if (conv && conv.last_message && conv.last_message.id === msg.id) {
    conv.last_message = msg;
    emit("conversations");
  }
  // A deleted unread message no longer counts.
  if (conv && msg.deleted && msg.sender_id !== state.me?.id) {
    const me = myParticipant(conv);
    if (me && msg.seq > me.last_read_seq) refreshConversation(conv.id);
  }
}

function ownReadElsewhere({ conversation_id, seq }) {
  const conv = state.conversations.get(conversation_id);
  if (!conv) return;
  if (seq >= conv.last_seq) {
    conv.unread_count = 0;
    emit("conversations");
  } else {
    refreshConversation(conversation_id);
  }
}

/** Tells the server this device has everything up to the conversation's newest message. */
function acknowledgeDelivery(conv) {
  const me = myParticipant(conv);
  if (!me || me.last_delivered_seq >= conv.last_seq) return;
  me.last_delivered_seq = conv.last_seq;
  const payload = { conversation_id: conv.id, seq: conv.last_seq };
  if (!realtime || !realtime.send({ type: "delivered", payload })) {
    api.markDelivered(conv.id, conv.last_seq).catch(() => {});
  }
}

// --- reading -------------------------------------------------------------------------------

export function isViewing(id) {
  return state.currentId === id && document.visibilityState === "visible";
}

/** Marks everything in the conversation read (called while it is on screen). */
export function markRead(id) {
  const conv = state.conversations.get(id);
  if (!conv || conv.last_seq === 0) return;
  const me = myParticipant(conv);
  if (conv.unread_count === 0 && me && me.last_read_seq >= conv.last_seq) return;
  conv.unread_count = 0;
  if (me) me.last_read_seq = conv.last_seq;
  emit("conversations");
  api.markRead(id, conv.last_seq).catch(() => {});
}

/** Opens a conversation (or none): loads its newest page once, marks it read. */
export async function openConversation(id) {
  if (state.currentId !== id) stopTyping();
  state.currentId = id;
  emit("route");
  if (!id) return;
  if (!state.conversations.has(id)) await refreshConversation(id);
  if (!state.conversations.has(id)) return;
  const cache = cacheOf(id);
  if (!cache.loaded) await loadLatest(id);
  if (isViewing(id)) markRead(id);
}

async function loadLatest(id) {
  const cache = cacheOf(id);
  cache.loading = true;
  try {
    const page = await api.listMessages(id, { limit: PAGE });
    cache.hasMore = page.has_more;
    cache.loaded = true;
    putMessages(id, page.messages);
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_found") dropConversation(id);
    else toast("Could not load messages", "error");
  } finally {
    cache.loading = false;
    emit("messages");
  }
}

/** Loads the page before the oldest loaded message. */
export async function loadOlder(id) {
  const cache = cacheOf(id);
  if (cache.loading || !cache.hasMore || !cache.loaded) return;
  const oldest = Math.min(...cache.bySeq.keys());
  if (!Number.isFinite(oldest) || oldest <= 1) {
    cache.hasMore = false;
    emit("messages");
    return;
  }
  cache.loading = true;
  emit("messages");
  try {
    const page = await api.listMessages(id, { before: oldest, limit: PAGE });
    cache.hasMore = page.has_more;
    putMessages(id, page.messages);
  } catch {
    toast("Could not load older messages", "error");
  } finally {
    cache.loading = false;
    emit("messages");
  }
}

// --- writing -------------------------------------------------------------------------------

export function sendMessage(conversationId, content, replyTo) {
  stopTyping();
  outbox.enqueue(conversationId, content, replyTo);
}

export const retrySend = outbox.retry;
export const discardSend = outbox.discard;

/** Edits a message; false (after telling the user) when the server refused the edit. */
export async function editMessage(msg, content) {
  try {
    updateMessage(await api.editMessage(msg.id, content));
    return true;
  } catch (err) {
    toast(`Could not edit: ${err.message}`, "error");
    return false;
  }
}

export async function deleteMessage(msg) {
  try {
    await api.deleteMessage(msg.id);
    updateMessage({ ...msg, content: "", deleted: true });
  } catch (err) {
    toast(`Could not delete: ${err.message}`, "error");
  }
}

// --- typing --------------------------------------------------------------------------------

let typingIn = null;
let typingSentAt = 0;
let typingStopTimer = 0;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 4000;

function sendTyping(conversationId, typing) {
  const payload = { conversation_id: conversationId, typing };
  if (!realtime || !realtime.send({ type: "typing", payload })) {
    api.setTyping(conversationId, typing).catch(() => {});
  }
}

/** Called on every keystroke in the composer: signals typing, refreshed every 3 s. */
export function userTyping(conversationId) {
  const now = Date.now();
  if (typingIn !== conversationId || now - typingSentAt > TYPING_REFRESH_MS) {
    if (typingIn && typingIn !== conversationId) sendTyping(typingIn, false);
    typingIn = conversationId;
    typingSentAt = now;
    sendTyping(conversationId, true);
  }
  clearTimeout(typingStopTimer);
  typingStopTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

export function stopTyping() {
  clearTimeout(typingStopTimer);
  if (typingIn) sendTyping(typingIn, false);
  typingIn = null;
  typingSentAt = 0;
}

// --- conversations -------------------------------------------------------------------------

export async function startDirect(userId) {
  const conv = await api.createConversation({ type: "direct", participant_ids: [userId] });
  putConversation(conv);
  refreshPresence();
  return conv;
}

export async function createGroup(title, userIds) {
  const conv = await api.createConversation({ type: "group", title, participant_ids: userIds });
  putConversation(conv);
  refreshPresence();
  return conv;
}

export async function renameGroup(id, title) {
  putConversation(await api.renameConversation(id, title));
}

export async function addMembers(id, userIds) {
  putConversation(await api.addParticipants(id, userIds));
  refreshPresence();
}

export async function removeMember(id, userId) {
  await api.removeParticipant(id, userId);
  await refreshConversation(id);
}

export async function leaveGroup(id) {
  await api.leaveConversation(id);
  dropConversation(id);
}

export { findMessage };
