-- Confab's schema on SQLite. Timestamps are unix milliseconds (INTEGER); ids are opaque TEXT.
-- The seed tables (conversations, participants, messages) keep their original column names.
-- Every message query is keyed by conversation_id so messages can be partitioned by it.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL,
    -- lowercase username: uniqueness, login and prefix search ignore case
    username_key    TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the bearer token, hex: the token itself is never stored
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE conversations (
    id                TEXT PRIMARY KEY,
    type              TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    title             TEXT,
    created_at        INTEGER NOT NULL,
    created_by        TEXT NOT NULL REFERENCES users(id),
    -- "<smaller user id>:<larger user id>" for direct conversations, so a pair has one
    direct_key        TEXT UNIQUE,
    -- the per-conversation sequence: bumped in the transaction that stores a message
    last_seq          INTEGER NOT NULL DEFAULT 0,
    last_activity_at  INTEGER NOT NULL
);

CREATE TABLE participants (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at        INTEGER NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    last_read_seq    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, user_id)
);
-- "my conversations": the list and the access gate start from the user
CREATE INDEX participants_by_user ON participants(user_id, conversation_id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    sender_id        TEXT NOT NULL REFERENCES users(id),
    content          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    client_id        TEXT,
    reply_to         TEXT,
    edited_at        INTEGER,
    deleted          INTEGER NOT NULL DEFAULT 0,
    -- history pages, last message and unread counts are range scans of this index
    UNIQUE (conversation_id, seq)
);
-- idempotent sends: one message per (conversation, sender, client_id)
CREATE UNIQUE INDEX messages_by_client_id
    ON messages(conversation_id, sender_id, client_id) WHERE client_id IS NOT NULL;
