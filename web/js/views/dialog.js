// views/dialog.js — modal dialogs on the native <dialog> element (focus trap, Escape to close,
// inert background for free), plus a promise-based confirm.
import { h, iconButton } from "../util/dom.js";

/**
 * Opens a modal; it removes itself when closed.
 * @param {string} title
 * @param {Node[]} body
 * @param {{testid?: string, onClose?: () => void, footer?: Node[]}} [opts]
 */
export function openDialog(title, body, opts = {}) {
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const dialog = /** @type {HTMLDialogElement} */ (h("dialog", { class: "dialog", "aria-labelledby": titleId, "data-testid": opts.testid || "dialog" },
    h("header", { class: "dialog-head" }, h("h2", { id: titleId }, title), iconButton("close", "Close", "close-dialog")),
    h("div", { class: "dialog-body" }, ...body),
    opts.footer ? h("footer", { class: "dialog-foot" }, ...opts.footer) : null));
  dialog.addEventListener("click", (e) => {
    const t = /** @type {HTMLElement} */ (e.target);
    // A click on the backdrop lands on the dialog element itself.
    if (t === dialog || t.closest("[data-action=close-dialog]")) dialog.close();
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    opts.onClose?.();
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Resolves true when the user confirms. */
export function confirmDialog(title, text, confirmLabel, danger = true) {
  return new Promise((resolve) => {
    let answer = false;
    const ok = h("button", { type: "button", class: `btn ${danger ? "btn-danger" : "btn-primary"}`, "data-testid": "confirm-button" }, confirmLabel);
    const cancel = h("button", { type: "button", class: "btn btn-ghost" }, "Cancel");
    const dialog = openDialog(title, [h("p", { class: "dialog-text" }, text)], {
      testid: "confirm-dialog", footer: [cancel, ok], onClose: () => resolve(answer),
    });
    ok.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    cancel.addEventListener("click", () => dialog.close());
    ok.focus();
  });
}
