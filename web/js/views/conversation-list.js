// views/conversation-list.js — the sidebar list: avatar, title, latest snippet, relative time
// and unread badge per conversation, most recent first, narrowed by the filter box.
import { state, sortedConversations, conversationTitle, otherParticipant, usernameOf, typingIn } from "../state.js";
import { avatar } from "../util/avatar.js";
import { h } from "../util/dom.js";
import { relativeTime } from "../util/time.js";

function snippet(conv) {
  const typing = typingIn(conv.id);
  if (typing.length) {
    return { text: conv.type === "group" ? `${usernameOf(conv, typing[0])} is typing…` : "typing…", typing: true };
  }
  const m = conv.last_message;
  if (!m) return { text: conv.type === "group" ? "Group created" : "No messages yet", typing: false };
  const body = m.deleted ? "Message deleted" : m.content.replace(/\s+/g, " ");
  const who = m.sender_id === state.me?.id ? "You: " : conv.type === "group" ? `${usernameOf(conv, m.sender_id)}: ` : "";
  return { text: who + body, typing: false };
}

function item(conv) {
  const title = conversationTitle(conv);
  const other = otherParticipant(conv);
  const presence = other ? !!state.presence.get(other.user_id)?.online : null;
  const snip = snippet(conv);
  const active = state.currentId === conv.id;
  const unread = conv.unread_count;
  return h("li", { class: "conv-item-wrap" },
    h("a", {
      href: `#/c/${encodeURIComponent(conv.id)}`,
      class: `conv-item${active ? " active" : ""}${unread ? " has-unread" : ""}`,
      "aria-current": active ? "page" : false,
      "data-testid": "conversation-item",
      "data-conversation-id": conv.id,
      "aria-label": `${title}${unread ? `, ${unread} unread` : ""}`,
    },
    avatar(title, conv.type === "group" ? conv.id : other?.user_id || conv.id, { presence, group: conv.type === "group" }),
    h("span", { class: "conv-main" },
      h("span", { class: "conv-top" },
        h("span", { class: "conv-title", "data-testid": "conversation-title" }, title),
        h("time", { class: "conv-time", datetime: conv.last_activity_at }, relativeTime(conv.last_activity_at))),
      h("span", { class: "conv-bottom" },
        h("span", { class: `conv-snippet${snip.typing ? " typing" : ""}` }, snip.text),
        unread ? h("span", { class: "badge", "data-testid": "unread-badge" }, unread > 99 ? "99+" : String(unread)) : null))));
}

/**
 * Re-renders the list into `ul`.
 * @param {HTMLElement} ul
 * @param {string} filter
 */
export function renderConversationList(ul, filter) {
  const q = filter.trim().toLowerCase();
  const convs = sortedConversations().filter((c) => !q || conversationTitle(c).toLowerCase().includes(q)
    || c.participants.some((p) => p.username.toLowerCase().includes(q)));
  if (convs.length === 0) {
    ul.replaceChildren(h("li", { class: "list-empty" }, q ? "No conversation matches." : state.conversations.size ? "" : "No conversations yet. Start one with the pencil button above."));
    return;
  }
  ul.replaceChildren(...convs.map(item));
}
