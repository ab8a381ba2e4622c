// views/composer.js — the message input: a textarea that grows, Enter sends and Shift+Enter
// adds a line, a send button, a (disabled) attachment button, and the reply/edit context bar.
// Keeps a draft per conversation.
import * as actions from "../actions.js";
import { h, icon, iconButton } from "../util/dom.js";

const MAX_HEIGHT = 168;

export class Composer {
  constructor() {
    /** @type {string|null} */
    this.conversationId = null;
    /** @type {{kind: "reply"|"edit", message: any, name: string}|null} */
    this.context = null;
    /** @type {Map<string, string>} */
    this.drafts = new Map();
    /** Called after the user sent something (the chat scrolls to the bottom). */
    this.onSent = () => {};

    this.textarea = h("textarea", {
      rows: 1, class: "composer-input", placeholder: "Write a message…", "aria-label": "Message",
      "data-testid": "composer-input", enterkeyhint: "send",
    });
    this.sendBtn = h("button", { type: "submit", class: "send-btn", "aria-label": "Send", title: "Send (Enter)", "data-testid": "send-button" }, icon("send"));
    const attach = h("button", { type: "button", class: "icon-btn attach-btn", disabled: true, "aria-label": "Attach a file (coming soon)", title: "Attachments are coming soon", "data-testid": "attach-button" }, icon("attach"));
    this.contextLabel = h("span", { class: "ctx-label" });
    this.contextText = h("span", { class: "ctx-text" });
    this.contextBar = h("div", { class: "composer-context", hidden: true, "data-testid": "composer-context" },
      h("span", { class: "ctx-icon" }), h("span", { class: "ctx-main" }, this.contextLabel, this.contextText),
      iconButton("close", "Cancel", "cancel-context"));
    this.form = h("form", { class: "composer", "aria-label": "Write a message" }, attach, this.textarea, this.sendBtn);
    this.el = h("div", { class: "composer-wrap" }, this.contextBar, this.form);

    this.textarea.addEventListener("input", () => {
      this.autosize();
      this.updateButton();
      if (this.conversationId && this.textarea.value.trim() && this.context?.kind !== "edit") actions.userTyping(this.conversationId);
    });
    this.textarea.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      } else if (e.key === "Escape" && this.context) {
        e.preventDefault();
        this.clearContext(true);
      } else if (e.key === "ArrowUp" && !this.textarea.value && this.lastOwn) {
        const msg = this.lastOwn();
        if (msg) {
          e.preventDefault();
          this.startEdit(msg);
        }
      }
    });
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.contextBar.addEventListener("click", (e) => {
      if (/** @type {HTMLElement} */ (e.target).closest("[data-action=cancel-context]")) this.clearContext(true);
    });
    this.updateButton();
  }

  /** Switches to another conversation, keeping each one's draft. */
  setConversation(id) {
    if (this.conversationId === id) return;
    if (this.conversationId && this.context?.kind !== "edit") this.drafts.set(this.conversationId, this.textarea.value);
    this.conversationId = id;
    this.context = null;
    this.contextBar.hidden = true;
    this.textarea.value = (id && this.drafts.get(id)) || "";
    this.autosize();
    this.updateButton();
  }

  focus() {
    this.textarea.focus();
  }

  startReply(message, name) {
    if (this.context?.kind === "edit") this.textarea.value = "";
    this.context = { kind: "reply", message, name };
    this.showContext("reply", `Replying to ${name}`, message.content);
    this.focus();
  }

  startEdit(message) {
    if (this.conversationId && this.context?.kind !== "edit") this.drafts.set(this.conversationId, this.textarea.value);
    this.context = { kind: "edit", message, name: "" };
    this.showContext("edit", "Editing message", message.content);
    this.textarea.value = message.content;
    this.autosize();
    this.updateButton();
    this.focus();
    this.textarea.setSelectionRange(this.textarea.value.length, this.textarea.value.length);
  }

  showContext(kind, label, text) {
    this.contextBar.dataset.kind = kind;
    const iconHost = this.contextBar.querySelector(".ctx-icon");
    if (iconHost) iconHost.replaceChildren(icon(kind === "edit" ? "edit" : "reply"));
    this.contextLabel.textContent = label;
    this.contextText.textContent = text.length > 140 ? `${text.slice(0, 140)}…` : text;
    this.contextBar.hidden = false;
  }

  clearContext(restoreDraft) {
    const wasEdit = this.context?.kind === "edit";
    this.context = null;
    this.contextBar.hidden = true;
    if (wasEdit && restoreDraft) {
      this.textarea.value = (this.conversationId && this.drafts.get(this.conversationId)) || "";
      this.autosize();
      this.updateButton();
    }
  }

  submit() {
    const text = this.textarea.value;
    if (!text.trim() || !this.conversationId) return;
    const ctx = this.context;
    if (ctx?.kind === "edit") {
      this.textarea.value = "";
      this.clearContext(true);
      if (text !== ctx.message.content) {
        const conversationId = this.conversationId;
        const draft = this.textarea.value;
        actions.editMessage(ctx.message, text).then((ok) => {
          // A refused edit comes back with its text, still in edit mode, to be fixed; unless
          // the user has moved on meanwhile (another conversation, a reply, new typing).
          if (ok || this.conversationId !== conversationId || this.context || this.textarea.value !== draft) return;
          this.startEdit(ctx.message);
          this.textarea.value = text;
          this.autosize();
          this.updateButton();
        });
      }
    } else {
      actions.sendMessage(this.conversationId, text, ctx?.kind === "reply" ? ctx.message.id : null);
      this.textarea.value = "";
      this.drafts.delete(this.conversationId);
      this.clearContext(false);
      this.onSent();
    }
    this.autosize();
    this.updateButton();
    this.focus();
  }

  autosize() {
    // CSSOM writes are allowed by the CSP (only style attributes in markup are not).
    this.textarea.style.height = "auto";
    this.textarea.style.height = `${Math.min(this.textarea.scrollHeight, MAX_HEIGHT)}px`;
  }

  updateButton() {
    this.sendBtn.disabled = !this.textarea.value.trim();
  }
}
