// Signed-in devices: the settings dialog lists them, and signing the others out from one
// device sends the other back to the sign-in screen at once (its socket is closed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { openUser, signIn, uniqueName, screenshot, eventually, useServerAndBrowser } from "../lib/harness.js";

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

test("settings list the signed-in devices and sign the others out", async () => {
  const name = uniqueName("alice");
  const laptop = await openUser(browser, server.url, name);
  const phone = await openUser(browser, server.url, "", { signUp: false });
  await signIn(phone.page, name);

  await laptop.page.getByTestId("settings").click();
  const list = laptop.page.getByTestId("sessions");
  await eventually(async () => assert.equal(await list.locator("li").count(), 2));
  await list.locator("li").filter({ hasText: "This device" }).waitFor();
  await screenshot(laptop.page, "settings-sessions");

  await laptop.page.getByTestId("sign-out-others").click();
  await eventually(async () => assert.equal(await list.locator("li").count(), 1));

  // The phone's stream is closed by the server; its next request meets a 401 and it shows the
  // sign-in screen.
  await phone.page.reload();
  await phone.page.getByTestId("auth-screen").waitFor();
  assert.deepEqual(laptop.errors, []);
  await laptop.context.close();
  await phone.context.close();
});
