// lib/harness.js — what every browser test needs: Chromium from /usr/bin/chromium (never a
// downloaded browser), one browser context per user, sign-up through the UI, REST calls from
// Node for seeding, screenshots into e2e/artifacts/, and `eventually` for waiting on state.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { chromium } from "playwright-core";
import { ConfabServer } from "./server.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.resolve(here, "../artifacts");
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** Generous hang guard for every wait; tests never assert on how fast something happened. */
export const WAIT = 20_000;

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * One server and one browser for the test file that calls this: started before its first test,
 * closed after its last. `use` receives them once they are up.
 * @param {(server: ConfabServer, browser: import("playwright-core").Browser) => void} use
 */
export function useServerAndBrowser(use) {
  /** @type {ConfabServer | undefined} */ let server;
  /** @type {import("playwright-core").Browser | undefined} */ let browser;
  before(async () => {
    server = await ConfabServer.start();
    browser = await launchBrowser();
    use(server, browser);
  });
  after(async () => {
    await browser?.close();
    await server?.dispose();
  });
}

let counter = 0;
/** A username unique to this run (3-32 characters). */
export function uniqueName(prefix) {
  counter += 1;
  return `${prefix}${Date.now().toString(36).slice(-4)}${counter}`;
}

/**
 * A user in their own browser context, signed up through the UI.
 * @param {import("playwright-core").Browser} browser
 * @param {string} baseURL
 * @param {string} username
 * @param {{viewport?: {width: number, height: number}, colorScheme?: "light"|"dark", signUp?: boolean}} [opts]
 */
export async function openUser(browser, baseURL, username, opts = {}) {
  const context = await browser.newContext({ baseURL, viewport: opts.viewport || { width: 1180, height: 760 }, colorScheme: opts.colorScheme || "light", deviceScaleFactor: 1 });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // Failed requests and sockets (a 401 before sign-in, a refused connection during a restart)
    // are expected; the app's own errors are not.
    if (m.type() === "error" && !/^(Failed to load resource|WebSocket connection to)/.test(m.text())) errors.push(m.text());
  });
  await page.goto("/");
  if (opts.signUp !== false) await signUp(page, username);
  return { context, page, username, dialogs, errors };
}

export async function signUp(page, username, password = "correct horse battery") {
  await page.getByTestId("auth-screen").waitFor();
  await page.getByTestId("auth-switch").click();
  await page.getByTestId("auth-username").fill(username);
  await page.getByTestId("auth-password").fill(password);
  await page.getByTestId("auth-submit").click();
  await page.getByTestId("conversation-list").waitFor();
}

export async function signIn(page, username, password = "correct horse battery") {
  await page.getByTestId("auth-screen").waitFor();
  await page.getByTestId("auth-username").fill(username);
  await page.getByTestId("auth-password").fill(password);
  await page.getByTestId("auth-submit").click();
  await page.getByTestId("conversation-list").waitFor();
}

/** Starts (or opens) the direct chat with `other` through the new-chat dialog. */
export async function startDirectChat(page, other) {
  await page.getByTestId("new-chat").click();
  await page.getByTestId("user-search").fill(other);
  await page.getByTestId("user-result").filter({ hasText: other }).click();
  await page.getByTestId("chat-title").filter({ hasText: other }).waitFor();
}

/** Opens a conversation from the list by its title. */
export async function openConversation(page, title) {
  await page.getByTestId("conversation-item").filter({ hasText: title }).click();
  await page.getByTestId("chat-title").filter({ hasText: title }).waitFor();
}

export async function sendText(page, text) {
  const input = page.getByTestId("composer-input");
  await input.fill(text);
  await input.press("Enter");
}

/** Waits until the message with exactly this text is shown; returns its locator. */
export async function waitForMessage(page, text) {
  const msg = page.getByTestId("message").filter({ has: page.getByTestId("message-text").getByText(text, { exact: true }) });
  await msg.first().waitFor();
  return msg;
}

export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/**
 * Retries `check` until it stops throwing (a hang guard of `timeout` ms, not a speed test).
 * @template T
 * @param {() => Promise<T>|T} check
 */
export async function eventually(check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A REST client for seeding from Node, authenticated by bearer token. */
export async function apiUser(baseURL, username, password = "correct horse battery") {
  const res = await fetch(`${baseURL}/api/auth/register`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username, password }) });
  if (res.status !== 201) throw new Error(`register ${username}: ${res.status} ${await res.text()}`);
  const { user, token } = await res.json();
  async function call(method, p, body) {
    const r = await fetch(`${baseURL}${p}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  }
  return { user, token, username, password, call };
}
