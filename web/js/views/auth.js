// views/auth.js — the sign-in / sign-up screen, with the server's rules checked up front so
// mistakes get a clear message before a round trip.
import { api } from "../api.js";
import { h, icon } from "../util/dom.js";

const USERNAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;

/** A wait from `Retry-After`, in words: "45 seconds", "2 minutes". */
function waitText(secs) {
  if (secs < 60) return secs === 1 ? "1 second" : `${secs} seconds`;
  const minutes = Math.ceil(secs / 60);
  return minutes === 1 ? "1 minute" : `${minutes} minutes`;
}

/** Client-side checks mirroring docs/api.md; the server stays the authority. */
export function validateCredentials(username, password, isSignUp) {
  if (!username) return "Enter a username.";
  if (isSignUp && !USERNAME_RE.test(username)) {
    return "Usernames are 3-32 characters: letters, digits, dot, dash or underscore.";
  }
  if (!password) return "Enter a password.";
  if (isSignUp && new TextEncoder().encode(password).length < 8) return "Passwords need at least 8 characters.";
  return null;
}

/**
 * Renders the auth screen into `root`; calls `onSignedIn(me)` after success.
 * @param {HTMLElement} root
 * @param {(me: any) => void} onSignedIn
 */
export function renderAuth(root, onSignedIn) {
  let mode = "signin";
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "auth-error", hidden: true });
  const username = h("input", { id: "auth-username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false", "data-testid": "auth-username" });
  const password = h("input", { id: "auth-password", name: "password", type: "password", autocomplete: "current-password", required: true, "data-testid": "auth-password" });
  const hint = h("p", { class: "field-hint", id: "auth-hint" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block", "data-testid": "auth-submit" });
  const heading = h("h1", { class: "auth-title" });
  const sub = h("p", { class: "auth-sub" });
  const switchText = h("span");
  const switchBtn = h("button", { type: "button", class: "link-btn", "data-testid": "auth-switch" });

  function applyMode() {
    const signUp = mode === "signup";
    heading.textContent = signUp ? "Create your account" : "Welcome back";
    sub.textContent = signUp ? "Pick a username your friends will find you by." : "Sign in to continue your conversations.";
    submit.textContent = signUp ? "Create account" : "Sign in";
    password.setAttribute("autocomplete", signUp ? "new-password" : "current-password");
    hint.textContent = signUp ? "Usernames: 3-32 letters, digits, dots, dashes or underscores. Passwords: at least 8 characters." : "";
    hint.hidden = !signUp;
    switchText.textContent = signUp ? "Already have an account? " : "New to Confab? ";
    switchBtn.textContent = signUp ? "Sign in" : "Create an account";
    error.hidden = true;
  }

  switchBtn.addEventListener("click", () => {
    mode = mode === "signin" ? "signup" : "signin";
    applyMode();
    username.focus();
  });

  const form = h("form", { class: "auth-form", novalidate: true, "aria-describedby": "auth-hint" },
    h("label", { for: "auth-username" }, "Username"), username,
    h("label", { for: "auth-password" }, "Password"), password,
    hint, error, submit);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const signUp = mode === "signup";
    const name = username.value.trim();
    const problem = validateCredentials(name, password.value, signUp);
    if (problem) {
      error.textContent = problem;
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    try {
      await (signUp ? api.register(name, password.value) : api.login(name, password.value));
      onSignedIn(await api.me());
    } catch (err) {
      error.textContent = err.code === "conflict" ? "That username is taken. Try another one."
        : err.code === "unauthorized" ? "Wrong username or password."
        : err.code === "network" ? "Cannot reach the server. Check your connection."
        : err.code === "rate_limited" ? `Too many attempts. Try again ${err.retryAfterSecs ? `in ${waitText(err.retryAfterSecs)}` : "later"}.`
        : err.message.replace(/^[a-z_]+: /, (m) => m.charAt(0).toUpperCase() + m.slice(1));
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });

  root.replaceChildren(h("main", { class: "auth", "data-testid": "auth-screen" },
    h("div", { class: "auth-card" },
      h("div", { class: "brand" }, h("span", { class: "brand-mark" }, icon("chat")), h("span", { class: "brand-name" }, "Confab")),
      heading, sub, form,
      h("p", { class: "auth-switch" }, switchText, switchBtn))));
  applyMode();
  username.focus();
}
