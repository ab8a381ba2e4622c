-- Confab's schema on PostgreSQL: the same tables as on SQLite (migrations/sqlite), in one
-- migration. Timestamps are unix milliseconds (BIGINT); ids are opaque TEXT.
--
-- Sharding-ready: every message row and every message query is keyed by conversation_id.
-- `messages` is partitioned by hash of conversation_id, its primary key is
-- (conversation_id, seq), and the one lookup by message id alone goes through
-- `message_locator` (id -> conversation_id) first. A distributed PostgreSQL (Citus) can use
-- conversation_id as the distribution column of messages, participants and events
-- (docs/scaling.md).

CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL,
    -- lowercase username; byte order ("C") so prefix search is a range on this index
    username_key         TEXT COLLATE "C" NOT NULL UNIQUE,
    -- look-alike characters folded together (service::skeleton): a taken skeleton is refused
    username_skeleton    TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    share_read_receipts  BOOLEAN NOT NULL DEFAULT TRUE,
    last_seen_at         BIGINT
);
CREATE INDEX users_by_skeleton ON users (username_skeleton);

CREATE TABLE sessions (
    -- SHA-256 of the bearer token, hex: the token itself is never stored
    token_hash    TEXT PRIMARY KEY,
    -- the public id, for listing and revoking
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    user_agent    TEXT,
    ip            TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE conversations (
    id                TEXT PRIMARY KEY,
    type              TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    title             TEXT,
    created_at        BIGINT NOT NULL,
    created_by        TEXT NOT NULL REFERENCES users (id),
    -- "<smaller user id>:<larger user id>" for direct conversations, so a pair has one
    direct_key        TEXT UNIQUE,
    -- the per-conversation sequence: bumped in the transaction that stores a message
    last_seq          BIGINT NOT NULL DEFAULT 0,
    last_activity_at  BIGINT NOT NULL
);

CREATE TABLE participants (
    id                  TEXT PRIMARY KEY,
    conversation_id     TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at           BIGINT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    last_read_seq       BIGINT NOT NULL DEFAULT 0,
    last_delivered_seq  BIGINT NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    id               TEXT NOT NULL,
    sender_id        TEXT NOT NULL REFERENCES users (id),
    -- bytes, not text: sealed content (encryption at rest) starts with a NUL marker
    content          BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    client_id        TEXT,
    reply_to         TEXT,
    edited_at        BIGINT,
    deleted          BOOLEAN NOT NULL DEFAULT FALSE,
    -- history pages, last message and unread counts are range scans of this key
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, id)
) PARTITION BY HASH (conversation_id);

-- idempotent sends: one message per (conversation, sender, client_id)
CREATE UNIQUE INDEX messages_by_client_id
    ON messages (conversation_id, sender_id, client_id) WHERE client_id IS NOT NULL;

DO $$
BEGIN
    FOR r IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE messages_p%s PARTITION OF messages FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            r, r);
    END LOOP;
END $$;

-- Where a message lives, for the routes that name a message by id alone.
CREATE TABLE message_locator (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE
);

-- Every durable change in commit order; `id` is the resume cursor. Writers hold a
-- transaction-level advisory lock while they write, so ids commit in increasing order.
CREATE TABLE events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  TEXT NOT NULL,
    type             TEXT NOT NULL,
    ref_id           TEXT,
    audience         TEXT,
    payload          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX events_by_conversation ON events (conversation_id, id);
CREATE INDEX events_by_ref ON events (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX events_by_time ON events (created_at);

-- Who was a member of a conversation between which event positions (both inclusive).
CREATE TABLE memberships (
    conversation_id  TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    from_event       BIGINT NOT NULL,
    to_event         BIGINT
);
CREATE INDEX memberships_by_user ON memberships (user_id, conversation_id);

-- One row about the log: `instance` names this database in cursors; events up to `floor`
-- were pruned.
CREATE TABLE event_log (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    instance  TEXT NOT NULL,
    floor     BIGINT NOT NULL
);
INSERT INTO event_log (id, instance, floor) VALUES (1, substr(md5(random()::text), 1, 12), 0);
