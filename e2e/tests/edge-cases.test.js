// What a demanding user runs into beyond the happy path: a badge after sending from another
// device, a message or an edit the server refuses, what sign-out leaves behind, and a text
// selection that must survive events of other conversations.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, uniqueName, startDirectChat, openConversation, sendText, waitForMessage, screenshot, eventually, apiUser, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

/** Another device of a user who signed up in the browser: a bearer session of its own. */
async function otherDevice(username, password = "correct horse battery") {
  const res = await fetch(`${server.url}/api/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username, password }) });
  assert.equal(res.status, 200);
  const { token } = await res.json();
  return async (method, p, body) => {
    const r = await fetch(`${server.url}${p}`, { method, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
    assert.ok(r.ok, `${method} ${p}: ${r.status}`);
    return r.status === 204 ? null : r.json();
  };
}

const TOO_LONG = "x".repeat(17_000); // over the default 16,384-byte limit

test("sending from another device clears the unread badge here", async () => {
  const alice = await apiUser(server.url, uniqueName("alice"));
  const bob = await openUser(browser, server.url, uniqueName("bob"));
  const conv = await alice.call("POST", "/api/conversations", { type: "direct", participant_ids: [(await bobId(bob))] });
  const item = bob.page.getByTestId("conversation-item").filter({ hasText: alice.username });

  await alice.call("POST", `/api/conversations/${conv.id}/messages`, { content: "Are you there?" });
  await item.getByTestId("unread-badge").filter({ hasText: "1" }).waitFor();
  const phone = await otherDevice(bob.username);
  await phone("POST", `/api/conversations/${conv.id}/messages`, { content: "Answering from my phone" });

  await item.getByTestId("unread-badge").waitFor({ state: "detached" });
  await eventually(async () => assert.equal(await bob.page.title(), "Confab"));
  await alice.call("POST", `/api/conversations/${conv.id}/messages`, { content: "Great" });
  await item.getByTestId("unread-badge").filter({ hasText: "1" }).waitFor();
  assert.deepEqual(bob.errors, []);
});

/** The signed-in user's id, as the page's own session sees it. */
async function bobId(user) {
  return user.page.evaluate(async () => (await (await fetch("/api/me")).json()).id);
}

test("a message the server refuses stays where it was written, without a retry that cannot work", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await apiUser(server.url, uniqueName("bob"));
  await startDirectChat(alice.page, bob.username);

  await alice.page.getByTestId("composer-input").fill(TOO_LONG);
  await alice.page.getByTestId("composer-input").press("Enter");
  const refused = alice.page.locator('[data-testid="message"][data-status="failed"]');
  await refused.waitFor();
  assert.equal(await refused.getByTestId("retry-button").count(), 0, "no Retry for a refusal");
  await sendText(alice.page, "A shorter one");
  await waitForMessage(alice.page, "A shorter one");

  await eventually(async () => {
    const order = await alice.page.getByTestId("message").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-status")));
    assert.equal(order.indexOf("failed"), 0, `the refused message comes first: ${order}`);
  });
  await screenshot(alice.page, "refused-message-in-place");
  assert.deepEqual(alice.errors, []);
});

/** Alice in the browser, in a direct chat with Bob (over the API), with `text` sent and stored. */
async function ownSentMessage(text) {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await apiUser(server.url, uniqueName("bob"));
  await startDirectChat(alice.page, bob.username);
  await sendText(alice.page, text);
  const own = await waitForMessage(alice.page, text);
  await eventually(async () => assert.ok(["sent", "delivered", "read"].includes((await own.getAttribute("data-status")) ?? "")));
  return { alice, own };
}

test("an edit the server refuses keeps its text in the composer", async () => {
  const { alice, own } = await ownSentMessage("Short and sweet");

  await own.hover();
  await own.getByTestId("edit-button").click();
  await alice.page.getByTestId("composer-input").fill(TOO_LONG);
  await alice.page.getByTestId("composer-input").press("Enter");

  await eventually(async () => assert.equal(await alice.page.getByTestId("composer-input").inputValue(), TOO_LONG));
  assert.ok(await alice.page.getByText("Editing message").isVisible(), "still editing");
  assert.deepEqual(alice.errors, []);
});

test("signing out leaves no unsent text behind in the browser", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await apiUser(server.url, uniqueName("bob"));
  await startDirectChat(alice.page, bob.username);
  await alice.page.getByTestId("composer-input").fill(`secret ${TOO_LONG}`);
  await alice.page.getByTestId("composer-input").press("Enter");
  await alice.page.locator('[data-testid="message"][data-status="failed"]').waitFor();
  const stored = () => alice.page.evaluate(() => Object.keys(localStorage).filter((k) => (localStorage.getItem(k) || "").includes("secret")));
  assert.equal((await stored()).length, 1, "kept while signed in, for a retry after a reload");

  await alice.page.getByTestId("settings").click();
  await alice.page.getByTestId("sign-out").click();
  await alice.page.getByTestId("auth-screen").waitFor();

  assert.deepEqual(await stored(), []);
});

test("a text selection in the open chat survives events of other conversations", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await apiUser(server.url, uniqueName("bob"));
  const carol = await apiUser(server.url, uniqueName("carol"));
  await startDirectChat(alice.page, bob.username);
  await sendText(alice.page, "Please copy this address: 12 Harbour Street");
  const row = await waitForMessage(alice.page, "Please copy this address: 12 Harbour Street");
  const other = await carol.call("POST", "/api/conversations", { type: "direct", participant_ids: [await bobId(alice)] });
  await alice.page.getByTestId("conversation-item").filter({ hasText: carol.username }).waitFor();

  await row.getByTestId("message-text").evaluate((el) => window.getSelection()?.selectAllChildren(el));
  await carol.call("POST", `/api/conversations/${other.id}/messages`, { content: "Unrelated news" });
  await alice.page.getByTestId("conversation-item").filter({ hasText: carol.username }).getByTestId("unread-badge").waitFor();

  assert.equal(await alice.page.evaluate(() => window.getSelection()?.toString()), "Please copy this address: 12 Harbour Street");
  await openConversation(alice.page, carol.username);
  await waitForMessage(alice.page, "Unrelated news");
  assert.deepEqual(alice.errors, []);
});

test("deleting a message with the keyboard leaves the focus on it, not on the page", async () => {
  const { alice, own } = await ownSentMessage("Delete me with the keyboard");

  const row = alice.page.locator(`[data-key="${await own.getAttribute("data-key")}"]`);

  await own.getByTestId("delete-button").focus();
  await alice.page.keyboard.press("Enter");
  await alice.page.getByTestId("confirm-button").waitFor();
  await alice.page.keyboard.press("Enter");
  await row.getByText("Message deleted").waitFor();

  await eventually(async () => {
    const where = await alice.page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return "body";
      return el.closest('[data-testid="message"]') ? "message" : el.getAttribute("data-testid") || el.tagName;
    });
    assert.equal(where, "message");
  });
  assert.deepEqual(alice.errors, []);
});
