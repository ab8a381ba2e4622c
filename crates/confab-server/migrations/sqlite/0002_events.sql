-- Real-time: the durable event log that clients resume from, the membership spans that say
-- who may replay which events, delivery watermarks, presence and receipt settings.

-- Every durable change (message, edit, delete, membership, receipt) in commit order. `id` is
-- the resume cursor: one writer assigns it, so ids are committed in increasing order.
CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id  TEXT NOT NULL,
    type             TEXT NOT NULL,
    -- the message an event is about, so deleting it can erase its content here too
    ref_id           TEXT,
    -- only this user receives the event (a read receipt its owner does not share)
    audience         TEXT,
    payload          TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX events_by_conversation ON events(conversation_id, id);
CREATE INDEX events_by_ref ON events(ref_id) WHERE ref_id IS NOT NULL;

-- Who was a member of a conversation between which event positions (both inclusive): a
-- member replays events from the one that added them to the one that removed them.
CREATE TABLE memberships (
    conversation_id  TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    from_event       INTEGER NOT NULL,
    to_event         INTEGER
);
CREATE INDEX memberships_by_user ON memberships(user_id, conversation_id);

-- One row about the log itself. `instance` is random and names this database in cursors
-- ("<instance>-<id>"), so a cursor from another server is recognised as foreign. Events up to
-- `floor` were pruned; a cursor below it cannot be replayed.
CREATE TABLE event_log (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    instance  TEXT NOT NULL,
    floor     INTEGER NOT NULL
);
INSERT INTO event_log (id, instance, floor) VALUES (1, lower(hex(randomblob(6))), 0);

ALTER TABLE participants ADD COLUMN last_delivered_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN share_read_receipts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;

-- Conversations created before this migration: their members replay from the start.
INSERT INTO memberships (conversation_id, user_id, from_event)
    SELECT conversation_id, user_id, 0 FROM participants;
