// util/avatar.js — initials avatars with a stable color per id (a CSS class, since the CSP
// forbids inline styles), and an optional presence dot.
import { h } from "./dom.js";

const PALETTE_SIZE = 8;

/** "Alice Smith" → "AS", "bob" → "BO", "x.y" → "XY". */
export function initials(name) {
  const parts = String(name || "?").split(/[\s._-]+/).filter(Boolean);
  if (parts.length >= 2) return (parts[0][0] + parts[1][0]).toUpperCase();
  return String(parts[0] || "?").slice(0, 2).toUpperCase();
}

/** A stable palette index for an id (FNV-1a). */
export function colorIndex(id) {
  let hash = 0x811c9dc5;
  for (const ch of String(id)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % PALETTE_SIZE;
}

/**
 * @param {string} name shown as initials
 * @param {string} id picks the color
 * @param {{size?: "sm"|"md"|"lg", presence?: boolean|null, group?: boolean}} [opts]
 */
export function avatar(name, id, opts = {}) {
  const el = h("span", { class: `avatar avatar-${opts.size || "md"} av-${colorIndex(id)}${opts.group ? " avatar-group" : ""}`, "aria-hidden": "true" }, initials(name));
  if (opts.presence !== undefined && opts.presence !== null) {
    el.append(h("span", { class: `presence-dot ${opts.presence ? "online" : "offline"}`, "data-testid": "presence-dot", "data-online": String(!!opts.presence) }));
  }
  return el;
}
