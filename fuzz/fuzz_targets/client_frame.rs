//! Arbitrary bytes into every JSON type a client sends (WebSocket frames and REST bodies), and
//! into the stream cursor parser. Nothing may panic; what parses must survive a round trip.

#![no_main]

use confab_proto::{
    AddParticipants, ClientFrame, CreateConversation, Credentials, EditMessage, Event, Frame,
    MarkRead, SendMessage, SetTyping, UpdateConversation, UpdateMe,
};
use confab_server::realtime::feed::{format_cursor, parse_cursor};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `data` as `T`; when it parses, serializing and parsing again gives the same JSON.
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_value(&value).expect("a parsed value serializes");
    let again: T = serde_json::from_value(json.clone()).expect("serialized JSON parses back");
    let json_again = serde_json::to_value(&again).expect("serializes again");
    assert_eq!(json, json_again, "round trip changed the value");
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    // The WebSocket handler parses text frames exactly like this.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(frame) = serde_json::from_str::<ClientFrame>(text) {
            let json = serde_json::to_string(&frame).expect("a client frame serializes");
            let again: ClientFrame = serde_json::from_str(&json).expect("and parses back");
            assert_eq!(frame, again);
        }

        // Stream cursors arrive as `?cursor=` and `Last-Event-ID`.
        if let Some((instance, id)) = parse_cursor(text) {
            assert!(id >= 0, "a parsed cursor has a non-negative id");
            let formatted = format_cursor(instance, id);
            assert_eq!(parse_cursor(&formatted), Some((instance, id)));
        }
    }

    // REST request bodies (the server's `AppJson` extractor uses `from_slice`).
    round_trip::<Credentials>(data);
    round_trip::<CreateConversation>(data);
    round_trip::<UpdateConversation>(data);
    round_trip::<AddParticipants>(data);
    round_trip::<SendMessage>(data);
    round_trip::<EditMessage>(data);
    round_trip::<MarkRead>(data);
    round_trip::<UpdateMe>(data);
    round_trip::<SetTyping>(data);

    // Server frames, as the SDK and the long-poll client parse them.
    if let Some(frame) = round_trip::<Frame>(data) {
        if let Ok(event) = frame.event() {
            let back = Frame::new(&event, frame.cursor.clone());
            assert_eq!(back.event().ok().as_ref(), Some(&event), "event round trip");
        }
    }
    let _ = serde_json::from_slice::<Event>(data);
});
