// A 375 px phone screen: one pane at a time with navigation between list and chat, nothing
// wider than the screen, and chatting works. Uses the dark theme to cover it too.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, uniqueName, apiUser, openConversation, sendText, waitForMessage, screenshot, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

async function assertNoHorizontalOverflow(page) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width, `page is ${scroll}px wide on a ${width}px screen`);
}

test("a 375 px wide screen shows one pane at a time and chatting works", async () => {
  const phone = await openUser(browser, server.url, uniqueName("pia"), { viewport: { width: 375, height: 740 }, colorScheme: "dark" });
  const friend = await apiUser(server.url, uniqueName("felix"));
  const me = await phone.page.evaluate(() => fetch("/api/me").then((r) => r.json()));
  const conv = await friend.call("POST", "/api/conversations", { type: "direct", participant_ids: [me.id] });
  await friend.call("POST", `/api/conversations/${conv.id}/messages`, { content: "Hey! Trying Confab on your phone?" });

  const list = phone.page.getByTestId("conversation-list");
  await list.getByTestId("conversation-item").filter({ hasText: friend.username }).waitFor();
  assert.equal(await phone.page.getByTestId("chat-empty").isVisible(), false);
  await assertNoHorizontalOverflow(phone.page);
  await screenshot(phone.page, "mobile-list");

  await openConversation(phone.page, friend.username);
  assert.equal(await list.isVisible(), false);
  await waitForMessage(phone.page, "Hey! Trying Confab on your phone?");
  await sendText(phone.page, "Yes, and it fits the screen nicely. The composer grows when I write longer messages too.");
  await waitForMessage(phone.page, "Yes, and it fits the screen nicely. The composer grows when I write longer messages too.");
  await phone.page.getByTestId("send-button").waitFor();
  assert.ok(await phone.page.getByTestId("attach-button").isDisabled());
  await assertNoHorizontalOverflow(phone.page);
  await screenshot(phone.page, "mobile-chat");

  await phone.page.getByTestId("back-button").click();
  await list.waitFor();
  assert.equal(await phone.page.getByTestId("chat-title").isVisible(), false);
  assert.deepEqual(phone.errors, []);
  await phone.context.close();
});
