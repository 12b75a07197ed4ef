//! The concurrent map behind [`KeyedSlidingWindow`](super::KeyedSlidingWindow): papaya in
//! real builds, a modelled map under loom.
//!
//! The limiter needs five operations from its map: a lookup that takes no lock, an
//! insert that fails when the key is present, and a remove and a replace that happen
//! only while the key still maps to an entry the caller names (by address), plus a walk
//! over all entries. Everything else (the bound, reclaim, sealing) lives in the limiter.

#[cfg(not(loom))]
pub(super) use real::{Guard, Table};

#[cfg(loom)]
pub(super) use model::{Guard, Table};

#[cfg(not(loom))]
mod real {
    use std::borrow::Borrow;
    use std::hash::Hash;

    use papaya::{Compute, HashMap, LocalGuard, Operation};

    /// Keeps removed entries alive while a thread may still read them (papaya's epochs).
    pub(in crate::rate::keyed) type Guard<'t> = LocalGuard<'t>;

    pub(in crate::rate::keyed) struct Table<K, V> {
        map: HashMap<K, V, Hasher>,
    }

    /// Keys come from clients, so the hash is seeded per table (an attacker cannot aim
    /// keys at one bucket without the seed); foldhash's quality variant rather than
    /// SipHash, which cost a lookup about half its time.
    type Hasher = foldhash::quality::RandomState;

    impl<K: Hash + Eq + Clone + 'static, V: 'static> Table<K, V> {
        pub(in crate::rate::keyed) fn new() -> Self {
            Table {
                map: HashMap::with_hasher(Hasher::default()),
            }
        }

        #[inline]
        pub(in crate::rate::keyed) fn guard(&self) -> Guard<'_> {
            self.map.guard()
        }

        #[inline]
        pub(in crate::rate::keyed) fn get<'g, Q>(
            &self,
            key: &Q,
            guard: &'g Guard<'_>,
        ) -> Option<&'g V>
        where
            K: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.map.get(key, guard)
        }

        /// Inserts unless the key is present; `Err` holds the value already there.
        pub(in crate::rate::keyed) fn try_insert<'g>(
            &self,
            key: K,
            value: V,
            guard: &'g Guard<'_>,
        ) -> Result<&'g V, &'g V> {
            self.map
                .try_insert(key, value, guard)
                .map_err(|occupied| occupied.current)
        }

        /// Removes the key; whether it was there.
        pub(in crate::rate::keyed) fn remove<Q>(&self, key: &Q, guard: &Guard<'_>) -> bool
        where
            K: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.map.remove(key, guard).is_some()
        }

        /// Removes the key if its value is the one at `current`; whether it did.
        pub(in crate::rate::keyed) fn remove_if_is(
            &self,
            key: &K,
            current: *const V,
            guard: &Guard<'_>,
        ) -> bool {
            matches!(
                self.map
                    .remove_if(key, |_, value| std::ptr::eq(value, current), guard),
                Ok(Some(_))
            )
        }

        /// Replaces the value at `current` with one that `make` builds (perhaps more than
        /// once, if writers race); the installed value, if it did.
        pub(in crate::rate::keyed) fn replace_if_is<'g>(
            &self,
            key: K,
            current: *const V,
            mut make: impl FnMut() -> V,
            guard: &'g Guard<'_>,
        ) -> Option<&'g V> {
            let compute = |entry: Option<(&K, &V)>| match entry {
                Some((_, value)) if std::ptr::eq(value, current) => Operation::Insert(make()),
                _ => Operation::Abort(()),
            };
            match self.map.compute(key, compute, guard) {
                Compute::Updated {
                    new: (_, value), ..
                }
                | Compute::Inserted(_, value) => Some(value),
                Compute::Removed(..) | Compute::Aborted(()) => None,
            }
        }

        /// Calls `f` on every entry present throughout the walk (and perhaps on entries
        /// inserted or removed during it).
        pub(in crate::rate::keyed) fn for_each<'g>(
            &self,
            guard: &'g Guard<'_>,
            mut f: impl FnMut(&'g K, &'g V),
        ) {
            for (key, value) in self.map.iter(guard) {
                f(key, value);
            }
        }
    }
}

/// Under loom, papaya's own atomics are invisible to the model checker, so a loom mutex
/// around a `HashMap` stands in for it: each operation is one indivisible step, which is
/// what papaya promises (its operations are linearisable), and loom explores every order
/// of those steps against the limiter's own atomics. This never compiles into a real
/// build.
#[cfg(loom)]
mod model {
    use std::borrow::Borrow;
    use std::collections::HashMap;
    use std::hash::Hash;
    use std::marker::PhantomData;

    use loom::sync::Mutex;

    use crate::sync::Arc;

    pub(in crate::rate::keyed) struct Guard<'t>(PhantomData<&'t ()>);

    pub(in crate::rate::keyed) struct Table<K, V> {
        map: Mutex<HashMap<K, Arc<V>>>,
    }

    impl<K: Hash + Eq + Clone + 'static, V: 'static> Table<K, V> {
        pub(in crate::rate::keyed) fn new() -> Self {
            Table {
                map: Mutex::new(HashMap::new()),
            }
        }

        pub(in crate::rate::keyed) fn guard(&self) -> Guard<'_> {
            Guard(PhantomData)
        }

        pub(in crate::rate::keyed) fn get<Q>(&self, key: &Q, _guard: &Guard<'_>) -> Option<Arc<V>>
        where
            K: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.map.lock().unwrap().get(key).cloned()
        }

        pub(in crate::rate::keyed) fn try_insert(
            &self,
            key: K,
            value: V,
            _guard: &Guard<'_>,
        ) -> Result<Arc<V>, Arc<V>> {
            let mut map = self.map.lock().unwrap();
            if let Some(current) = map.get(&key) {
                return Err(current.clone());
            }
            let value = Arc::new(value);
            map.insert(key, value.clone());
            Ok(value)
        }

        pub(in crate::rate::keyed) fn remove<Q>(&self, key: &Q, _guard: &Guard<'_>) -> bool
        where
            K: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.map.lock().unwrap().remove(key).is_some()
        }

        pub(in crate::rate::keyed) fn remove_if_is(
            &self,
            key: &K,
            current: *const V,
            _guard: &Guard<'_>,
        ) -> bool {
            let mut map = self.map.lock().unwrap();
            match map.get(key) {
                Some(value) if std::ptr::eq(&**value, current) => {
                    map.remove(key);
                    true
                }
                _ => false,
            }
        }

        pub(in crate::rate::keyed) fn replace_if_is(
            &self,
            key: K,
            current: *const V,
            mut make: impl FnMut() -> V,
            _guard: &Guard<'_>,
        ) -> Option<Arc<V>> {
            let mut map = self.map.lock().unwrap();
            match map.get(&key) {
                Some(value) if std::ptr::eq(&**value, current) => {
                    let value = Arc::new(make());
                    map.insert(key, value.clone());
                    Some(value)
                }
                _ => None,
            }
        }

        pub(in crate::rate::keyed) fn for_each(
            &self,
            _guard: &Guard<'_>,
            mut f: impl FnMut(&K, Arc<V>),
        ) {
            let entries: Vec<(K, Arc<V>)> = self
                .map
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (key, value) in entries {
                f(&key, value);
            }
        }
    }
}
