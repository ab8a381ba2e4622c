//! Timestamps: stored as unix milliseconds, shown as RFC 3339 (`time::OffsetDateTime`).

use time::OffsetDateTime;

/// Milliseconds since the unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The instant `ms` milliseconds after the unix epoch, in UTC. Out-of-range values (never
/// written by Confab) fall back to the epoch rather than failing a whole listing.
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let ms = 1_795_000_000_123;
        assert_eq!((from_ms(ms).unix_timestamp_nanos() / 1_000_000) as i64, ms);
    }
}
