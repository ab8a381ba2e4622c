// outbox.js — messages the user sent that the server has not confirmed yet. Each has a
// client_id chosen here, so sending it again (after a failure, a reconnect or a reload) can
// never create a second message. Persisted in localStorage per user; flushed in order.
import { api } from "./api.js";
import { state, emit } from "./state.js";

/** @typedef {import("./state.js").OutboxEntry} OutboxEntry */

let flushing = false;
let again = false;
/** @type {(message: import("./state.js").Message) => void} */
let onSent = () => {};

function storageKey() {
  return `confab.outbox.${state.me?.id}`;
}

function persist() {
  try {
    localStorage.setItem(storageKey(), JSON.stringify(state.outbox));
  } catch {
    // Storage full or disabled: the outbox still works for this page's lifetime.
  }
}

/** Loads what a previous page left unsent; those are retried with their client_id. */
export function loadOutbox(sent) {
  onSent = sent;
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey()) || "[]");
    state.outbox = Array.isArray(saved) ? saved.map((e) => ({ ...e, status: e.status === "failed" ? "failed" : "queued" })) : [];
  } catch {
    state.outbox = [];
  }
  emit("outbox");
}

function newClientId() {
  return typeof crypto.randomUUID === "function" ? crypto.randomUUID() : `c-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

/** Queues a message and starts sending. */
export function enqueue(conversationId, content, replyTo) {
  state.outbox.push({
    client_id: newClientId(),
    conversation_id: conversationId,
    content,
    reply_to: replyTo || null,
    created_at: new Date().toISOString(),
    status: "queued",
  });
  persist();
  emit("outbox");
  flush();
}

/** The server confirmed this client_id (by REST answer or a new_message event). */
export function confirm(clientId) {
  const before = state.outbox.length;
  state.outbox = state.outbox.filter((e) => e.client_id !== clientId);
  if (state.outbox.length !== before) {
    persist();
    emit("outbox");
  }
}

export function retry(clientId) {
  const entry = state.outbox.find((e) => e.client_id === clientId);
  if (!entry) return;
  entry.status = "queued";
  entry.error = undefined;
  entry.permanent = undefined;
  emit("outbox");
  flush();
}

export function discard(clientId) {
  confirm(clientId);
}

/** Forgets every unsent entry of the signed-in user, here and in storage (at sign-out). */
export function forgetAll() {
  try {
    localStorage.removeItem(storageKey());
  } catch {
    // Storage disabled: nothing was kept.
  }
  state.outbox = [];
  emit("outbox");
}

/** Drops entries of a conversation the user can no longer see. */
export function forgetConversation(conversationId) {
  state.outbox = state.outbox.filter((e) => e.conversation_id !== conversationId);
  persist();
  emit("outbox");
}

/** Sends queued entries one at a time, in order; stops at the first unreachable-server error. */
export async function flush() {
  if (flushing) {
    again = true;
    return;
  }
  flushing = true;
  try {
    do {
      again = false;
      for (const entry of [...state.outbox]) {
        if (entry.status === "failed" || !state.outbox.includes(entry)) continue;
        entry.status = "sending";
        emit("outbox");
        try {
          const message = await api.sendMessage(entry.conversation_id, {
            content: entry.content,
            client_id: entry.client_id,
            ...(entry.reply_to ? { reply_to: entry.reply_to } : {}),
          });
          confirm(entry.client_id);
          onSent(message);
        } catch (err) {
          if (err.retryable) {
            // Offline or restarting: keep it queued; the next `ready` flushes again.
            entry.status = "queued";
            emit("outbox");
            persist();
            return;
          }
          entry.status = "failed";
          entry.error = err.message;
          // Refused as it is (too long, not allowed): sending it again cannot help.
          entry.permanent = err.status >= 400 && err.status < 500;
          emit("outbox");
          persist();
        }
      }
    } while (again);
  } finally {
    flushing = false;
  }
}

/** Unsent entries of one conversation, oldest first. */
export function pendingIn(conversationId) {
  return state.outbox.filter((e) => e.conversation_id === conversationId);
}
