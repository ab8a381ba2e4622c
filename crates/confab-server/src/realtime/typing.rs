//! Typing state: ephemeral, in memory, never stored.
//!
//! A "typing" signal lasts [`TYPING_TTL`] unless refreshed. Refreshes are rate-limited: while
//! someone keeps typing, others hear about it at most once per [`REBROADCAST`]; a stop or an
//! expiry is always told.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a typing signal lasts without a refresh.
pub const TYPING_TTL: Duration = Duration::from_secs(5);
/// The shortest interval between two broadcasts of "still typing".
pub const REBROADCAST: Duration = Duration::from_secs(3);

struct State {
    expires_at: Instant,
    broadcast_at: Instant,
}

#[derive(Default)]
pub struct TypingState {
    // std Mutex: map operations only, never held across an `.await`.
    by_key: Mutex<HashMap<(String, String), State>>,
}

impl TypingState {
    /// Records a start or stop by `user` in `conversation`; answers whether to broadcast it.
    pub fn update(&self, conversation: &str, user: &str, typing: bool, now: Instant) -> bool {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let key = (conversation.to_owned(), user.to_owned());
        if !typing {
            return map.remove(&key).is_some();
        }
        match map.get_mut(&key) {
            Some(state) => {
                state.expires_at = now + TYPING_TTL;
                if now.duration_since(state.broadcast_at) >= REBROADCAST {
                    state.broadcast_at = now;
                    true
                } else {
                    false
                }
            }
            None => {
                map.insert(key, State { expires_at: now + TYPING_TTL, broadcast_at: now });
                true
            }
        }
    }

    /// Removes and returns the (conversation, user) pairs whose signal expired.
    pub fn expire(&self, now: Instant) -> Vec<(String, String)> {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let expired: Vec<_> =
            map.iter().filter(|(_, s)| s.expires_at <= now).map(|(k, _)| k.clone()).collect();
        for key in &expired {
            map.remove(key);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_are_broadcast_at_most_every_few_seconds() {
        let state = TypingState::default();
        let t0 = Instant::now();

        assert!(state.update("c", "u", true, t0));
        assert!(!state.update("c", "u", true, t0 + Duration::from_secs(1)));
        assert!(state.update("c", "u", true, t0 + REBROADCAST));
        assert!(state.update("c", "u", false, t0 + REBROADCAST));
        assert!(!state.update("c", "u", false, t0 + REBROADCAST));
    }

    #[test]
    fn signals_expire_after_the_ttl_from_the_last_refresh() {
        let state = TypingState::default();
        let t0 = Instant::now();
        state.update("c", "u", true, t0);
        state.update("c", "u", true, t0 + Duration::from_secs(2));

        assert!(state.expire(t0 + TYPING_TTL).is_empty());
        assert_eq!(
            state.expire(t0 + Duration::from_secs(2) + TYPING_TTL),
            vec![("c".to_owned(), "u".to_owned())]
        );
    }
}
