// views/settings.js — the settings dialog: who you are, read-receipt sharing, the devices
// signed in to the account (each can be signed out), sign out.
import * as actions from "../actions.js";
import { api } from "../api.js";
import { state } from "../state.js";
import { avatar } from "../util/avatar.js";
import { h, icon } from "../util/dom.js";
import { relativeTime } from "../util/time.js";
import { openDialog } from "./dialog.js";
import { showToast } from "./toast.js";

/** "Chrome on Linux" from a User-Agent string; the raw string when nothing is recognised. */
function deviceLabel(ua) {
  if (!ua) return "Unknown device";
  const browser = [["Edg/", "Edge"], ["Firefox/", "Firefox"], ["Chrome/", "Chrome"], ["Safari/", "Safari"]].find(([k]) => ua.includes(k));
  const os = [["Android", "Android"], ["iPhone", "iPhone"], ["iPad", "iPad"], ["Windows", "Windows"], ["Mac OS", "macOS"], ["Linux", "Linux"]].find(([k]) => ua.includes(k));
  if (!browser && !os) return ua;
  return [browser ? browser[1] : "A program", os ? `on ${os[1]}` : ""].join(" ").trim();
}

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
  const sessionList = h("ul", { class: "session-list", "data-testid": "sessions", "aria-label": "Signed-in devices" });
  const signOutOthers = h("button", { type: "button", class: "btn btn-ghost btn-block", "data-testid": "sign-out-others" }, "Sign out all other devices");
  async function loadSessions() {
    try {
      const { sessions } = await api.listSessions();
      sessionList.replaceChildren(...sessions.map((s) => {
        const label = s.current ? "This device" : deviceLabel(s.user_agent);
        const detail = `${s.ip || "unknown address"} · active ${relativeTime(s.last_used_at)}`;
        const row = h("li", { class: "session" }, h("span", { class: "setting-text" }, h("strong", {}, label), h("span", { class: "muted" }, detail)));
        if (!s.current) {
          const revoke = h("button", { type: "button", class: "btn btn-ghost", "aria-label": `Sign out ${label}` }, "Sign out");
          revoke.addEventListener("click", async () => {
            revoke.disabled = true;
            try {
              await api.revokeSession(s.id);
              showToast("Device signed out");
              await loadSessions();
            } catch (err) {
              revoke.disabled = false;
              showToast(`Could not sign out: ${err.message}`, "error");
            }
          });
          row.append(revoke);
        }
        return row;
      }));
      signOutOthers.hidden = sessions.length < 2;
    } catch (err) {
      sessionList.replaceChildren(h("li", { class: "muted" }, `Could not load devices: ${err.message}`));
    }
  }
  signOutOthers.addEventListener("click", async () => {
    signOutOthers.disabled = true;
    try {
      const { revoked } = await api.revokeOtherSessions();
      showToast(revoked === 1 ? "1 device signed out" : `${revoked} devices signed out`);
      await loadSessions();
    } catch (err) {
      showToast(`Could not sign out: ${err.message}`, "error");
    } finally {
      signOutOthers.disabled = false;
    }
  });
  loadSessions();
  const dialog = openDialog("Settings", [
    h("div", { class: "info-hero" }, avatar(me.username, me.id, { size: "lg" }), h("h3", {}, me.username),
      h("p", { class: "muted" }, `Member since ${new Date(me.created_at).toLocaleDateString([], { year: "numeric", month: "long", day: "numeric" })}`)),
    h("div", { class: "setting" },
      h("label", { for: "share-receipts", class: "setting-text" }, h("strong", {}, "Send read receipts"), h("span", { class: "muted" }, "When off, others won't see when you have read their messages.")),
      toggle),
    h("h4", { class: "setting-heading" }, "Signed-in devices"),
    sessionList,
    signOutOthers,
    signOut,
  ], { testid: "settings-dialog" });
}
