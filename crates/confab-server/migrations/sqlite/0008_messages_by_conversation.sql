-- Messages are stored in conversation order: the table's key becomes (conversation_id, seq),
-- so a conversation's history lies together in the file instead of wherever each message
-- happened to arrive among all the others. A history page, a conversation's unread count and
-- its last message read neighbouring rows of a few pages, not one page per message; and a
-- send updates the table in place of the separate (conversation_id, seq) index it had.
-- The columns and their meaning are unchanged. `content` comes last: a row of this kind of
-- table keeps only about a kilobyte on its page and puts the rest on overflow pages, and an
-- unread count, which reads `sender_id` and `deleted`, should not have to follow them.
CREATE TABLE messages_by_conversation (
    id               TEXT NOT NULL UNIQUE,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    sender_id        TEXT NOT NULL REFERENCES users(id),
    created_at       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    client_id        TEXT,
    reply_to         TEXT,
    edited_at        INTEGER,
    deleted          INTEGER NOT NULL DEFAULT 0,
    content          TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;

INSERT INTO messages_by_conversation
    (id, conversation_id, sender_id, created_at, seq, client_id, reply_to, edited_at, deleted,
     content)
SELECT id, conversation_id, sender_id, created_at, seq, client_id, reply_to, edited_at, deleted,
       content
  FROM messages
 ORDER BY conversation_id, seq;

-- The migrations' connection runs with `secure_delete`: the old table's pages are zeroed as
-- they are freed, so no copy of a message outlives a later delete in the file's free pages.
DROP TABLE messages;
ALTER TABLE messages_by_conversation RENAME TO messages;

-- idempotent sends: one message per (conversation, sender, client_id)
CREATE UNIQUE INDEX messages_by_client_id
    ON messages(conversation_id, sender_id, client_id) WHERE client_id IS NOT NULL;
