//! The keyed limiter's rules ([`KeyedSlidingWindow`](crate::rate::KeyedSlidingWindow)):
//! one [`WindowModel`] per tracked key, at most `max_keys` keys tracked, a key dropped
//! only when its window is empty, limit overrides that reshape a tracked key's window.
//!
//! - a new key is tracked while fewer than `max_keys` are; when the table is full, every
//!   key whose window is empty is reclaimed first, and if none is, the key is refused
//!   with "too many keys", whose wait is when the first tracked window empties;
//! - [`retain_recent`](KeyedModel::retain_recent) reclaims exactly the empty windows;
//! - an override that changes a tracked key's shape reshapes its window as the limiter's
//!   `Entry::reshaped` does: room for at least as many admissions as before, everything
//!   it remembered, and what it forgot at its horizon, so that narrowing a window and
//!   widening it again forgets nothing the wide window holds.

use std::collections::BTreeMap;

use super::window::WindowModel;

/// A limit and a window in nanoseconds.
pub type Shape = (u32, u64);

/// Why a key's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedRefused {
    /// The key's window is full: the exact wait, in nanoseconds.
    RateLimited {
        /// Until the oldest admission that fills the window leaves it.
        wait_ns: u64,
    },
    /// Every tracked key's window is live and the table is full.
    TooManyKeys {
        /// Until the first tracked window empties: the latest a "retry after" may say.
        latest_ns: u64,
    },
}

/// The keyed limiter's reference: a table of per-key windows.
///
/// ```
/// use backstop_core::model::{KeyedModel, KeyedRefused};
///
/// // One admission per 10 ns for each key, at most one key tracked.
/// let mut keyed = KeyedModel::new((1, 10), 1);
/// assert_eq!(keyed.try_acquire(&'a', 0), Ok(()));
/// assert_eq!(keyed.try_acquire(&'a', 4), Err(KeyedRefused::RateLimited { wait_ns: 6 }));
/// assert_eq!(keyed.try_acquire(&'b', 4), Err(KeyedRefused::TooManyKeys { latest_ns: 6 }));
/// // Once `a`'s window is empty, `b` takes its place.
/// assert_eq!(keyed.try_acquire(&'b', 10), Ok(()));
/// assert_eq!(keyed.tracked().copied().collect::<Vec<_>>(), ['b']);
/// ```
#[derive(Debug, Clone)]
pub struct KeyedModel<K> {
    default: Shape,
    max_keys: usize,
    tracked: BTreeMap<K, WindowModel>,
    overrides: BTreeMap<K, Shape>,
}

