// Two people in two browser contexts: sign up, start a direct chat, exchange messages live,
// see typing, delivery/read receipts and unread badges, and an XSS attempt stays plain text.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  openUser, uniqueName, startDirectChat, openConversation, sendText, waitForMessage, screenshot, eventually, useServerAndBrowser
} from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

test("sign-up form explains a password that is too short", async () => {
  const { page, context } = await openUser(browser, server.url, "", { signUp: false });
  await page.getByTestId("auth-switch").click();
  await page.getByTestId("auth-username").fill(uniqueName("shorty"));
  await page.getByTestId("auth-password").fill("abc");
  await page.getByTestId("auth-submit").click();
  await page.getByTestId("auth-error").filter({ hasText: "at least 8 characters" }).waitFor();
  await screenshot(page, "auth-signup-error");
  await context.close();
});

test("two users chat live with typing, receipts and unread badges", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await openUser(browser, server.url, uniqueName("bob"));

  await startDirectChat(alice.page, bob.username);
  await sendText(alice.page, "Hi Bob! Are we still on for lunch?");
  await waitForMessage(alice.page, "Hi Bob! Are we still on for lunch?");

  // Bob's list gets the conversation and an unread badge without a reload.
  const bobItem = bob.page.getByTestId("conversation-item").filter({ hasText: alice.username });
  await bobItem.getByTestId("unread-badge").filter({ hasText: "1" }).waitFor();
  await sendText(alice.page, "Thinking 12:30 at the usual place.");
  await bobItem.getByTestId("unread-badge").filter({ hasText: "2" }).waitFor();
  await eventually(async () => assert.equal(await bob.page.title(), "(2) Confab"));
  // Bob's device received them: Alice sees "delivered" before Bob opens the chat.
  const aliceLast = await waitForMessage(alice.page, "Thinking 12:30 at the usual place.");
  await eventually(async () => assert.equal(await aliceLast.getAttribute("data-status"), "delivered"));
  await screenshot(bob.page, "list-unread");

  await openConversation(bob.page, alice.username);
  await waitForMessage(bob.page, "Hi Bob! Are we still on for lunch?");
  await bobItem.getByTestId("unread-badge").waitFor({ state: "detached" });
  await eventually(async () => assert.equal(await bob.page.title(), "Confab"));
  // Bob read them: Alice's messages turn "read".
  await eventually(async () => assert.equal(await aliceLast.getAttribute("data-status"), "read"));

  // Typing shows on the other side, then the reply arrives live.
  await bob.page.getByTestId("composer-input").pressSequentially("Sounds good", { delay: 20 });
  await alice.page.getByTestId("typing-indicator").filter({ hasText: `${bob.username} is typing` }).waitFor();
  await screenshot(alice.page, "chat-typing");
  await bob.page.getByTestId("composer-input").press("Enter");
  await waitForMessage(alice.page, "Sounds good");
  await alice.page.getByTestId("typing-indicator").filter({ hasText: "typing" }).waitFor({ state: "detached" }).catch(() => {});
  await eventually(async () => assert.equal((await alice.page.getByTestId("typing-indicator").textContent()) ?? "", ""));

  // Reply, edit and delete.
  const hello = await waitForMessage(bob.page, "Hi Bob! Are we still on for lunch?");
  await hello.hover();
  await hello.getByTestId("reply-button").click();
  await sendText(bob.page, "Yes, see you there!");
  const reply = await waitForMessage(alice.page, "Yes, see you there!");
  await reply.getByTestId("message-quote").filter({ hasText: "Are we still on for lunch?" }).waitFor();

  const typo = "Thinking 12:30 at the usual place.";
  const own = await waitForMessage(alice.page, typo);
  await own.hover();
  await own.getByTestId("edit-button").click();
  await alice.page.getByTestId("composer-input").fill("Thinking 12:45 at the usual place.");
  await alice.page.getByTestId("composer-input").press("Enter");
  const edited = await waitForMessage(bob.page, "Thinking 12:45 at the usual place.");
  await edited.getByTestId("edited-mark").waitFor();

  await sendText(alice.page, "oops, wrong chat");
  const oops = await waitForMessage(alice.page, "oops, wrong chat");
  await waitForMessage(bob.page, "oops, wrong chat");
  await oops.hover();
  await oops.getByTestId("delete-button").click();
  await alice.page.getByTestId("confirm-button").click();
  await waitForMessage(bob.page, "Message deleted");
  assert.equal(await bob.page.getByTestId("message-text").getByText("oops, wrong chat", { exact: true }).count(), 0);

  await sendText(alice.page, "Great, see you!");
  await waitForMessage(bob.page, "Great, see you!");
  await alice.page.mouse.move(1, 1);
  await bob.page.mouse.move(1, 1);
  await screenshot(alice.page, "chat-desktop");
  await screenshot(bob.page, "chat-desktop-bob");

  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
  await alice.context.close();
  await bob.context.close();
});

test("an HTML message renders as text and runs no script", async () => {
  const mallory = await openUser(browser, server.url, uniqueName("mallory"));
  const victim = await openUser(browser, server.url, uniqueName("victim"));
  const payload = "<img src=x onerror=alert(1)>";
  const payload2 = "<script>alert(2)</script><b>bold?</b>";

  await startDirectChat(mallory.page, victim.username);
  await sendText(mallory.page, payload);
  await sendText(mallory.page, payload2);
  await openConversation(victim.page, mallory.username);
  await waitForMessage(victim.page, payload);
  await waitForMessage(victim.page, payload2);

  for (const who of [mallory, victim]) {
    const list = who.page.getByTestId("message-list");
    assert.equal(await list.locator("img").count(), 0);
    assert.equal(await list.locator("script").count(), 0);
    assert.equal(await list.locator("b").count(), 0);
    const texts = await who.page.getByTestId("message-text").allTextContents();
    assert.ok(texts.includes(payload));
    // The conversation list snippet is text too.
    assert.equal(await who.page.getByTestId("conversation-list").locator("img").count(), 0);
  }
  // Give a would-be onerror handler the chance to run before checking for dialogs.
  await victim.page.reload();
  await openConversation(victim.page, mallory.username);
  await waitForMessage(victim.page, payload);
  await victim.page.evaluate(() => new Promise((r) => setTimeout(r, 300)));
  assert.deepEqual(victim.dialogs, []);
  assert.deepEqual(mallory.dialogs, []);
  await screenshot(victim.page, "xss-as-text");
  await mallory.context.close();
  await victim.context.close();
});
