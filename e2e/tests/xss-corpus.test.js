// An XSS corpus (e2e/xss-payloads.json) goes through the REST API unchanged and shows as inert
// text in the web client: message bubbles (loaded history, a live message, a live edit, a reply
// quote), the conversation list snippet, and group titles (at creation and after a live rename).
// Every payload reaches a sink if it ever runs or renders as HTML: a dialog (alert/confirm/
// prompt), `window.__xss`, a request to /xss-marker, or a CSP violation. All of those are
// watched, along with a MutationObserver that records any dangerous element or attribute the
// page ever adds, even briefly.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { apiUser, signIn, uniqueName, screenshot, eventually, WAIT, useServerAndBrowser } from "../lib/harness.js";

const corpus = JSON.parse(readFileSync(new URL("../xss-payloads.json", import.meta.url), "utf8"));
/** @type {{name: string, payload: string}[]} */
const PAYLOADS = corpus.payloads;
const byName = (name) => {
  const p = PAYLOADS.find((x) => x.name === name);
  if (!p) throw new Error(`no payload named ${name}`);
  return p.payload;
};

/** @type {import("../lib/server.js").ConfabServer} */ let server;
/** @type {import("playwright-core").Browser} */ let browser;
useServerAndBrowser((s, b) => ([server, browser] = [s, b]));

/** Runs in the page before any of its scripts: records CSP violations and injected markup. */
function watchPage() {
  /** @type {string[]} */
  window.__cspViolations = [];
  /** @type {string[]} */
  window.__injected = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(`${e.violatedDirective} blocked=${e.blockedURI} sample=${e.sample}`);
  }, true);
  const DANGEROUS_TAGS = new Set(["SCRIPT", "IFRAME", "FRAME", "FRAMESET", "OBJECT", "EMBED", "BASE", "IMG", "IMAGE", "VIDEO", "AUDIO", "SOURCE",
    "MATH", "STYLE", "LINK", "META", "NOSCRIPT", "TEMPLATE", "MARQUEE", "ANIMATE", "SET", "FOREIGNOBJECT", "MGLYPH"]);
  const suspicious = (el) => {
    if (DANGEROUS_TAGS.has(el.tagName.toUpperCase())) return true;
    for (const a of el.attributes) {
      const n = a.name.toLowerCase();
      if (n.startsWith("on") || n === "srcdoc" || n === "formaction" || n === "style" && !/^height: \d+(\.\d+)?px;$/.test(a.value)) return true;
      if (/javascript:|xss-marker|data:text\/html/i.test(a.value)) return true;
    }
    return false;
  };
  const check = (el) => {
    if (suspicious(el)) window.__injected.push(el.outerHTML.slice(0, 200));
  };
  const start = () => {
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === "attributes" && r.target.nodeType === 1) check(r.target);
        for (const node of r.addedNodes) {
          if (node.nodeType !== 1) continue;
          check(node);
          for (const el of node.querySelectorAll("*")) check(el);
        }
      }
    }).observe(document, { childList: true, subtree: true, attributes: true });
  };
  // The page's own <head> (its module script, stylesheet, meta tags) is parsed before this starts.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}

