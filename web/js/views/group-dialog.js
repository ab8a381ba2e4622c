// views/group-dialog.js — dialogs for conversations: start a direct chat, create a group, and
// the details of a conversation (rename, members, add/remove, leave).
import * as actions from "../actions.js";
import { state, subscribe, conversationTitle, otherParticipant, myParticipant } from "../state.js";
import { avatar } from "../util/avatar.js";
import { h } from "../util/dom.js";
import { lastSeen } from "../util/time.js";
import { confirmDialog, openDialog } from "./dialog.js";
import { showToast } from "./toast.js";
import { userPicker } from "./user-picker.js";

function go(conv) {
  location.hash = `#/c/${encodeURIComponent(conv.id)}`;
}

export function openNewChatDialog() {
  let dialog;
  const picker = userPicker({
    placeholder: "Who do you want to talk to?",
    onPick: async (user) => {
      try {
        const conv = await actions.startDirect(user.id);
        dialog.close();
        go(conv);
      } catch (err) {
        showToast(`Could not start the chat: ${err.message}`, "error");
      }
    },
  });
  dialog = openDialog("New chat", [picker.el], { testid: "new-chat-dialog" });
  picker.input.focus();
}

export function openNewGroupDialog() {
  /** @type {Map<string, any>} */
  const chosen = new Map();
  const title = h("input", { class: "input", placeholder: "Group name", "aria-label": "Group name", maxlength: "128", "data-testid": "group-title" });
  const chips = h("div", { class: "chips", "aria-label": "Members", "data-testid": "group-members" });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const create = h("button", { type: "button", class: "btn btn-primary", "data-testid": "create-group" }, "Create group");
  const picker = userPicker({
    placeholder: "Add people",
    selected: () => new Set(chosen.keys()),
    onPick: (user) => {
      if (chosen.has(user.id)) chosen.delete(user.id);
      else chosen.set(user.id, user);
      renderChips();
    },
  });
  function renderChips() {
    chips.replaceChildren(...[...chosen.values()].map((u) => h("button", { type: "button", class: "chip", "aria-label": `Remove ${u.username}`, onclick: () => { chosen.delete(u.id); renderChips(); } }, u.username, " ×")));
    picker.refresh();
  }
  const dialog = openDialog("New group", [title, chips, picker.el, error], { testid: "new-group-dialog", footer: [create] });
  create.addEventListener("click", async () => {
    const name = title.value.trim();
    if (!name) {
      error.textContent = "Give the group a name.";
      error.hidden = false;
      title.focus();
      return;
    }
    create.disabled = true;
    try {
      const conv = await actions.createGroup(name, [...chosen.keys()]);
      dialog.close();
      go(conv);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      create.disabled = false;
    }
  });
  title.focus();
}

/** Details of a conversation; stays live while open. */
export function openConversationInfo(conversationId) {
  const body = h("div", { class: "info" });
  let unsubscribe = () => {};
  const dialog = openDialog("Details", [body], { testid: "info-dialog", onClose: () => unsubscribe() });

  let adding = false;
  function render() {
    const conv = state.conversations.get(conversationId);
    if (!conv) {
      dialog.close();
      return;
    }
    const isGroup = conv.type === "group";
    const amAdmin = isGroup && myParticipant(conv)?.role === "admin";
    const other = otherParticipant(conv);
    const title = conversationTitle(conv);
    const parts = [h("div", { class: "info-hero" }, avatar(title, isGroup ? conv.id : other?.user_id || conv.id, { size: "lg", group: isGroup }), h("h3", {}, title),
      h("p", { class: "muted" }, isGroup ? `Group · ${conv.participants.length} members` : presenceText(other?.user_id)))];
    if (isGroup) {
      const rename = h("input", { class: "input", value: conv.title || "", "aria-label": "Group name", maxlength: "128", "data-testid": "rename-input" });
      const save = h("button", { type: "button", class: "btn btn-ghost", "data-testid": "rename-button" }, "Rename");
      save.addEventListener("click", async () => {
        try {
          await actions.renameGroup(conv.id, rename.value.trim());
          showToast("Group renamed");
        } catch (err) {
          showToast(err.message, "error");
        }
      });
      parts.push(h("div", { class: "inline-form" }, rename, save));
      parts.push(h("h4", { class: "section-title" }, "Members"));
      parts.push(h("ul", { class: "member-list", "data-testid": "member-list" }, ...conv.participants.map((p) => h("li", { class: "member" },
        avatar(p.username, p.user_id, { size: "sm", presence: p.user_id === state.me?.id ? null : !!state.presence.get(p.user_id)?.online }),
        h("span", { class: "member-name" }, p.username, p.user_id === state.me?.id ? h("span", { class: "muted" }, " (you)") : null),
        p.role === "admin" ? h("span", { class: "role" }, "admin") : null,
        amAdmin && p.user_id !== state.me?.id ? h("button", { type: "button", class: "link-btn danger", "data-testid": "remove-member", onclick: () => removeMember(conv, p) }, "Remove") : null))));
      if (amAdmin) {
        if (adding) {
          const picker = userPicker({
            placeholder: "Add people",
            exclude: () => new Set(conv.participants.map((p) => p.user_id)),
            onPick: async (user) => {
              try {
                await actions.addMembers(conv.id, [user.id]);
                adding = false;
                render();
              } catch (err) {
                showToast(err.message, "error");
              }
            },
          });
          parts.push(picker.el);
          setTimeout(() => picker.input.focus(), 0);
        } else {
          parts.push(h("button", { type: "button", class: "btn btn-ghost", "data-testid": "add-members", onclick: () => { adding = true; render(); } }, "Add members"));
        }
      }
      parts.push(h("button", { type: "button", class: "btn btn-danger btn-block", "data-testid": "leave-group", onclick: () => leave(conv) }, "Leave group"));
    }
    body.replaceChildren(...parts);
  }

  async function removeMember(conv, p) {
    if (!(await confirmDialog(`Remove ${p.username}?`, "They will no longer see this group.", "Remove"))) return;
    try {
      await actions.removeMember(conv.id, p.user_id);
    } catch (err) {
      showToast(err.message, "error");
    }
  }

  async function leave(conv) {
    if (!(await confirmDialog(`Leave ${conversationTitle(conv)}?`, "You will stop receiving its messages.", "Leave"))) return;
    try {
      await actions.leaveGroup(conv.id);
      dialog.close();
    } catch (err) {
      showToast(err.message, "error");
    }
  }

  unsubscribe = subscribe((topic) => {
    if ((topic === "conversations" || topic === "presence") && !adding) render();
  });
  render();
}

function presenceText(userId) {
  const p = userId ? state.presence.get(userId) : null;
  return p?.online ? "online" : lastSeen(p?.last_seen);
}
