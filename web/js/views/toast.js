// views/toast.js — short notices at the bottom of the screen. Errors use role="alert" so
// screen readers announce them at once; others are polite status messages.
import { h } from "../util/dom.js";

/**
 * @param {string} text
 * @param {"info"|"error"} [kind]
 */
export function showToast(text, kind = "info") {
  const host = document.getElementById("toasts");
  if (!host) return;
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": "toast" }, text);
  host.append(el);
  setTimeout(() => {
    el.classList.add("leaving");
    setTimeout(() => el.remove(), 300);
  }, kind === "error" ? 6000 : 3500);
}
