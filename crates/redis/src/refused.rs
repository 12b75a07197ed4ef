//! The refusal cache: a 429 from Redis carries an exact `retry_after`, and until then
//! the window it came from frees no place, so a request before then can be refused here
//! without asking Redis. A client hammering while it is limited then costs no round
//! trip.
//!
//! The time kept is the call's *sending* time (the lease clock) plus the wait: Redis
//! decided after the call was sent, so the window frees no sooner than that, and the
//! cache never refuses past the moment Redis would admit again. Two things free a place
//! earlier than a refusal said: a change of the window's shape (the cache is dropped
//! with it) and a give-back of an admission a later stage refused (this process forgets
//! the window's entry when it gives one back; one given back by another replica is found
//! at the time cached at the latest).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::refusal::Refusal;

/// The most clients a keyed window's refusal cache keeps at once.
pub const CACHED_CLIENTS: usize = 1 << 16;

/// How often, on the lease clock, a full cache of clients drops the entries that no
/// longer hold: one pass over it at most this often, so that a spray of limited clients
/// does not pay for a pass on every refusal.
const SWEEP_EVERY_US: u64 = 100_000;

/// Until when (the lease clock, µs) a refusal answered at `sent_us` holds.
fn holds_until(sent_us: u64, refusal: &Refusal) -> Option<u64> {
    match refusal {
        Refusal::RateLimited { retry_after, .. } => {
            let wait_us = u64::try_from(retry_after.as_micros()).unwrap_or(u64::MAX);
            Some(sent_us.saturating_add(wait_us))
        }
        _ => None,
    }
}

/// The wait left at `now_us` of a refusal held until `until_us` (0: none held).
fn left(until_us: u64, now_us: u64) -> Option<Duration> {
    (until_us != 0 && now_us < until_us).then(|| Duration::from_micros(until_us - now_us))
}

/// The refusal cache of one window.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    /// Until when Redis's latest refusal holds (0: none).
    until_us: AtomicU64,
}

impl Refused {
    /// The wait left at `now_us`, while a refusal holds.
    pub(crate) fn wait(&self, now_us: u64) -> Option<Duration> {
        // Relaxed: the cache only spares round trips; a stale read asks Redis once more
        // or refuses for a wait Redis gave (it frees no place sooner, see the module).
        left(self.until_us.load(Ordering::Relaxed), now_us)
    }

    /// Keeps `refusal`, answered to a call sent at `sent_us`, when it is a rate limit.
    pub(crate) fn keep(&self, sent_us: u64, refusal: &Refusal) {
        if let Some(until) = holds_until(sent_us, refusal) {
            // Relaxed: as in `wait`; `fetch_max` keeps the later of two refusals.
            self.until_us.fetch_max(until, Ordering::Relaxed);
        }
    }

    /// Forgets the refusal held: a place was given back.
    pub(crate) fn forget(&self) {
        // Relaxed: as in `wait`.
        self.until_us.store(0, Ordering::Relaxed);
    }
}

/// The refusal cache of a keyed window's clients, at most [`CACHED_CLIENTS`] of them.
#[derive(Debug, Default)]
pub(crate) struct RefusedClients {
    /// Client → until when Redis's latest refusal of it holds.
    until_us: papaya::HashMap<String, u64>,
    /// When entries that no longer hold were last dropped.
    swept_us: AtomicU64,
}

impl RefusedClients {
    /// The wait left for `client` at `now_us`, while a refusal of it holds.
    pub(crate) fn wait(&self, client: &str, now_us: u64) -> Option<Duration> {
        left(*self.until_us.pin().get(client)?, now_us)
    }

    /// Keeps `client`'s `refusal`, answered to a call sent at `sent_us`, when it is a
    /// rate limit. While the cache is full, entries that no longer hold are dropped first
    /// (at most every [`SWEEP_EVERY_US`]); a refusal that finds no room is not kept.
    pub(crate) fn keep(&self, client: &str, sent_us: u64, now_us: u64, refusal: &Refusal) {
        let Some(until) = holds_until(sent_us, refusal) else {
            return;
        };
        let clients = self.until_us.pin();
        if clients.len() >= CACHED_CLIENTS {
            // Relaxed: a lone timestamp; two sweeps at once only cost a second pass.
            let swept = self.swept_us.load(Ordering::Relaxed);
            if now_us.saturating_sub(swept) >= SWEEP_EVERY_US {
                self.swept_us.store(now_us, Ordering::Relaxed);
                clients.retain(|_, &until| until > now_us);
            }
        }
        if clients.len() < CACHED_CLIENTS {
            clients.update_or_insert(client.to_owned(), |&held| held.max(until), until);
        }
    }

    /// Forgets `client`'s refusal: one of its places was given back.
    pub(crate) fn forget(&self, client: &str) {
        self.until_us.pin().remove(client);
    }

    /// How many clients it holds refusals of (some may no longer hold).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.until_us.pin().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::RateScope;

    fn limited(ms: u64) -> Refusal {
        Refusal::RateLimited {
            retry_after: Duration::from_millis(ms),
            scope: RateScope::Global,
        }
    }

    #[test]
    fn a_refusal_holds_from_its_sending_time_until_its_wait_ends() {
        let refused = Refused::default();
        assert_eq!(refused.wait(0), None);
        refused.keep(1_000, &limited(5));
        assert_eq!(refused.wait(1_000), Some(Duration::from_millis(5)));
        assert_eq!(refused.wait(5_999), Some(Duration::from_micros(1)));
        assert_eq!(refused.wait(6_000), None, "Redis admits again then");
        // An earlier one does not shorten it; a give-back forgets it.
        refused.keep(1_000, &limited(1));
        assert_eq!(refused.wait(3_000), Some(Duration::from_millis(3)));
        refused.forget();
        assert_eq!(refused.wait(3_000), None);
        // Only rate limits are kept.
        refused.keep(
            0,
            &Refusal::Overloaded {
                reason: backstop_core::OverloadReason::TooManyKeys,
                retry_after_hint: Duration::from_secs(1),
            },
        );
        assert_eq!(refused.wait(1), None);
    }

    #[test]
    fn a_full_client_cache_drops_what_no_longer_holds_and_keeps_no_more() {
        let clients = RefusedClients::default();
        for i in 0..CACHED_CLIENTS {
            clients.keep(&i.to_string(), 0, 0, &limited(1 + (i % 2) as u64 * 1_000));
        }
        assert_eq!(clients.len(), CACHED_CLIENTS);
        // Full of live refusals: the next one finds no room.
        clients.keep("late", 0, 500, &limited(10));
        assert_eq!(clients.wait("late", 500), None);
        // Half of them end at 1 ms: a sweep then makes room (not before the next is due).
        clients.keep("late", 0, 1_000 + SWEEP_EVERY_US, &limited(1_000));
        assert_eq!(clients.len(), CACHED_CLIENTS / 2 + 1);
        assert_eq!(
            clients.wait("late", 1_000),
            Some(Duration::from_millis(999))
        );
        clients.forget("late");
        assert_eq!(clients.wait("late", 1_000), None);
    }
}
