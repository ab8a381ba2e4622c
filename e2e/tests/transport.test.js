// When WebSockets cannot connect while the server is up (a proxy that blocks upgrades), the
// client falls back to Server-Sent Events and messages still arrive live.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, signUp, uniqueName, startDirectChat, openConversation, sendText, waitForMessage, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

test("without WebSockets the client falls back to SSE and stays live", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await openUser(browser, server.url, uniqueName("bob"), { signUp: false });
  // Every WebSocket fails to open, as behind a proxy that refuses upgrades.
  await bob.context.addInitScript(() => {
    window.WebSocket = class BlockedWebSocket extends EventTarget {
      static OPEN = 1;
      constructor() {
        super();
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code: 1006 }), 10);
      }
      send() {}
      close() {}
    };
  });
  await bob.page.reload();
  await signUp(bob.page, bob.username);

  await startDirectChat(alice.page, bob.username);
  await sendText(alice.page, "Can you hear me over SSE?");
  await bob.page.getByTestId("conversation-item").filter({ hasText: alice.username }).getByTestId("unread-badge").waitFor();
  await openConversation(bob.page, alice.username);
  await waitForMessage(bob.page, "Can you hear me over SSE?");
  await sendText(alice.page, "Second message, live");
  await waitForMessage(bob.page, "Second message, live");
  await sendText(bob.page, "Loud and clear");
  await waitForMessage(alice.page, "Loud and clear");
  assert.deepEqual(bob.errors, []);
  await alice.context.close();
  await bob.context.close();
});
