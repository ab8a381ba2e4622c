// main.js — boot: find out whether we are signed in, then show the auth screen or the app.
// Everything else lives in actions.js (use cases) and views/ (rendering).
import * as actions from "./actions.js";
import { api, hasSession, setUnauthorizedHandler } from "./api.js";
import { state } from "./state.js";
import { renderAuth } from "./views/auth.js";
import { mountShell } from "./views/shell.js";
import { showToast } from "./views/toast.js";

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
let unmount = () => {};

function showAuth() {
  unmount();
  unmount = () => {};
  document.title = "Confab";
  root.classList.remove("boot");
  root.removeAttribute("aria-busy");
  renderAuth(root, (me) => startApp(me));
}

async function startApp(me) {
  unmount();
  unmount = mountShell(root);
  try {
    await actions.start(me);
  } catch (err) {
    if (err.status === 401) return; // The unauthorized handler shows the sign-in screen.
    showToast("Could not load your conversations. Retrying…", "error");
    setTimeout(() => location.reload(), 3000);
  }
}

actions.configure({
  toast: showToast,
  signedOut: () => {
    if (location.hash) history.replaceState(null, "", location.pathname);
    showAuth();
  },
});
// A session that ends while the app runs (expired, signed out elsewhere) leads back to sign-in.
setUnauthorizedHandler(() => {
  if (state.me) actions.signOut();
});

async function boot() {
  let me = null;
  // Without a session cookie there is nobody to ask about (and a 401 would only add an error
  // to the console of every signed-out visit).
  for (let attempt = 0; hasSession(); attempt++) {
    try {
      me = await api.me();
      break;
    } catch (err) {
      if (err.status === 401) break;
      // The server is restarting or unreachable: keep trying, a little slower each time.
      root.querySelector(".boot-spinner")?.replaceChildren("Connecting to Confab…");
      await new Promise((r) => setTimeout(r, Math.min(5000, 500 * 2 ** attempt)));
    }
  }
  if (me) startApp(me);
  else showAuth();
}

boot();
