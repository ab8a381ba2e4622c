// views/user-picker.js — a username search box with results, used by the new-chat, new-group
// and add-members dialogs. Calls `onPick(user)` when a result is chosen.
import { api } from "../api.js";
import { state } from "../state.js";
import { avatar } from "../util/avatar.js";
import { h } from "../util/dom.js";

/**
 * @param {{onPick: (user: any) => void, exclude?: () => Set<string>, placeholder?: string, selected?: () => Set<string>}} opts
 */
export function userPicker(opts) {
  const input = h("input", { type: "search", class: "input", placeholder: opts.placeholder || "Search by username", "aria-label": "Search users", autocomplete: "off", spellcheck: "false", "data-testid": "user-search" });
  const results = h("ul", { class: "user-results", role: "list", "aria-label": "Users", "data-testid": "user-results" });
  let seq = 0;
  let timer = 0;

  async function search() {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      results.replaceChildren(h("li", { class: "hint" }, "Type a username to find people."));
      return;
    }
    try {
      const { users } = await api.searchUsers(q);
      if (mine !== seq) return; // A newer search is on its way.
      render(users);
    } catch {
      results.replaceChildren(h("li", { class: "hint" }, "Search failed. Try again."));
    }
  }

  /** @type {any[]} */
  let last = [];
  function render(users = last) {
    last = users;
    const exclude = opts.exclude?.() || new Set();
    const selected = opts.selected?.() || new Set();
    const shown = users.filter((u) => u.id !== state.me?.id && !exclude.has(u.id));
    if (!shown.length) {
      results.replaceChildren(h("li", { class: "hint" }, "Nobody found with that name."));
      return;
    }
    results.replaceChildren(...shown.map((u) => h("li", {},
      h("button", { type: "button", class: `user-row${selected.has(u.id) ? " selected" : ""}`, "data-user-id": u.id, "data-testid": "user-result", "aria-pressed": opts.selected ? String(selected.has(u.id)) : false, onclick: () => opts.onPick(u) },
        avatar(u.username, u.id, { size: "sm", presence: state.presence.has(u.id) ? state.presence.get(u.id).online : null }),
        h("span", { class: "user-name" }, u.username),
        opts.selected ? h("span", { class: "tick", "aria-hidden": "true" }, selected.has(u.id) ? "✓" : "") : null))));
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, 150);
  });
  search();
  return { el: h("div", { class: "user-picker" }, input, results), input, refresh: () => render() };
}