impl<K: Ord + Clone> KeyedModel<K> {
    /// An empty table of at most `max_keys` keys, each held to `default` unless it has an
    /// override.
    pub fn new(default: Shape, max_keys: usize) -> Self {
        KeyedModel {
            default,
            max_keys,
            tracked: BTreeMap::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// The shape `key` is held to: its override, else the default.
    pub fn shape(&self, key: &K) -> Shape {
        self.overrides.get(key).copied().unwrap_or(self.default)
    }

    /// The tracked keys, in order.
    pub fn tracked(&self) -> impl Iterator<Item = &K> + '_ {
        self.tracked.keys()
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// `key`'s window, if it is tracked.
    pub fn window(&self, key: &K) -> Option<&WindowModel> {
        self.tracked.get(key)
    }

    /// Reclaims every key whose window is empty at `now_ns`; how many.
    pub fn retain_recent(&mut self, now_ns: u64) -> usize {
        let before = self.tracked.len();
        self.tracked.retain(|_, w| w.empty_from_ns() > now_ns);
        before - self.tracked.len()
    }

    /// When the first tracked window empties (0 when none is tracked).
    pub fn earliest_empty_ns(&self) -> u64 {
        self.tracked
            .values()
            .map(WindowModel::empty_from_ns)
            .min()
            .unwrap_or(0)
    }

    /// `key`'s window, tracking it if there is room (reclaiming empty windows first when
    /// the table is full); "too many keys" when there is none.
    fn entry(&mut self, key: &K, now_ns: u64) -> Result<&mut WindowModel, KeyedRefused> {
        if !self.tracked.contains_key(key) {
            if self.tracked.len() >= self.max_keys {
                self.retain_recent(now_ns);
            }
            if self.tracked.len() >= self.max_keys {
                let latest_ns = self.earliest_empty_ns().saturating_sub(now_ns);
                return Err(KeyedRefused::TooManyKeys { latest_ns });
            }
            let (limit, window_ns) = self.shape(key);
            self.tracked
                .insert(key.clone(), WindowModel::new(limit, window_ns));
        }
        Ok(self.tracked.get_mut(key).expect("tracked above"))
    }

    /// An admission for `key` at `now_ns`, recorded when it passes.
    ///
    /// # Errors
    ///
    /// The key's window is full, or the table is.
    pub fn try_acquire(&mut self, key: &K, now_ns: u64) -> Result<(), KeyedRefused> {
        let window = self.entry(key, now_ns)?;
        window
            .try_acquire(now_ns)
            .map_err(|wait_ns| KeyedRefused::RateLimited { wait_ns })
    }

    /// What [`try_acquire`](Self::try_acquire) would answer, without tracking or
    /// recording anything.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    pub fn check(&self, key: &K, now_ns: u64) -> Result<(), KeyedRefused> {
        match self.tracked.get(key) {
            Some(window) => window
                .check(now_ns)
                .map_err(|wait_ns| KeyedRefused::RateLimited { wait_ns }),
            None => {
                let room = self.tracked.len() < self.max_keys
                    || self.tracked.values().any(|w| w.empty_from_ns() <= now_ns);
                if !room {
                    let latest_ns = self.earliest_empty_ns().saturating_sub(now_ns);
                    return Err(KeyedRefused::TooManyKeys { latest_ns });
                }
                let (limit, window_ns) = self.shape(key);
                WindowModel::new(limit, window_ns)
                    .check(now_ns)
                    .map_err(|wait_ns| KeyedRefused::RateLimited { wait_ns })
            }
        }
    }

    /// Records an admission for `key` at `now_ns` whatever the rules say, and answers
    /// what they said: for checkers that watch a limiter rather than drive it (a key
    /// refused for want of room is tracked anyway).
    ///
    /// # Errors
    ///
    /// What the rules said.
    pub fn record(&mut self, key: &K, now_ns: u64) -> Result<(), KeyedRefused> {
        let verdict = self.check(key, now_ns);
        if !self.tracked.contains_key(key) {
            let (limit, window_ns) = self.shape(key);
            self.tracked
                .insert(key.clone(), WindowModel::new(limit, window_ns));
        }
        let window = self.tracked.get_mut(key).expect("tracked above");
        let _ = window.record(now_ns);
        verdict
    }

    /// How many admissions `key` would pass at `now_ns`.
    pub fn available(&self, key: &K, now_ns: u64) -> u32 {
        match self.tracked.get(key) {
            Some(window) => window.available(now_ns),
            None => self.shape(key).0,
        }
    }

    /// Sets `key`'s override; `false` (and nothing changed) when `max_keys` other keys
    /// already have one. A tracked key whose shape changes is reshaped.
    pub fn set_limit(&mut self, key: &K, shape: Shape) -> bool {
        if !self.overrides.contains_key(key) && self.overrides.len() >= self.max_keys {
            return false;
        }
        self.overrides.insert(key.clone(), shape);
        self.conform(key);
        true
    }

    /// Clears `key`'s override; whether it had one. A tracked key whose shape changes is
    /// reshaped.
    pub fn clear_limit(&mut self, key: &K) -> bool {
        let had = self.overrides.remove(key).is_some();
        self.conform(key);
        had
    }

    /// A tracked key whose window no longer has its shape takes it, as the limiter's
    /// `Entry::reshaped` does.
    fn conform(&mut self, key: &K) {
        let shape = self.shape(key);
        if let Some(window) = self.tracked.get_mut(key) {
            if (window.limit(), window.window_ns()) != shape {
                *window = reshaped(window, shape);
            }
        }
    }
}

/// `window` in a new shape: everything it remembers, in a window with at least as much
/// room, the forgotten ones at its horizon.
pub fn reshaped(window: &WindowModel, (limit, window_ns): Shape) -> WindowModel {
    WindowModel::with_memory_and_capacity(limit, window_ns, window.capacity(), &window.remembered())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reshape_keeps_what_any_later_window_may_hold() {
        let mut window = WindowModel::new(3, 32);
        for t in [16, 40] {
            window.try_acquire(t).unwrap();
        }
        assert_eq!(window.empty_from_ns(), 72);
        // Narrowed at 40, the admission at 16 has left the 24 ns window but is still
        // within the 32 ns one the key had: it is remembered...
        let narrow = reshaped(&window, (3, 24));
        assert_eq!(narrow.recent().collect::<Vec<_>>(), [16, 40]);
        assert_eq!(narrow.available(40), 2);
        // ...so widening again counts it.
        let wide = reshaped(&narrow, (3, 32));
        assert_eq!(wide.available(40), 1);
        // Lowering the limit keeps the room, so raising it again counts both.
        let low = reshaped(&window, (1, 32));
        assert_eq!(low.available(40), 0);
        assert_eq!(reshaped(&low, (3, 32)).available(40), 1);
    }

    #[test]
    fn overrides_are_bounded_and_reshape_tracked_keys() {
        let mut keyed = KeyedModel::new((2, 10), 1);
        keyed.try_acquire(&1, 0).unwrap();
        keyed.try_acquire(&1, 1).unwrap();
        assert!(keyed.set_limit(&1, (3, 10)));
        assert!(
            !keyed.set_limit(&2, (3, 10)),
            "one override per key of room"
        );
        assert_eq!(keyed.available(&1, 2), 1);
        assert!(keyed.clear_limit(&1));
        assert_eq!(keyed.available(&1, 2), 0);
        assert_eq!(
            keyed.available(&2, 2),
            2,
            "an untracked key has its whole limit"
        );
    }

    #[test]
    fn a_watcher_records_what_the_rules_refused() {
        let mut keyed = KeyedModel::new((1, 10), usize::MAX);
        assert_eq!(keyed.record(&7, 0), Ok(()));
        assert_eq!(
            keyed.record(&7, 3),
            Err(KeyedRefused::RateLimited { wait_ns: 7 })
        );
        // Both count: the next room is a window after the second.
        assert_eq!(
            keyed.check(&7, 12),
            Err(KeyedRefused::RateLimited { wait_ns: 1 })
        );
        assert_eq!(keyed.check(&8, 12), Ok(()));
        assert_eq!(keyed.len(), 1, "check tracks nothing");
    }
}
