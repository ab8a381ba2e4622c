// api.js — the only place that calls fetch. Speaks the REST API as JSON with the session cookie
// and throws ApiError with the server's stable error `code`; network failures become code
// "network". State-changing calls carry the session's CSRF token (from the readable
// `confab_csrf` cookie the server sets at sign-in) in `X-CSRF-Token`.

export class ApiError extends Error {
  /** @param {number} status 0 when the server could not be reached */
  constructor(status, code, message, retryAfterSecs = null) {
    super(message);
    this.status = status;
    this.code = code;
    /** Seconds to wait, from a 429's `Retry-After`; null when the server did not say. */
    this.retryAfterSecs = retryAfterSecs;
  }

  /** Worth retrying later with the same client_id: unreachable, restarting or overloaded. */
  get retryable() {
    return this.status === 0 || this.status >= 500 || this.status === 429;
  }
}

let onUnauthorized = () => {};

/** Called when a signed-in call answers 401 (session expired or logged out elsewhere). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** Whether this browser holds a session (its readable CSRF cookie comes and goes with it). */
export function hasSession() {
  return csrfToken() !== "";
}

/** The CSRF token of the current session, or "" when signed out. */
function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "confab_csrf") return rest.join("=");
  }
  return "";
}

async function call(method, path, body) {
  /** @type {RequestInit} */
  const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
  if (method !== "GET" && method !== "HEAD") {
    const token = csrfToken();
    if (token) init.headers["X-CSRF-Token"] = token;
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "Cannot reach the server");
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Not JSON (a proxy page, an empty body): the status alone decides below.
  }
  if (!res.ok) {
    const err = data && data.error;
    const code = (err && err.code) || (res.status >= 500 ? "unavailable" : "unknown");
    if (res.status === 401 && !path.startsWith("/api/auth/")) onUnauthorized();
    const retryAfter = Number.parseInt(res.headers.get("Retry-After") || "", 10);
    throw new ApiError(res.status, code, (err && err.message) || `HTTP ${res.status}`, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  return data;
}

const enc = encodeURIComponent;

function query(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${enc(v)}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

export const api = {
  register: (username, password) => call("POST", "/api/auth/register", { username, password }),
  login: (username, password) => call("POST", "/api/auth/login", { username, password }),
  logout: () => call("POST", "/api/auth/logout"),
  me: () => call("GET", "/api/me"),
  updateMe: (changes) => call("PATCH", "/api/me", changes),
  listSessions: () => call("GET", "/api/sessions"),
  revokeSession: (id) => call("DELETE", `/api/sessions/${enc(id)}`),
  revokeOtherSessions: () => call("DELETE", "/api/sessions"),
  searchUsers: (q) => call("GET", `/api/users${query({ q })}`),
  listConversations: () => call("GET", "/api/conversations"),
  getConversation: (id) => call("GET", `/api/conversations/${enc(id)}`),
  createConversation: (body) => call("POST", "/api/conversations", body),
  renameConversation: (id, title) => call("PATCH", `/api/conversations/${enc(id)}`, { title }),
  addParticipants: (id, userIds) => call("POST", `/api/conversations/${enc(id)}/participants`, { user_ids: userIds }),
  removeParticipant: (id, userId) => call("DELETE", `/api/conversations/${enc(id)}/participants/${enc(userId)}`),
  leaveConversation: (id) => call("POST", `/api/conversations/${enc(id)}/leave`),
  /** @param {{limit?: number, before?: number, after?: number}} page */
  listMessages: (id, page = {}) => call("GET", `/api/conversations/${enc(id)}/messages${query(page)}`),
  sendMessage: (id, body) => call("POST", `/api/conversations/${enc(id)}/messages`, body),
  editMessage: (id, content) => call("PATCH", `/api/messages/${enc(id)}`, { content }),
  deleteMessage: (id) => call("DELETE", `/api/messages/${enc(id)}`),
  markRead: (id, seq) => call("POST", `/api/conversations/${enc(id)}/read`, { seq }),
  markDelivered: (id, seq) => call("POST", `/api/conversations/${enc(id)}/delivered`, { seq }),
  setTyping: (id, typing) => call("POST", `/api/conversations/${enc(id)}/typing`, { typing }),
  presence: () => call("GET", "/api/presence"),
  /** The current end of the event log, without waiting: where a fresh stream should start. */
  currentCursor: () => call("GET", "/api/events/poll"),
  poll: (cursor, timeout) => call("GET", `/api/events/poll${query({ cursor, timeout })}`),
  healthy: async () => {
    try {
      return (await fetch("/healthz", { cache: "no-store" })).ok;
    } catch {
      return false;
    }
  },
};
