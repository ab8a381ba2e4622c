-- Security: sessions that can be listed and revoked, an idle timeout, and usernames whose
-- look-alikes are refused.

-- A public id for each session (the token hash never leaves the server), its last use (for
-- the idle timeout) and what the owner needs to recognise it in a list.
ALTER TABLE sessions ADD COLUMN id TEXT;
UPDATE sessions SET id = lower(hex(randomblob(12)));
CREATE UNIQUE INDEX sessions_by_id ON sessions(id);
ALTER TABLE sessions ADD COLUMN last_used_at INTEGER;
UPDATE sessions SET last_used_at = created_at;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN ip TEXT;
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

-- The username's "skeleton": lowercase, with characters that look alike folded together
-- (0/o, 1/l/i, rn/m, vv/w, and - . _). A new username whose skeleton is taken is refused. This
-- expression must match `skeleton()` in service/accounts.rs.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
UPDATE users SET username_skeleton =
    replace(replace(replace(replace(replace(replace(replace(
        lower(username), '0', 'o'), '1', 'l'), 'i', 'l'), 'rn', 'm'), 'vv', 'w'), '-', '_'), '.', '_');
CREATE INDEX users_by_skeleton ON users(username_skeleton);
