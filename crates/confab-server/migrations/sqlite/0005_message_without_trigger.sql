-- Storing a message now bumps its conversation's sequence and activity time and moves the
-- sender's read watermark with statements of its own, in the same transaction (the store's
-- `insert_message`). A statement that fires a trigger makes SQLite keep a journal of every
-- page it changes, so that it can undo the statement alone: on the hot path that copying cost
-- more than the round trips the trigger saved.
DROP TRIGGER messages_bump_conversation;
