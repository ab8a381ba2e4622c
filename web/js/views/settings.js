// views/settings.js — the settings dialog: who you are, read-receipt sharing, sign out.
import * as actions from "../actions.js";
import { state } from "../state.js";
import { avatar } from "../util/avatar.js";
import { h, icon } from "../util/dom.js";
import { openDialog } from "./dialog.js";
import { showToast } from "./toast.js";

export function openSettings() {
  const me = state.me;
  if (!me) return;
  const toggle = h("input", { type: "checkbox", id: "share-receipts", class: "switch", role: "switch", "data-testid": "share-read-receipts", checked: me.share_read_receipts });
  toggle.addEventListener("change", async () => {
    const want = toggle.checked;
    toggle.disabled = true;
    try {
      await actions.setShareReadReceipts(want);
      showToast(want ? "Others now see when you read their messages" : "Read receipts are off");
    } catch (err) {
      toggle.checked = !want;
      showToast(`Could not save: ${err.message}`, "error");
    } finally {
      toggle.disabled = false;
    }
  });
  const signOut = h("button", { type: "button", class: "btn btn-ghost btn-block", "data-testid": "sign-out" }, icon("logout"), "Sign out");
  signOut.addEventListener("click", () => {
    dialog.close();
    actions.signOut();
  });
  const dialog = openDialog("Settings", [
    h("div", { class: "info-hero" }, avatar(me.username, me.id, { size: "lg" }), h("h3", {}, me.username),
      h("p", { class: "muted" }, `Member since ${new Date(me.created_at).toLocaleDateString([], { year: "numeric", month: "long", day: "numeric" })}`)),
    h("div", { class: "setting" },
      h("label", { for: "share-receipts", class: "setting-text" }, h("strong", {}, "Send read receipts"), h("span", { class: "muted" }, "When off, others won't see when you have read their messages.")),
      toggle),
    signOut,
  ], { testid: "settings-dialog" });
}
