//! How message content is written to the database: as plain text, or sealed with the keyring
//! (`security::crypto`) when encryption at rest is configured. Every value that holds message
//! content passes through here on the way in and out: the `content` column and the copies of
//! messages inside stored event payloads.

use std::sync::Arc;

use serde_json::Value;

use super::{StoreError, StoreResult};
use crate::security::crypto::{Keyring, open_opt};

/// The JSON-escaped form of [`MARKER`] as it appears inside a serialized payload.
const MARKER_IN_JSON: &str = "\\u0000cf1:";

#[derive(Clone, Default)]
pub struct Codec {
    keys: Option<Arc<Keyring>>,
}

impl Codec {
    pub fn new(keys: Option<Arc<Keyring>>) -> Codec {
        Codec { keys }
    }

    pub fn keys(&self) -> Option<&Keyring> {
        self.keys.as_deref()
    }

    /// The stored form of `content` of message `message_id`.
    pub fn seal(&self, message_id: &str, content: &str) -> String {
        match &self.keys {
            Some(k) => k.seal(message_id, content),
            None => content.to_owned(),
        }
    }

    /// The plain text of a stored `content`.
    pub fn open(&self, message_id: &str, stored: String) -> StoreResult<String> {
        open_opt(self.keys.as_deref(), message_id, stored).map_err(StoreError::Backend)
    }

    /// The stored form of an event payload: every message inside it (an object with `id`,
    /// `conversation_id`, `seq` and a string `content`) gets its content sealed.
    pub fn seal_payload(&self, payload: &Value) -> StoreResult<String> {
        let text = match &self.keys {
            None => serde_json::to_string(payload),
            Some(keys) => {
                let mut sealed = payload.clone();
                map_contents(&mut sealed, &mut |id, content| Ok(keys.seal(id, content)))?;
                serde_json::to_string(&sealed)
            }
        };
        text.map_err(|e| StoreError::Backend(e.into()))
    }

    /// A stored payload with its messages' content opened.
    pub fn open_payload(&self, stored: String) -> StoreResult<String> {
        if !stored.contains(MARKER_IN_JSON) {
            return Ok(stored);
        }
        let mut value: Value =
            serde_json::from_str(&stored).map_err(|e| StoreError::Backend(e.into()))?;
        map_contents(&mut value, &mut |id, content| {
            open_opt(self.keys.as_deref(), id, content.to_owned()).map_err(StoreError::Backend)
        })?;
        serde_json::to_string(&value).map_err(|e| StoreError::Backend(e.into()))
    }

    /// A stored payload re-sealed under the current key (for `confab keys rotate`); `None`
    /// when nothing in it needs rotating.
    pub fn reseal_payload(&self, stored: &str) -> StoreResult<Option<String>> {
        let Some(keys) = &self.keys else { return Ok(None) };
        let mut value: Value =
            serde_json::from_str(stored).map_err(|e| StoreError::Backend(e.into()))?;
        let mut changed = false;
        map_contents(&mut value, &mut |id, content| {
            if !keys.needs_rotation(content) {
                return Ok(content.to_owned());
            }
            changed = true;
            let plain = keys.open(id, content).map_err(StoreError::Backend)?;
            Ok(keys.seal(id, &plain))
        })?;
        if !changed {
            return Ok(None);
        }
        serde_json::to_string(&value).map(Some).map_err(|e| StoreError::Backend(e.into()))
    }
}

/// A stored payload in which every copy of message `message_id` has `content` (already in its
/// stored form) and, when `deleted`, the deleted flag: how an edit or delete reaches the
/// events that carried the old text.
pub fn replace_message_copies(
    stored: &str,
    message_id: &str,
    content: &str,
    deleted: bool,
) -> StoreResult<String> {
    let mut value: Value =
        serde_json::from_str(stored).map_err(|e| StoreError::Backend(e.into()))?;
    visit_messages(&mut value, &mut |message| {
        if message.get("id").and_then(Value::as_str) == Some(message_id) {
            message.insert("content".into(), Value::String(content.to_owned()));
            if deleted {
                message.insert("deleted".into(), Value::Bool(true));
            }
        }
    });
    serde_json::to_string(&value).map_err(|e| StoreError::Backend(e.into()))
}

/// Calls `f` on every message object inside `value`.
fn visit_messages(value: &mut Value, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            if map.contains_key("conversation_id") && map.contains_key("seq") {
                f(map);
            }
            for child in map.values_mut() {
                visit_messages(child, f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| visit_messages(item, f)),
        _ => {}
    }
}

/// Applies `f(message_id, content)` to the content of every message object inside `value`.
fn map_contents(
    value: &mut Value,
    f: &mut dyn FnMut(&str, &str) -> StoreResult<String>,
) -> StoreResult<()> {
    match value {
        Value::Object(map) => {
            let is_message = map.contains_key("conversation_id") && map.contains_key("seq");
            if is_message
                && let (Some(Value::String(id)), Some(Value::String(content))) =
                    (map.get("id"), map.get("content"))
            {
                let new = f(id, content)?;
                map.insert("content".into(), Value::String(new));
            }
            for child in map.values_mut() {
                if child.is_object() || child.is_array() {
                    map_contents(child, f)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|item| map_contents(item, f)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::crypto::generate_key;

    fn message(id: &str, content: &str) -> Value {
        serde_json::json!({"id": id, "conversation_id": "c", "seq": 1, "content": content})
    }

    #[test]
    fn payload_messages_are_sealed_wherever_they_are_and_open_again() {
        let codec = Codec::new(Some(Arc::new(Keyring::new(&generate_key(), "").expect("key"))));
        let payload = serde_json::json!({
            "conversation": {"id": "c", "title": "secret plans", "last_message": message("m1", "hello there")},
            "message": message("m2", "general kenobi"),
        });

        let stored = codec.seal_payload(&payload).expect("seal");

        assert!(!stored.contains("hello there") && !stored.contains("general kenobi"));
        assert!(stored.contains("secret plans"), "only message content is sealed");
        let opened: Value =
            serde_json::from_str(&codec.open_payload(stored).expect("open")).expect("json");
        assert_eq!(opened, payload);
    }

    #[test]
    fn an_edit_reaches_every_copy_of_the_message_and_nothing_else() {
        let payload = serde_json::json!({
            "conversation": {"id": "c", "last_message": message("m1", "old")},
            "message": message("m1", "old"),
            "other": message("m2", "keep"),
        });

        let stored = replace_message_copies(&payload.to_string(), "m1", "", true).expect("edit");

        let value: Value = serde_json::from_str(&stored).expect("json");
        assert_eq!(value["message"]["content"], "");
        assert_eq!(value["message"]["deleted"], true);
        assert_eq!(value["conversation"]["last_message"]["content"], "");
        assert_eq!(value["other"], message("m2", "keep"));
    }

    #[test]
    fn without_keys_payloads_are_plain_and_sealed_ones_refuse_to_open() {
        let plain = Codec::default();
        let keyed = Codec::new(Some(Arc::new(Keyring::new(&generate_key(), "").expect("key"))));
        let stored = keyed.seal_payload(&message("m1", "hi")).expect("seal");

        assert_eq!(
            plain.seal_payload(&message("m1", "hi")).expect("plain"),
            r#"{"content":"hi","conversation_id":"c","id":"m1","seq":1}"#
        );
        assert!(plain.open_payload(stored).is_err());
    }
}
