// A three-person group: created through the UI, everyone talks, members are listed, one leaves.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, uniqueName, openConversation, sendText, waitForMessage, screenshot, eventually, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

test("three people talk in a group, and one leaves", async () => {
  const alice = await openUser(browser, server.url, uniqueName("alice"));
  const bob = await openUser(browser, server.url, uniqueName("bob"));
  const carol = await openUser(browser, server.url, uniqueName("carol"));
  const title = "Weekend trip";

  await alice.page.getByTestId("new-group").click();
  await alice.page.getByTestId("group-title").fill(title);
  for (const who of [bob, carol]) {
    await alice.page.getByTestId("user-search").fill(who.username);
    await alice.page.getByTestId("user-result").filter({ hasText: who.username }).click();
    await alice.page.getByTestId("group-members").getByText(who.username).waitFor();
  }
  await screenshot(alice.page, "group-create-dialog");
  await alice.page.getByTestId("create-group").click();
  await alice.page.getByTestId("chat-title").filter({ hasText: title }).waitFor();

  await sendText(alice.page, "Who is in for the mountains on Saturday?");
  for (const who of [bob, carol]) {
    await openConversation(who.page, title);
    await waitForMessage(who.page, "Who is in for the mountains on Saturday?");
  }
  await sendText(bob.page, "Count me in!");
  await sendText(carol.page, "Me too, I will bring snacks.");

  for (const who of [alice, bob, carol]) {
    for (const text of ["Who is in for the mountains on Saturday?", "Count me in!", "Me too, I will bring snacks."]) {
      const msg = await waitForMessage(who.page, text);
      assert.equal(await msg.count(), 1);
    }
  }
  // Others' messages carry the sender's name in a group.
  const fromCarol = await waitForMessage(alice.page, "Me too, I will bring snacks.");
  assert.equal(await fromCarol.getAttribute("data-sender"), carol.username);
  await alice.page.getByTestId("chat-subtitle").filter({ hasText: "3 members" }).waitFor();
  await screenshot(alice.page, "group-chat");

  await alice.page.getByTestId("conversation-info").click();
  const members = alice.page.getByTestId("member-list");
  for (const who of [alice, bob, carol]) await members.getByText(who.username).waitFor();
  await screenshot(alice.page, "group-info");
  await alice.page.keyboard.press("Escape");

  await carol.page.getByTestId("conversation-info").click();
  await carol.page.getByTestId("leave-group").click();
  await carol.page.getByTestId("confirm-button").click();
  await carol.page.getByTestId("conversation-item").filter({ hasText: title }).waitFor({ state: "detached" });
  await alice.page.getByTestId("chat-subtitle").filter({ hasText: "2 members" }).waitFor();

  for (const who of [alice, bob, carol]) {
    assert.deepEqual(who.errors, []);
    await who.context.close();
  }
});
