-- Storing a message bumps its conversation's sequence and activity time and moves the
-- sender's read watermark, inside the same statement: one round trip on the hot path instead
-- of three. The insert computes `seq` as `last_seq + 1` of the conversation row, which the
-- single writer makes gapless.
CREATE TRIGGER messages_bump_conversation AFTER INSERT ON messages
BEGIN
    UPDATE conversations SET last_seq = NEW.seq, last_activity_at = NEW.created_at
     WHERE id = NEW.conversation_id;
    UPDATE participants SET last_read_seq = NEW.seq
     WHERE conversation_id = NEW.conversation_id AND user_id = NEW.sender_id
       AND last_read_seq < NEW.seq;
END;
