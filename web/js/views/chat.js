// views/chat.js — the open conversation: header (title, presence or typing, info), the message
// log grouped by day and sender with receipts on own messages, unsent messages from the outbox,
// history paging on scroll-up without jumps, a "new messages" button when not at the bottom,
// and the composer. Message actions (reply, edit, delete, retry) go through data-action.
import * as actions from "../actions.js";
import { pendingIn } from "../outbox.js";
import {
  state, cacheOf, messagesOf, conversationTitle, otherParticipant, usernameOf, typingIn, findMessage, myParticipant,
} from "../state.js";
import { avatar } from "../util/avatar.js";
import { h, icon, iconButton } from "../util/dom.js";
import { clockTime, dayKey, dayLabel, lastSeen } from "../util/time.js";
import { Composer } from "./composer.js";
import { confirmDialog } from "./dialog.js";
import { openConversationInfo } from "./group-dialog.js";

const GROUP_GAP_MS = 5 * 60_000;
const BOTTOM_SLACK = 48;
const TOP_LOAD_PX = 240;

/** Delivery state of an own message as the other members report it. */
function receiptStatus(conv, seq) {
  const others = conv.participants.filter((p) => p.user_id !== state.me?.id);
  if (others.length === 0) return "sent";
  if (others.every((p) => p.last_read_seq >= seq)) return "read";
  if (others.every((p) => p.last_delivered_seq >= seq)) return "delivered";
  return "sent";
}

const STATUS_LABEL = { sent: "Sent", delivered: "Delivered", read: "Read", sending: "Sending…", queued: "Waiting for connection", failed: "Not sent" };
const STATUS_ICON = { sent: "check", delivered: "checks", read: "checks", sending: "clock", queued: "clock", failed: "alert" };

function statusMark(status) {
  return h("span", { class: `status status-${status}`, "data-testid": "message-status", "aria-label": STATUS_LABEL[status], title: STATUS_LABEL[status] }, icon(STATUS_ICON[status]));
}

export class ChatView {
  constructor() {
    this.composer = new Composer();
    this.composer.onSent = () => {
      this.stickToBottom = true;
    };
    this.composer.lastOwn = () => {
      const mine = messagesOf(state.currentId).filter((m) => m.sender_id === state.me?.id && !m.deleted);
      return mine[mine.length - 1] || null;
    };
    this.renderedId = null;
    this.stickToBottom = true;
    this.seenMaxSeq = 0;
    this.newCount = 0;

    this.headAvatar = h("span", { class: "head-avatar" });
    this.headTitle = h("h2", { class: "chat-title", "data-testid": "chat-title" });
    this.headSub = h("p", { class: "chat-sub", "data-testid": "chat-subtitle" });
    this.head = h("header", { class: "chat-head" },
      iconButton("back", "Back to conversations", "back", { class: "icon-btn back-btn", "data-testid": "back-button" }),
      h("button", { type: "button", class: "head-who", "data-action": "info", "aria-label": "Conversation details" }, this.headAvatar, h("span", { class: "head-text" }, this.headTitle, this.headSub)),
      iconButton("info", "Conversation details", "info", { "data-testid": "conversation-info" }));
    this.list = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0", "data-testid": "message-list" });
    this.newBtn = h("button", { type: "button", class: "new-msgs", hidden: true, "data-action": "to-bottom", "data-testid": "new-messages-button" });
    this.typingLine = h("div", { class: "typing-line", "aria-live": "polite", "data-testid": "typing-indicator" });
    this.inner = h("div", { class: "chat-inner", hidden: true },
      this.head,
      h("div", { class: "messages-wrap" }, this.list, this.newBtn),
      this.typingLine,
      this.composer.el);
    this.empty = h("div", { class: "chat-empty", "data-testid": "chat-empty" },
      h("span", { class: "empty-mark" }, icon("chat")),
      h("h2", {}, "Your messages"),
      h("p", {}, "Pick a conversation on the left, or start a new one."));
    this.el = h("section", { class: "chat", "aria-label": "Conversation" }, this.empty, this.inner);

    this.list.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.el.addEventListener("click", (e) => this.onClick(e));
  }

  isAtBottom() {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < BOTTOM_SLACK;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
    this.newCount = 0;
    this.updateNewButton();
  }

