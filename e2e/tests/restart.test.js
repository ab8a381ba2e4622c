// The server restarts mid-conversation: the client shows it is offline, queues what is typed
// meanwhile, reconnects and resumes, and no message is lost or shown twice.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, uniqueName, startDirectChat, openConversation, sendText, waitForMessage, screenshot, eventually, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

async function countOf(page, text) {
  return page.getByTestId("message-text").getByText(text, { exact: true }).count();
}

test("a server restart loses and duplicates nothing", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await openUser(browser, server.url, uniqueName("bob"));
  await startDirectChat(alice.page, bob.username);
  await sendText(alice.page, "Before the restart");
  await openConversation(bob.page, alice.username);
  await waitForMessage(bob.page, "Before the restart");

  // After the outage the client goes back to a WebSocket: failures while the server was down
  // say nothing about the transport, so no fallback to SSE or long-polling.
  const fallbacks = [];
  let socketsAfterRestart = 0;
  let restarted = false;
  alice.page.on("request", (r) => {
    const p = new URL(r.url()).pathname;
    if (p === "/api/events" || p === "/api/events/poll") fallbacks.push(p);
  });
  alice.page.on("websocket", () => {
    if (restarted) socketsAfterRestart++;
  });

  await server.stop();
  await alice.page.getByTestId("offline-banner").waitFor();
  await sendText(alice.page, "Typed while the server was down");
  const queued = await waitForMessage(alice.page, "Typed while the server was down");
  await eventually(async () => assert.equal(await queued.getAttribute("data-status"), "queued"));
  await screenshot(alice.page, "offline-queued");

  // Down long enough for several reconnection attempts to fail.
  await new Promise((r) => setTimeout(r, 5000));
  restarted = true;
  await server.spawn();
  await alice.page.getByTestId("offline-banner").waitFor({ state: "hidden" });
  assert.deepEqual(fallbacks, [], "still on WebSocket");
  assert.ok(socketsAfterRestart >= 1, "a new WebSocket after the restart");
  await waitForMessage(bob.page, "Typed while the server was down");
  await eventually(async () => assert.ok(["sent", "delivered", "read"].includes(await (await waitForMessage(alice.page, "Typed while the server was down")).getAttribute("data-status") ?? "")));

  await sendText(bob.page, "Back online, got it");
  await waitForMessage(alice.page, "Back online, got it");

  for (const who of [alice, bob]) {
    for (const text of ["Before the restart", "Typed while the server was down", "Back online, got it"]) {
      assert.equal(await countOf(who.page, text), 1, `${who.username} sees "${text}" once`);
    }
  }
  // The server agrees after a reload.
  await alice.page.reload();
  await waitForMessage(alice.page, "Back online, got it");
  // (The newest message can show before the history page under it has loaded.)
  for (const text of ["Before the restart", "Typed while the server was down", "Back online, got it"]) {
    await eventually(async () => assert.equal(await countOf(alice.page, text), 1, `after the reload: "${text}" once`));
  }
  for (const who of [alice, bob]) {
    assert.deepEqual(who.errors, []);
    await who.context.close();
  }
});
