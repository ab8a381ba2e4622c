// views/shell.js — the signed-in layout: sidebar (me, actions, filter, list) and chat pane,
// the offline banner, hash routing (#/c/<id>), the page title's unread count, and the
// re-render scheduler that turns state topics into view updates.
import * as actions from "../actions.js";
import { state, subscribe, totalUnread } from "../state.js";
import { avatar } from "../util/avatar.js";
import { h, iconButton } from "../util/dom.js";
import { ChatView } from "./chat.js";
import { renderConversationList } from "./conversation-list.js";
import { openNewChatDialog, openNewGroupDialog } from "./group-dialog.js";
import { openSettings } from "./settings.js";

/** Routes: "#/" the list, "#/c/<id>" a conversation. */
function routeId() {
  const m = /^#\/c\/(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

/**
 * Mounts the app into `root`; returns an unmount function.
 * @param {HTMLElement} root
 */
export function mountShell(root) {
  const chat = new ChatView();
  const list = h("ul", { class: "conv-list", "aria-label": "Conversations", "data-testid": "conversation-list" });
  const filter = h("input", { type: "search", class: "input filter", placeholder: "Search", "aria-label": "Filter conversations", "data-testid": "conversation-filter" });
  const meBox = h("button", { type: "button", class: "me-box", "data-action": "settings", "aria-label": "Settings", "data-testid": "me" });
  const banner = h("div", { class: "banner", role: "status", hidden: true, "data-testid": "offline-banner" });
  const sidebar = h("aside", { class: "sidebar", "aria-label": "Conversations" },
    h("header", { class: "sidebar-head" }, meBox,
      h("div", { class: "head-actions" },
        iconButton("compose", "New chat", "new-chat", { "data-testid": "new-chat" }),
        iconButton("users", "New group", "new-group", { "data-testid": "new-group" }),
        iconButton("settings", "Settings", "settings", { "data-testid": "settings" }))),
    h("div", { class: "filter-wrap" }, filter),
    h("nav", { class: "conv-nav", "aria-label": "Conversation list" }, list));
  const app = h("div", { class: "app", "data-pane": "list" }, banner, h("div", { class: "panes" }, sidebar, chat.el));
  root.replaceChildren(app);
  root.classList.remove("boot");
  root.removeAttribute("aria-busy");

  sidebar.addEventListener("click", (e) => {
    const action = /** @type {HTMLElement} */ (e.target).closest("[data-action]")?.getAttribute("data-action");
    if (action === "new-chat") openNewChatDialog();
    else if (action === "new-group") openNewGroupDialog();
    else if (action === "settings") openSettings();
  });
  filter.addEventListener("input", () => renderConversationList(list, filter.value));

  // Batch: many events in one tick render once, per topic.
  const dirty = new Set();
  let scheduled = false;
  function flush() {
    scheduled = false;
    const topics = [...dirty];
    dirty.clear();
    if (topics.some((t) => t !== "messages" && t !== "outbox")) renderConversationList(list, filter.value);
    if (topics.includes("me") && state.me) meBox.replaceChildren(avatar(state.me.username, state.me.id, { size: "sm" }), h("span", { class: "me-name" }, state.me.username));
    if (topics.includes("connection")) renderBanner();
    for (const t of topics) chat.render(t);
    const unread = totalUnread();
    document.title = unread ? `(${unread}) Confab` : "Confab";
  }
  function schedule(topic) {
    dirty.add(topic);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  }

  let bannerTimer = 0;
  function renderBanner() {
    clearTimeout(bannerTimer);
    if (state.connection === "online") {
      banner.hidden = true;
      app.classList.remove("is-offline");
      return;
    }
    // A blip shorter than a second is not worth a banner.
    bannerTimer = setTimeout(() => {
      banner.textContent = navigator.onLine ? "Connection lost. Reconnecting…" : "You are offline. Messages will be sent when you are back.";
      banner.hidden = false;
      app.classList.add("is-offline");
    }, 800);
  }

  function onRoute() {
    const id = routeId();
    app.dataset.pane = id ? "chat" : "list";
    actions.openConversation(id);
    if (id) setTimeout(() => chat.composer.focus(), 0);
  }

  function onVisibility() {
    if (state.currentId && document.visibilityState === "visible") actions.markRead(state.currentId);
  }

  const unsubscribe = subscribe(schedule);
  window.addEventListener("hashchange", onRoute);
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("focus", onVisibility);
  // Relative times ("2 min") age: refresh them now and then.
  const clock = setInterval(() => schedule("clock"), 30_000);
  ["me", "conversations", "connection"].forEach(schedule);
  onRoute();

  return () => {
    unsubscribe();
    clearInterval(clock);
    window.removeEventListener("hashchange", onRoute);
    document.removeEventListener("visibilitychange", onVisibility);
    window.removeEventListener("focus", onVisibility);
  };
}