/** A browser context for `user` with every XSS sink watched; signs in through the UI. */
async function openWatched(user) {
  const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1180, height: 760 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(WAIT);
  await context.addInitScript(watchPage);
  /** Everything that counts as an XSS or CSP finding, from Node's side. */
  const findings = [];
  const errors = [];
  context.on("request", (req) => {
    if (/xss-marker/i.test(req.url()) || !req.url().startsWith(server.url) && !req.url().startsWith("data:")) findings.push(`request: ${req.url()}`);
  });
  /** @type {import("playwright-core").Page | null} */
  let page = null;
  context.on("page", (p) => {
    if (page !== null && p !== page) findings.push(`new window: ${p.url()}`);
  });
  page = await context.newPage();
  page.on("dialog", (d) => {
    findings.push(`dialog ${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on("frameattached", (f) => findings.push(`frame attached: ${f.url()}`));
  page.on("framenavigated", (f) => {
    const url = new URL(f.url());
    if (f !== page.mainFrame() || url.origin !== server.url || url.pathname !== "/") findings.push(`navigation: ${f.url()}`);
  });
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to (execute|load|apply|frame|connect)/i.test(m.text())) findings.push(`console CSP: ${m.text()}`);
    else if (m.type() === "error" && !/^(Failed to load resource|WebSocket connection to)/.test(m.text())) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto("/");
  await signIn(page, user.username, user.password);
  return { context, page, findings, errors };
}

/** Asserts that the page shows no trace of any payload having run or rendered as markup. */
async function assertInert(who, where) {
  // Let would-be onerror/onload handlers, refreshes and resource loads happen first.
  await who.page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
  const state = await who.page.evaluate(() => {
    const problems = [];
    if (window.__xss !== undefined) problems.push(`window.__xss = ${String(window.__xss)}`);
    for (const v of window.__cspViolations) problems.push(`CSP violation: ${v}`);
    for (const i of window.__injected) problems.push(`injected element: ${i}`);
    // What is in the document now: the app itself adds none of these.
    const bad = document.querySelectorAll("iframe, frame, object, embed, base, img, video, audio, source, math, style, noscript, template, marquee, "
      + "meta[http-equiv], [srcdoc], [formaction], [style]:not(textarea), svg:not(.icon), svg script, svg animate, svg set, svg foreignObject");
    for (const el of bad) problems.push(`element in document: ${el.outerHTML.slice(0, 200)}`);
    for (const s of document.scripts) if (!/\/assets\/[^/]+\/js\/main\.js$/.test(s.src)) problems.push(`script: ${s.outerHTML.slice(0, 200)}`);
    for (const l of document.querySelectorAll("link")) if (!/^(data:,?|.*\/assets\/[^/]+\/css\/app\.css)$/.test(l.href)) problems.push(`link: ${l.outerHTML.slice(0, 200)}`);
    for (const a of document.querySelectorAll("a")) if (!/^#\/c\//.test(a.getAttribute("href") || "")) problems.push(`link element: ${a.outerHTML.slice(0, 200)}`);
    for (const f of document.querySelectorAll("form")) if (f.hasAttribute("action")) problems.push(`form: ${f.outerHTML.slice(0, 200)}`);
    for (const el of document.querySelectorAll("*")) {
      for (const a of el.attributes) if (/^on/i.test(a.name)) problems.push(`handler attribute: ${a.name}=${a.value.slice(0, 80)} on <${el.tagName.toLowerCase()}>`);
    }
    // Containers of user text hold text only.
    for (const el of document.querySelectorAll("[data-testid=message-text], .quote-text, .quote-name, .msg-sender, .conv-snippet, .conv-title, .chat-title, .history-edge")) {
      if (el.childElementCount !== 0) problems.push(`markup inside .${el.className}: ${el.innerHTML.slice(0, 200)}`);
    }
    if (window.top !== window || document.querySelector("body > :not(#app, #toasts, dialog)")) problems.push("page structure changed");
    return { problems, frames: window.frames.length };
  });
  const problems = [...who.findings, ...state.problems];
  if (state.frames !== 0) problems.push(`${state.frames} frames in the page`);
  assert.deepEqual(problems, [], `XSS/CSP findings (${where})`);
}

/** Scrolls the message list up until the start of the conversation is loaded. */
async function loadWholeHistory(page) {
  await eventually(async () => {
    await page.getByTestId("message-list").evaluate((l) => { l.scrollTop = 0; });
    assert.equal(await page.getByTestId("history-start").count(), 1);
  });
}

/** [id, textContent] of every rendered message, in order. */
function renderedMessages(page) {
  return page.getByTestId("message").evaluateAll((rows) => rows.map((r) => [r.getAttribute("data-key"), r.querySelector("[data-testid=message-text]")?.textContent ?? null]));
}

test(`an XSS corpus of ${PAYLOADS.length} payloads survives the API unchanged and renders as inert text`, async () => {
  assert.ok(PAYLOADS.length >= 30, "the corpus holds at least 30 payloads");
  assert.equal(new Set(PAYLOADS.map((p) => p.payload)).size, PAYLOADS.length, "payloads are distinct");

  const sender = await apiUser(server.url, uniqueName("mallory"));
  const receiver = await apiUser(server.url, uniqueName("victim"));
  const direct = await sender.call("POST", "/api/conversations", { type: "direct", participant_ids: [receiver.user.id] });

  // Through the API: every payload is stored and answered byte for byte. The last payload is
  // kept for a live send while the receiver has the conversation open.
  const live = PAYLOADS[PAYLOADS.length - 1];
  const editTarget = await sender.call("POST", `/api/conversations/${direct.id}/messages`, { content: "this message will be edited" });
  /** @type {Map<string, string>} message id → expected content */
  const expected = new Map([[editTarget.id, editTarget.content]]);
  let first = null;
  for (const { name, payload } of PAYLOADS.slice(0, -1)) {
    const sent = await sender.call("POST", `/api/conversations/${direct.id}/messages`, { content: payload });
    assert.ok(Buffer.from(sent.content, "utf8").equals(Buffer.from(payload, "utf8")), `POST answer of ${name} is unchanged`);
    expected.set(sent.id, payload);
    if (!first) {
      first = sent;
      const reply = await sender.call("POST", `/api/conversations/${direct.id}/messages`, { content: "replying to the first payload", reply_to: sent.id });
      expected.set(reply.id, reply.content);
    }
  }
  const page = await receiver.call("GET", `/api/conversations/${direct.id}/messages?limit=100`);
  assert.equal(page.has_more, false);
  assert.equal(page.messages.length, expected.size);
  for (const m of page.messages) {
    assert.ok(expected.has(m.id), `message ${m.id} was sent`);
    assert.ok(Buffer.from(m.content, "utf8").equals(Buffer.from(expected.get(m.id), "utf8")), `GET content of ${m.id} is byte-for-byte the payload`);
  }

  // Group titles made of payloads (titles: at most 128 characters, no control characters).
  const titlePayloads = ["img-onerror-unquoted", "attr-breakout-double-quote", "textarea-breakout"].map(byName);
  for (const t of titlePayloads) assert.ok(t.length <= 128 && t === t.trim());
  const group1 = await sender.call("POST", "/api/conversations", { type: "group", participant_ids: [receiver.user.id], title: titlePayloads[0] });
  const group2 = await sender.call("POST", "/api/conversations", { type: "group", participant_ids: [receiver.user.id], title: "Renamed soon" });
  assert.equal(group1.title, titlePayloads[0]);

  // In the browser: the receiver opens the direct conversation and loads all of it.
  const victim = await openWatched(receiver);
  const vp = victim.page;
  await vp.locator(`[data-testid=conversation-item][data-conversation-id="${direct.id}"]`).click();
  await vp.getByTestId("chat-title").filter({ hasText: sender.username }).waitFor();
  await loadWholeHistory(vp);
  await eventually(async () => assert.equal((await renderedMessages(vp)).length, expected.size));
  const shown = new Map(await renderedMessages(vp));
  for (const [id, content] of expected) {
    const name = PAYLOADS.find((p) => p.payload === content)?.name ?? content;
    assert.equal(shown.get(id), content, `message text of ${name} is exactly the payload`);
  }
  // The reply quotes the first payload as text (cut at 160 characters).
  const quote = await vp.getByTestId("message-quote").locator(".quote-text").textContent();
  assert.equal(quote, first.content.length > 160 ? `${first.content.slice(0, 160)}…` : first.content);
  await assertInert(victim, "history");

  // A payload arriving live, and the list snippet showing it (whitespace runs folded to a space).
  const liveSent = await sender.call("POST", `/api/conversations/${direct.id}/messages`, { content: live.payload });
  assert.equal(liveSent.content, live.payload);
  await eventually(async () => assert.equal(new Map(await renderedMessages(vp)).get(liveSent.id), live.payload));
  const snippet = vp.locator(`[data-testid=conversation-item][data-conversation-id="${direct.id}"] .conv-snippet`);
  await eventually(async () => assert.equal(await snippet.textContent(), live.payload.replace(/\s+/g, " ")));
  // And a live edit to a payload.
  const editPayload = `${byName("polyglot")} (edited)`;
  const edited = await sender.call("PATCH", `/api/messages/${editTarget.id}`, { content: editPayload });
  assert.equal(edited.content, editPayload);
  await eventually(async () => assert.equal(new Map(await renderedMessages(vp)).get(editTarget.id), editPayload));
  await vp.locator(`[data-testid=message][data-key="${editTarget.id}"] [data-testid=edited-mark]`).waitFor();
  // A multi-line payload as the snippet, too.
  const multiline = byName("multiline-with-tabs");
  const ml = await sender.call("POST", `/api/conversations/${direct.id}/messages`, { content: `${multiline} ` });
  assert.equal(ml.content, `${multiline} `);
  await eventually(async () => assert.equal(await snippet.textContent(), `${multiline} `.replace(/\s+/g, " ")));
  await eventually(async () => assert.equal(new Map(await renderedMessages(vp)).get(ml.id), `${multiline} `));
  await vp.mouse.move(600, 400);
  await assertInert(victim, "live message and edit");

  // Group titles: in the list, the chat header and the start-of-history line, before and after
  // a live rename.
  const titleOf = (id) => vp.locator(`[data-testid=conversation-item][data-conversation-id="${id}"] [data-testid=conversation-title]`);
  assert.equal(await titleOf(group1.id).textContent(), titlePayloads[0]);
  await vp.locator(`[data-testid=conversation-item][data-conversation-id="${group1.id}"]`).click();
  await eventually(async () => assert.equal(await vp.getByTestId("chat-title").textContent(), titlePayloads[0]));
  await eventually(async () => assert.equal(await vp.getByTestId("history-start").textContent(), `This is the start of ${titlePayloads[0]}.`));
  await vp.locator(`[data-testid=conversation-item][data-conversation-id="${group2.id}"]`).click();
  await eventually(async () => assert.equal(await vp.getByTestId("chat-title").textContent(), "Renamed soon"));
  const renamed = await sender.call("PATCH", `/api/conversations/${group2.id}`, { title: titlePayloads[1] });
  assert.equal(renamed.title, titlePayloads[1]);
  await eventually(async () => assert.equal(await vp.getByTestId("chat-title").textContent(), titlePayloads[1]));
  await eventually(async () => assert.equal(await titleOf(group2.id).textContent(), titlePayloads[1]));
  const group3 = await sender.call("POST", "/api/conversations", { type: "group", participant_ids: [receiver.user.id], title: titlePayloads[2] });
  await eventually(async () => assert.equal(await titleOf(group3.id).textContent(), titlePayloads[2]));
  await assertInert(victim, "group titles");
  await screenshot(vp, "xss-corpus");

  assert.deepEqual(victim.errors, []);
  await victim.context.close();
});
