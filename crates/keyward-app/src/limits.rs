//! Abuse limits: how many sign-in attempts one client address or one account may make per minute
//! on this node, before the answer is `429` with `Retry-After`.
//!
//! The counters are this node's (in memory, safe to lose): with several nodes an address gets
//! each node's budget. What must hold across nodes, smart lockout, is counted in the database.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::AppError;

/// The limits, each a number of requests per minute (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests one client address may send to the sign-in pages, the token endpoint and the
    /// device-code endpoint, each (`KEYWARD_RATE_LIMIT_PER_ADDRESS`).
    pub per_address: u32,
    /// Password and code attempts against one account, from anywhere
    /// (`KEYWARD_RATE_LIMIT_PER_ACCOUNT`).
    pub per_account: u32,
    /// Passwords waiting for the hasher beyond which new ones are turned away with `503`
    /// (`KEYWARD_HASH_QUEUE_LIMIT`).
    pub hash_queue: usize,
}

impl Default for Limits {
    /// Generous for people and scripts, far below what guessing needs: 300 requests a minute
    /// per address and surface, 30 attempts a minute per account, 64 passwords queued.
    fn default() -> Limits {
        Limits { per_address: 300, per_account: 30, hash_queue: 64 }
    }
}

/// Which endpoint family a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    SignInPages,
    Token,
    DeviceCode,
}

/// Fixed one-minute windows per key; old windows are dropped as the map grows.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    counts: HashMap<(Surface, String), (i64, u32)>,
    /// The minute of the last sweep of stale windows.
    swept: i64,
}

/// Keys kept before stale windows are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// Counts one request under `key`; `Err` with the seconds until the window ends when the
    /// key has used `limit` requests in this minute.
    pub(crate) fn check(&self, surface: Surface, key: &str, limit: u32, now: OffsetDateTime) -> Result<(), AppError> {
        if limit == 0 {
            return Ok(());
        }
        let minute = now.unix_timestamp().div_euclid(60);
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Stale windows go once a minute at most, so many keys cannot make every request sweep.
        if windows.counts.len() >= SWEEP_AT && windows.swept != minute {
            windows.counts.retain(|_, (window, _)| *window == minute);
            windows.swept = minute;
        }
        let entry = windows.counts.entry((surface, key.to_owned())).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            let retry_after = u64::try_from(60 - now.unix_timestamp().rem_euclid(60)).unwrap_or(60);
            return Err(AppError::TooManyRequests { retry_after });
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_per_minute_and_then_waits_for_the_next() {
        let limiter = RateLimiter::default();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_010).expect("time");
        for _ in 0..3 {
            assert!(limiter.check(Surface::Token, "10.0.0.1", 3, now).is_ok());
        }
        match limiter.check(Surface::Token, "10.0.0.1", 3, now) {
            Err(AppError::TooManyRequests { retry_after }) => assert_eq!(retry_after, 50),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limiter.check(Surface::Token, "10.0.0.2", 3, now).is_ok(), "another address");
        assert!(limiter.check(Surface::SignInPages, "10.0.0.1", 3, now).is_ok(), "another surface");
        assert!(limiter.check(Surface::Token, "10.0.0.1", 3, now + time::Duration::seconds(50)).is_ok());
        assert!(limiter.check(Surface::Token, "10.0.0.1", 0, now).is_ok(), "0 turns the limit off");
    }
}
