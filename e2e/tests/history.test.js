// Long history: a reload keeps it, and scrolling up loads older pages while the message that
// was on screen stays on screen (no jump).
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, uniqueName, apiUser, signIn, openConversation, waitForMessage, screenshot, eventually, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

test("reload keeps history and scrolling up loads older pages without jumping", async () => {
  const ann = await apiUser(server.url, uniqueName("ann"));
  const ben = await apiUser(server.url, uniqueName("ben"));
  const conv = await ann.call("POST", "/api/conversations", { type: "direct", participant_ids: [ben.user.id] });
  for (let i = 1; i <= 120; i++) {
    const from = i % 3 === 0 ? ben : ann;
    await from.call("POST", `/api/conversations/${conv.id}/messages`, { content: `History message ${i}`, client_id: `seed-${i}` });
  }

  const { page, context, errors } = await openUser(browser, server.url, ben.username, { signUp: false });
  await signIn(page, ben.username);
  await openConversation(page, ann.username);
  await waitForMessage(page, "History message 120");
  const rows = page.getByTestId("message-list").locator("[data-testid=message]");
  assert.ok((await rows.count()) < 120, "only the newest page is loaded at first");

  await page.reload();
  await page.getByTestId("chat-title").filter({ hasText: ann.username }).waitFor();
  await waitForMessage(page, "History message 120");
  await screenshot(page, "history-latest");

  const list = page.getByTestId("message-list");
  for (let round = 0; round < 6; round++) {
    if (await page.getByTestId("history-start").count()) break;
    const before = await rows.count();
    const topText = await rows.first().getByTestId("message-text").textContent();
    await list.evaluate((el) => { el.scrollTop = 0; });
    await eventually(async () => assert.ok((await rows.count()) > before));
    // The message that was at the top is still in view: the older page went above it.
    const anchor = rows.filter({ has: page.getByTestId("message-text").getByText(topText ?? "", { exact: true }) });
    await eventually(async () => {
      const box = await anchor.boundingBox();
      const view = await list.boundingBox();
      assert.ok(box && view && box.y + box.height > view.y && box.y < view.y + view.height, "anchor stays visible");
    });
  }
  await page.getByTestId("history-start").waitFor();
  await waitForMessage(page, "History message 1");
  const seqs = await rows.evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-seq"))));
  assert.equal(seqs.length, 120);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.equal(new Set(seqs).size, 120);
  await screenshot(page, "history-start");

  // Scrolled up, a new message does not yank the view down: a button offers to jump.
  await ann.call("POST", `/api/conversations/${conv.id}/messages`, { content: "A brand new message" });
  const jump = page.getByTestId("new-messages-button");
  await jump.filter({ hasText: "1 new message" }).waitFor();
  await jump.click();
  const fresh = await waitForMessage(page, "A brand new message");
  await eventually(async () => assert.ok(await fresh.isVisible()));
  await jump.waitFor({ state: "hidden" });
  assert.deepEqual(errors, []);
  await context.close();
});
