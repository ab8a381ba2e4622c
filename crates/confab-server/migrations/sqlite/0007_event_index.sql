-- The event log's two indexes become tables the writer fills in batches. As indexes of
-- `events` they took a page of each conversation's range in every commit (most of a send's
-- pages are such index pages); filled every few hundred events, a page takes many entries at
-- once. `event_log.indexed` is the newest event id they cover: newer events are found by
-- scanning the log's end, which is never longer than one batch.

-- (conversation, event): a member's replay.
CREATE TABLE event_index (
    conversation_id  TEXT NOT NULL,
    id               INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, id)
) WITHOUT ROWID;

-- (message, event): the events whose payload holds a message's content, rewritten when the
-- message is edited or deleted.
CREATE TABLE event_refs (
    ref_id  TEXT NOT NULL,
    id      INTEGER NOT NULL,
    PRIMARY KEY (ref_id, id)
) WITHOUT ROWID;

INSERT INTO event_index (conversation_id, id) SELECT conversation_id, id FROM events;
INSERT INTO event_refs (ref_id, id) SELECT ref_id, id FROM events WHERE ref_id IS NOT NULL;
ALTER TABLE event_log ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
UPDATE event_log SET indexed = COALESCE((SELECT MAX(id) FROM events), 0);

DROP INDEX events_by_conversation;
DROP INDEX events_by_ref;
