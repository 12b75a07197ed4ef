//! Tickets that cross processes: the token a detached queue place is claimed by, and
//! the errors of detaching and claiming.
//!
//! A token reads `bst1.<gate name in hex>.<32 hex digits>.<end in µs>.<n|c>`: ASCII
//! letters, digits and dots only, so it passes through JSON, URLs, shells and task
//! queues unchanged. The 128 random bits name the place's member in Redis (`d:<hex>`):
//! a token cannot be guessed from another one, so a forged token finds no place. The end
//! (on the store's clock) lets a late claim say "expired" rather than "not held"; the
//! priority lets the claimer re-assert the place under the bound it was taken under.

use std::time::Duration;

use backstop_core::jobs::Priority;

use crate::error::StoreError;

const PREFIX: &str = "bst1";

/// Why a ticket could not be detached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetachError<T> {
    /// The ticket's place is gone (its lease was lost): nothing to hand over.
    #[error("the ticket's place is gone: its lease was lost")]
    Lost,
    /// Redis failed or passed the deadline; the ticket is handed back.
    #[error("store unavailable: {1}")]
    StoreUnavailable(T, StoreError),
}

/// Why a token could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// Not a ticket token at all.
    #[error("not a backstop ticket token: {0}")]
    Malformed(String),
    /// A token of another gate (another name).
    #[error("a ticket of gate `{token_gate}`, not of `{this_gate}`")]
    OtherGate {
        /// The gate the token names.
        token_gate: String,
        /// The gate asked to claim it.
        this_gate: String,
    },
    /// Its `max_wait` passed before the claim: the place went back to the queue.
    #[error("the ticket expired {ago:?} ago; its place went back to the queue")]
    Expired {
        /// How long ago, on the store's clock.
        ago: Duration,
    },
    /// No place answers to it: claimed already, or never handed out (a forged token).
    #[error("no queue place answers to this ticket: claimed already, or never handed out")]
    NotHeld,
    /// Redis failed or passed the deadline; nothing was claimed (or a claim that ran
    /// will be given back when its lease ends).
    #[error("store unavailable: {0}")]
    StoreUnavailable(StoreError),
}

/// A parsed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TicketToken {
    pub(crate) gate: String,
    /// The 32 hex digits.
    id: String,
    pub(crate) until_us: u64,
    pub(crate) priority: Priority,
}

impl TicketToken {
    pub(crate) fn new(gate: &str, member: &str, until_us: u64, priority: Priority) -> Self {
        TicketToken {
            gate: gate.to_owned(),
            id: member.trim_start_matches("d:").to_owned(),
            until_us,
            priority,
        }
    }

    /// The member of the queue's sorted set it names.
    pub(crate) fn member(&self) -> String {
        format!("d:{}", self.id)
    }

    pub(crate) fn encode(&self) -> String {
        let gate: String = self.gate.bytes().map(|b| format!("{b:02x}")).collect();
        let priority = match self.priority {
            Priority::Normal => 'n',
            Priority::Critical => 'c',
        };
        format!("{PREFIX}.{gate}.{}.{}.{priority}", self.id, self.until_us)
    }

    pub(crate) fn parse(token: &str) -> Result<Self, ClaimError> {
        let malformed = |why: &str| ClaimError::Malformed(why.to_owned());
        if token.len() > 1024 {
            return Err(malformed("longer than 1024 bytes"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [prefix, gate, id, until, priority] = parts[..] else {
            return Err(malformed("expected 5 dot-separated parts"));
        };
        if prefix != PREFIX {
            return Err(malformed("unknown version prefix"));
        }
        let gate = decode_hex(gate)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|gate| !gate.is_empty())
            .ok_or_else(|| malformed("the gate name is not hex-encoded UTF-8"))?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("the place id is not 32 hex digits"));
        }
        let until_us = until
            .parse()
            .map_err(|_| malformed("the end is not a number of microseconds"))?;
        let priority = match priority {
            "n" => Priority::Normal,
            "c" => Priority::Critical,
            _ => return Err(malformed("the priority is not `n` or `c`")),
        };
        Ok(TicketToken {
            gate,
            id: id.to_ascii_lowercase(),
            until_us,
            priority,
        })
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// A fresh, unguessable member id for a detached place: `d:` and 128 random bits in
/// hex, from the operating system's generator.
pub(crate) fn new_member() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator does not fail on Linux after boot; should it, the time and a
    // counter still give a unique (if guessable) id rather than a panic.
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static FALLBACK: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        // Relaxed: uniqueness only.
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed);
        bytes[8..].copy_from_slice(&n.to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("d:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_stays_ascii() {
        let member = new_member();
        let token = TicketToken::new(
            "vidéo.v2",
            &member,
            1_700_000_000_123_456,
            Priority::Critical,
        );
        let text = token.encode();
        assert!(
            text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "{text}"
        );
        let back = TicketToken::parse(&text).unwrap();
        assert_eq!(back, token);
        assert_eq!(back.member(), member);
        assert_ne!(new_member(), member, "fresh ids differ");
    }

    #[test]
    fn bad_tokens_are_malformed_not_panics() {
        let good = TicketToken::new("api", &new_member(), 5, Priority::Normal).encode();
        let cases = [
            String::new(),
            "bst1".into(),
            good.replace("bst1", "bst2"),
            good.replace(".n", ".x"),
            good.replacen(".5.", ".five.", 1),
            format!("bst1.zz.{}.5.n", "0".repeat(32)),
            format!("bst1.617069.{}.5.n", "0".repeat(31)),
            format!("bst1.ff.{}.5.n", "0".repeat(32)),
            "é".repeat(600),
        ];
        for case in cases {
            assert!(
                matches!(TicketToken::parse(&case), Err(ClaimError::Malformed(_))),
                "{case:?}"
            );
        }
    }
}