  onScroll() {
    const id = state.currentId;
    if (!id) return;
    if (this.isAtBottom() && this.newCount) {
      this.newCount = 0;
      this.updateNewButton();
    }
    if (this.list.scrollTop < TOP_LOAD_PX) actions.loadOlder(id);
  }

  updateNewButton() {
    this.newBtn.hidden = this.newCount === 0;
    this.newBtn.replaceChildren(icon("down"), this.newCount === 1 ? "1 new message" : `${this.newCount} new messages`);
  }

  /** @param {MouseEvent} e */
  async onClick(e) {
    const target = /** @type {HTMLElement} */ (e.target).closest("[data-action]");
    if (!target || !this.el.contains(target)) return;
    const conv = state.conversations.get(state.currentId || "");
    const action = target.getAttribute("data-action");
    const id = target.getAttribute("data-id") || "";
    const msg = conv ? findMessage(conv.id, id) : null;
    switch (action) {
      case "back":
        location.hash = "#/";
        break;
      case "info":
        if (conv) openConversationInfo(conv.id);
        break;
      case "to-bottom":
        this.scrollToBottom();
        break;
      case "reply":
        if (msg && conv) this.composer.startReply(msg, usernameOf(conv, msg.sender_id));
        break;
      case "edit":
        if (msg) this.composer.startEdit(msg);
        break;
      case "delete":
        if (msg && (await confirmDialog("Delete this message?", "It will be replaced by “Message deleted” for everyone.", "Delete"))) {
          await actions.deleteMessage(msg);
          // The button that had the focus went with the message's toolbar: keep the keyboard
          // user where they were, on the tombstone (or in the composer).
          if (!document.activeElement || document.activeElement === document.body) {
            const bubble = /** @type {HTMLElement|null} */ (this.list.querySelector(`[data-key="${CSS.escape(msg.id)}"] .bubble`));
            if (bubble) bubble.focus();
            else this.composer.focus();
          }
        }
        break;
      case "jump": {
        const el = this.list.querySelector(`[data-key="${CSS.escape(id)}"]`);
        if (el) {
          el.scrollIntoView({ block: "center", behavior: "smooth" });
          el.classList.add("flash");
          setTimeout(() => el.classList.remove("flash"), 1200);
        }
        break;
      }
      case "retry":
        actions.retrySend(id);
        break;
      case "discard":
        actions.discardSend(id);
        break;
      default:
        break;
    }
  }

  /** Re-renders what `topic` touched. */
  render(topic) {
    const id = state.currentId;
    const conv = id ? state.conversations.get(id) : null;
    this.empty.hidden = !!conv;
    this.inner.hidden = !conv;
    if (!conv) {
      this.renderedId = null;
      this.composer.setConversation(null);
      return;
    }
    const switched = this.renderedId !== conv.id;
    if (switched) {
      this.renderedId = conv.id;
      this.renderedSignature = null;
      this.stickToBottom = true;
      this.newCount = 0;
      this.seenMaxSeq = 0;
      this.composer.setConversation(conv.id);
      this.updateNewButton();
    }
    this.renderHead(conv);
    this.renderTyping(conv);
    if (switched || topic === "messages" || topic === "outbox" || topic === "conversations" || topic === "route") this.renderMessages(conv);
  }

  renderHead(conv) {
    const title = conversationTitle(conv);
    const other = otherParticipant(conv);
    const presence = other ? state.presence.get(other.user_id) : null;
    this.headAvatar.replaceChildren(avatar(title, conv.type === "group" ? conv.id : other?.user_id || conv.id, { presence: other ? !!presence?.online : null, group: conv.type === "group" }));
    this.headTitle.textContent = title;
    const typing = typingIn(conv.id);
    let sub;
    if (typing.length) sub = conv.type === "group" ? `${usernameOf(conv, typing[0])} is typing…` : "typing…";
    else if (other) sub = presence?.online ? "online" : lastSeen(presence?.last_seen);
    else {
      const online = conv.participants.filter((p) => p.user_id !== state.me?.id && state.presence.get(p.user_id)?.online).length;
      sub = `${conv.participants.length} members${online ? `, ${online} online` : ""}`;
    }
    this.headSub.textContent = sub;
    this.headSub.classList.toggle("is-typing", typing.length > 0);
    this.headSub.classList.toggle("is-online", !typing.length && !!presence?.online);
  }

