// util/time.js — human times: list stamps ("now", "2 min", "Yesterday"), clock times, day
// separators and "last seen". Pure functions of an RFC 3339 string and "now".

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function startOfDay(d) {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** Days between the calendar days of `a` and `b` (b later). */
function dayDiff(a, b) {
  return Math.round((startOfDay(b) - startOfDay(a)) / (24 * HOUR));
}

/** "14:05" in the user's locale. */
export function clockTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

/** Conversation-list stamp: "now", "2 min", "3 h", "Yesterday", "Mon", "Mar 14". */
export function relativeTime(iso, now = new Date()) {
  const t = new Date(iso);
  const ago = now.getTime() - t.getTime();
  if (ago < MINUTE) return "now";
  if (ago < HOUR) return `${Math.floor(ago / MINUTE)} min`;
  const days = dayDiff(t, now);
  if (days === 0) return ago < 6 * HOUR ? `${Math.floor(ago / HOUR)} h` : clockTime(iso);
  if (days === 1) return "Yesterday";
  if (days < 7) return t.toLocaleDateString([], { weekday: "short" });
  if (t.getFullYear() === now.getFullYear()) return t.toLocaleDateString([], { month: "short", day: "numeric" });
  return t.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

/** Day separator label: "Today", "Yesterday", "Monday, March 14". */
export function dayLabel(iso, now = new Date()) {
  const t = new Date(iso);
  const days = dayDiff(t, now);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  const opts = { weekday: "long", month: "long", day: "numeric" };
  if (t.getFullYear() !== now.getFullYear()) opts.year = "numeric";
  return t.toLocaleDateString([], opts);
}

/** A key that is equal for two timestamps on the same local day. */
export function dayKey(iso) {
  return String(startOfDay(new Date(iso)));
}

/** "last seen 5 min ago", "last seen yesterday at 14:05", … */
export function lastSeen(iso, now = new Date()) {
  if (!iso) return "offline";
  const ago = now.getTime() - new Date(iso).getTime();
  if (ago < MINUTE) return "last seen just now";
  if (ago < HOUR) return `last seen ${Math.floor(ago / MINUTE)} min ago`;
  const days = dayDiff(new Date(iso), now);
  if (days === 0) return `last seen today at ${clockTime(iso)}`;
  if (days === 1) return `last seen yesterday at ${clockTime(iso)}`;
  return `last seen ${new Date(iso).toLocaleDateString([], { month: "short", day: "numeric" })}`;
}
