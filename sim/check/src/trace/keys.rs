//! What a reader remembers of a trace: the request ids it saw (to reject duplicates) and
//! the client keys, interned to dense indices.

use std::collections::{BTreeSet, HashMap};

use super::event::MAX_KEYS;

/// Request ids below this are remembered in a bitmap (1 bit each, at most 32 MiB);
/// larger ids in an ordered set.
const DENSE_ID_LIMIT: u64 = 1 << 28;

/// Remembers request ids to reject duplicates: a bitmap for small ids, a set beyond.
#[derive(Debug, Default)]
pub struct IdSet {
    dense: Vec<u64>,
    sparse: BTreeSet<u64>,
}

impl IdSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id`; false if it was already there.
    pub fn insert(&mut self, id: u64) -> bool {
        if id < DENSE_ID_LIMIT {
            let word = (id / 64) as usize;
            if word >= self.dense.len() {
                // Grow geometrically so sequential ids cost amortised O(1).
                let new_len = (word + 1)
                    .max(self.dense.len() * 2)
                    .min((DENSE_ID_LIMIT / 64) as usize);
                self.dense.resize(new_len, 0);
            }
            let bit = 1u64 << (id % 64);
            let seen = self.dense[word] & bit != 0;
            self.dense[word] |= bit;
            !seen
        } else {
            self.sparse.insert(id)
        }
    }
}

/// Client keys seen in a trace, interned to dense indices.
#[derive(Debug, Default)]
pub struct KeyTable {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl KeyTable {
    /// The key's index, adding it if new; `None` when the table is full.
    pub fn intern(&mut self, key: &str) -> Option<u32> {
        if let Some(&i) = self.index.get(key) {
            return Some(i);
        }
        if self.names.len() >= MAX_KEYS {
            return None;
        }
        let i = self.names.len() as u32;
        self.index.insert(key.to_owned(), i);
        self.names.push(key.to_owned());
        Some(i)
    }

    /// The name of key `i`.
    pub fn name(&self, i: u32) -> Option<&str> {
        self.names.get(i as usize).map(String::as_str)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no key was seen.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