  renderTyping(conv) {
    const names = typingIn(conv.id).map((uid) => usernameOf(conv, uid));
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    if (this.typingLine.dataset.text === text) return;
    this.typingLine.dataset.text = text;
    this.typingLine.replaceChildren(...(text ? [h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), text] : []));
    this.typingLine.classList.toggle("visible", !!text);
  }

  /** The first message row visible at the top, and its offset: kept in place across renders. */
  anchor() {
    const top = this.list.scrollTop;
    for (const el of this.list.children) {
      const row = /** @type {HTMLElement} */ (el);
      if (row.dataset.key && row.offsetTop + row.offsetHeight > top) return { key: row.dataset.key, offset: row.offsetTop - top };
    }
    return null;
  }

  renderMessages(conv) {
    const cache = cacheOf(conv.id);
    const atBottom = this.stickToBottom || this.isAtBottom();
    const anchor = atBottom ? null : this.anchor();
    const messages = messagesOf(conv.id);
    const pending = pendingIn(conv.id);
    const isGroup = conv.type === "group";
    const me = state.me?.id;
    const amAdmin = isGroup && myParticipant(conv)?.role === "admin";

    // Everything the rows show. Rebuilding them when none of it changed (an event of another
    // conversation, a receipt that moves no mark) would throw away the reader's text selection
    // and focus for nothing.
    const signature = JSON.stringify([conv.id, cache.loaded, cache.hasMore, conversationTitle(conv), me, amAdmin,
      new Date().toDateString(),
      conv.participants.map((p) => [p.user_id, p.username, p.role, p.last_read_seq, p.last_delivered_seq]),
      messages.map((m) => [m.id, m.edited_at, m.deleted]),
      pending.map((p) => [p.client_id, p.status, p.error, p.permanent])]);
    if (signature === this.renderedSignature) return;
    this.renderedSignature = signature;

    /** @type {Node[]} */
    const rows = [];
    if (!cache.loaded) rows.push(h("div", { class: "history-edge" }, h("span", { class: "spinner" }), "Loading messages…"));
    else if (cache.hasMore) rows.push(h("div", { class: "history-edge", "data-testid": "history-loader" }, h("span", { class: "spinner" }), "Loading older messages…"));
    else rows.push(h("div", { class: "history-edge start", "data-testid": "history-start" }, isGroup ? `This is the start of ${conversationTitle(conv)}.` : `This is the start of your conversation with ${conversationTitle(conv)}.`));

    // Messages on their way come last; one the server refused stays where it was written
    // (by time), so later messages do not pile up above it.
    const items = messages.map((m) => ({ kind: "message", m, sender: m.sender_id, at: m.created_at }));
    for (const p of pending.filter((e) => e.status === "failed")) {
      const at = items.findIndex((item) => item.at > p.created_at);
      items.splice(at < 0 ? items.length : at, 0, { kind: "pending", m: p, sender: me, at: p.created_at });
    }
    for (const p of pending.filter((e) => e.status !== "failed")) items.push({ kind: "pending", m: p, sender: me, at: p.created_at });
    items.forEach((item, i) => {
      const prev = items[i - 1];
      const next = items[i + 1];
      const day = dayKey(item.at);
      if (!prev || dayKey(prev.at) !== day) rows.push(h("div", { class: "day-sep", role: "separator" }, h("span", {}, dayLabel(item.at))));
      const joins = (a, b) => a && b && a.sender === b.sender && dayKey(a.at) === dayKey(b.at) && Math.abs(Date.parse(b.at) - Date.parse(a.at)) < GROUP_GAP_MS;
      const first = !joins(prev, item);
      const last = !joins(item, next);
      rows.push(item.kind === "message" ? this.messageRow(conv, item.m, first, last, isGroup, amAdmin) : this.pendingRow(conv, item.m, first, last));
    });

    const maxSeq = messages.length ? messages[messages.length - 1].seq : 0;
    const fresh = messages.filter((m) => m.seq > this.seenMaxSeq && m.sender_id !== me).length;
    const hadSeen = this.seenMaxSeq > 0;
    this.seenMaxSeq = Math.max(this.seenMaxSeq, maxSeq);

    this.list.replaceChildren(...rows);

    if (atBottom) {
      this.list.scrollTop = this.list.scrollHeight;
      this.stickToBottom = !cache.loaded;
    } else if (anchor) {
      const el = /** @type {HTMLElement|null} */ (this.list.querySelector(`[data-key="${CSS.escape(anchor.key)}"]`));
      if (el) this.list.scrollTop = el.offsetTop - anchor.offset;
      if (hadSeen && fresh) {
        this.newCount += fresh;
        this.updateNewButton();
      }
    }
    // A short history does not fill the view, so no scroll-up could ask for more.
    if (cache.loaded && cache.hasMore && !cache.loading && this.list.scrollHeight <= this.list.clientHeight + TOP_LOAD_PX) {
      setTimeout(() => actions.loadOlder(conv.id), 0);
    }
  }

  quote(conv, replyTo) {
    const original = findMessage(conv.id, replyTo);
    const name = original ? usernameOf(conv, original.sender_id) : "";
    const text = !original ? "Original message not loaded" : original.deleted ? "Message deleted" : original.content;
    return h("button", { type: "button", class: "quote", "data-action": "jump", "data-id": replyTo, "data-testid": "message-quote", "aria-label": `Reply to ${name || "a message"}` },
      name ? h("span", { class: "quote-name" }, name) : null,
      h("span", { class: "quote-text" }, text.length > 160 ? `${text.slice(0, 160)}…` : text));
  }

  messageRow(conv, m, first, last, isGroup, amAdmin) {
    const own = m.sender_id === state.me?.id;
    const name = usernameOf(conv, m.sender_id);
    const status = own ? receiptStatus(conv, m.seq) : null;
    const canDelete = !m.deleted && (own || amAdmin);
    const actionsBar = m.deleted ? null : h("div", { class: "msg-actions", role: "toolbar", "aria-label": "Message actions" },
      iconButton("reply", "Reply", "reply", { "data-id": m.id, "data-testid": "reply-button" }),
      own ? iconButton("edit", "Edit", "edit", { "data-id": m.id, "data-testid": "edit-button" }) : null,
      canDelete ? iconButton("trash", "Delete", "delete", { "data-id": m.id, "data-testid": "delete-button" }) : null);
    return h("div", {
      class: `msg ${own ? "own" : "other"}${first ? " first" : ""}${last ? " last" : ""}${m.deleted ? " is-deleted" : ""}`,
      "data-key": m.id, "data-testid": "message", "data-seq": m.seq, "data-status": status || false, "data-sender": name,
    },
    !own && isGroup ? (last ? avatar(name, m.sender_id, { size: "sm" }) : h("span", { class: "avatar-spacer" })) : null,
    h("div", { class: "msg-body" },
      !own && isGroup && first ? h("div", { class: "msg-sender" }, name) : null,
      h("div", { class: "bubble-row" },
        h("div", { class: "bubble", tabindex: "-1" },
          m.reply_to && !m.deleted ? this.quote(conv, m.reply_to) : null,
          h("div", { class: "msg-text", "data-testid": "message-text" }, m.deleted ? "Message deleted" : m.content),
          h("span", { class: "msg-meta" },
            m.edited_at && !m.deleted ? h("span", { class: "edited", "data-testid": "edited-mark" }, "edited") : null,
            h("time", { datetime: m.created_at, title: new Date(m.created_at).toLocaleString() }, clockTime(m.created_at)),
            status && !m.deleted ? statusMark(status) : null)),
        actionsBar)));
  }

  pendingRow(conv, p, first, last) {
    return h("div", { class: `msg own pending${first ? " first" : ""}${last ? " last" : ""}${p.status === "failed" ? " failed" : ""}`, "data-key": p.client_id, "data-testid": "message", "data-status": p.status },
      h("div", { class: "msg-body" },
        h("div", { class: "bubble-row" },
          h("div", { class: "bubble" },
            p.reply_to ? this.quote(conv, p.reply_to) : null,
            h("div", { class: "msg-text", "data-testid": "message-text" }, p.content),
            h("span", { class: "msg-meta" }, h("time", { datetime: p.created_at }, clockTime(p.created_at)), statusMark(p.status)))),
        p.status === "failed" || p.status === "queued"
          ? h("div", { class: "send-problem", role: p.status === "failed" ? "alert" : false },
            h("span", {}, p.status === "failed" ? `Not sent${p.error ? `: ${p.error}` : ""}` : "Will send when the connection is back"),
            p.permanent ? null : h("button", { type: "button", class: "link-btn", "data-action": "retry", "data-id": p.client_id, "data-testid": "retry-button" }, "Retry"),
            p.status === "failed" ? h("button", { type: "button", class: "link-btn", "data-action": "discard", "data-id": p.client_id }, "Discard") : null)
          : null));
  }
}
