// events.js — the real-time stream. Owns the transport: WebSocket first; Server-Sent Events when
// WebSockets keep failing while the server is up; long-polling when SSE fails too. Reconnects
// with exponential backoff and jitter and resumes from the last durable cursor seen, so a
// reconnect misses nothing. It knows nothing about conversations: frames go to `onFrame`.
import { api } from "./api.js";

/** @typedef {{type: string, payload: any, cursor?: string}} Frame */
/** @typedef {"connecting"|"online"|"offline"} Status */

const MAX_DELAY_MS = 10_000;
const FAILURES_BEFORE_FALLBACK = 3;

export class Realtime {
  /**
   * @param {{onFrame: (f: Frame) => void, onStatus: (s: Status, transport: string) => void, onAuthLost: () => void}} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    /** @type {"ws"|"sse"|"poll"} */
    this.transport = "ws";
    this.cursor = null;
    this.attempt = 0;
    this.failures = 0;
    this.stopped = true;
    this.ws = null;
    this.es = null;
    this.timer = null;
    this.pollAbort = null;
    this.status = "connecting";
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  /** Starts streaming after `cursor` (events before it are already in the state). */
  start(cursor) {
    this.cursor = cursor;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.onOnline);
    this.closeTransport();
  }

  /** Sends a client frame over the WebSocket; false when there is none (use REST then). */
  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.status === "online") {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  reconnectNow() {
    if (this.stopped || this.status === "online") return;
    clearTimeout(this.timer);
    this.closeTransport();
    this.connect();
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.handlers.onStatus(status, this.transport);
  }

  closeTransport() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
    if (this.es) {
      this.es.close();
      this.es = null;
    }
    if (this.pollAbort) {
      this.pollAbort.abort();
      this.pollAbort = null;
    }
  }

  connect() {
    if (this.stopped) return;
    if (this.transport === "ws") this.connectWs();
    else if (this.transport === "sse") this.connectSse();
    else this.pollLoop();
  }

  /** Every frame passes here: track the resume cursor, then hand it on. */
  receive(frame, opened) {
    if (frame.type === "ready" || frame.type === "resync_required") {
      this.cursor = frame.payload.cursor;
      opened();
    } else if (frame.cursor) {
      this.cursor = frame.cursor;
    }
    this.handlers.onFrame(frame);
  }

  opened() {
    this.attempt = 0;
    this.failures = 0;
    this.setStatus("online");
  }

  connectWs() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const qs = this.cursor ? `?cursor=${encodeURIComponent(this.cursor)}` : "";
    const ws = new WebSocket(`${scheme}//${location.host}/api/ws${qs}`);
    this.ws = ws;
    let ready = false;
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return; // Not a frame: ignore rather than break the stream.
      }
      this.receive(frame, () => {
        ready = true;
        this.opened();
      });
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setStatus("offline");
      if (!ready) this.failures++;
      this.scheduleReconnect();
    };
  }

  connectSse() {
    const qs = this.cursor ? `?cursor=${encodeURIComponent(this.cursor)}` : "";
    const es = new EventSource(`/api/events${qs}`);
    this.es = es;
    let ready = false;
    es.onmessage = (e) => {
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      this.receive(frame, () => {
        ready = true;
        this.opened();
      });
    };
    es.onerror = () => {
      if (this.es !== es) return;
      this.setStatus("offline");
      // The browser retries by itself (with Last-Event-ID) unless the answer was an error.
      if (es.readyState === EventSource.CLOSED) {
        this.es = null;
        if (!ready) this.failures++;
        this.scheduleReconnect();
      }
    };
  }

  async pollLoop() {
    const abort = new AbortController();
    this.pollAbort = abort;
    try {
      if (!this.cursor) this.cursor = (await api.currentCursor()).cursor;
      this.opened();
      while (!abort.signal.aborted && !this.stopped) {
        const answer = await api.poll(this.cursor, 25);
        if (abort.signal.aborted) return;
        for (const frame of answer.events) this.receive(frame, () => {});
        this.cursor = answer.cursor;
      }
    } catch {
      if (abort.signal.aborted) return;
      this.pollAbort = null;
      this.setStatus("offline");
      this.scheduleReconnect();
    }
  }

  scheduleReconnect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const base = Math.min(MAX_DELAY_MS, 400 * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt++;
    this.timer = setTimeout(() => this.retry(), delay);
  }

  async retry() {
    if (this.stopped) return;
    if (this.failures > 0 && this.transport !== "poll") {
      if (!(await api.healthy())) {
        // The server is down or restarting: that explains the failure, which then says nothing
        // about the transport. Only failures while the server answers lead to a fallback.
        this.failures = 0;
      } else if (this.failures >= FAILURES_BEFORE_FALLBACK) {
        const me = await fetch("/api/me", { cache: "no-store" }).catch(() => null);
        if (me && me.status === 401) {
          this.handlers.onAuthLost();
          return;
        }
        this.transport = this.transport === "ws" ? "sse" : "poll";
        this.failures = 0;
      }
    }
    if (this.stopped) return;
    this.connect();
  }

}
