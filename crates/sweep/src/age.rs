//! Which timestamp decides an entry's age, and the cutoff it is compared with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::Stat;

/// Which of an entry's timestamps its age is measured from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgeBy {
    /// The modification time, as the original `/tmp/makevideo` cleanup did. This is the
    /// one to use when ages are set with `filetime` (as the simulator does).
    #[default]
    Mtime,
    /// The newest of access, modification and change time, as `systemd-tmpfiles` does:
    /// a file that was merely read recently is kept.
    Newest,
}

impl AgeBy {
    /// The entry's age time in nanoseconds since the Unix epoch (negative before it).
    #[allow(clippy::useless_conversion)] // `st_mtime`'s type differs between targets
    pub(crate) fn time_ns(self, stat: &Stat) -> i128 {
        let mtime = ns(i64::from(stat.st_mtime), stat.st_mtime_nsec);
        match self {
            AgeBy::Mtime => mtime,
            AgeBy::Newest => {
                let atime = ns(i64::from(stat.st_atime), stat.st_atime_nsec);
                let ctime = ns(i64::from(stat.st_ctime), stat.st_ctime_nsec);
                mtime.max(atime).max(ctime)
            }
        }
    }
}

#[allow(clippy::useless_conversion)] // the nsec field's type differs between targets
fn ns(secs: i64, nsec: impl TryInto<i64>) -> i128 {
    let nsec = nsec.try_into().unwrap_or(0);
    i128::from(secs) * 1_000_000_000 + i128::from(nsec)
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn system_time_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// The inverse of [`system_time_ns`], saturating at the ends of `SystemTime`'s range.
pub(crate) fn ns_to_system_time(t_ns: i128) -> SystemTime {
    let magnitude = t_ns.unsigned_abs();
    let secs = u64::try_from(magnitude / 1_000_000_000).unwrap_or(u64::MAX);
    let d = Duration::new(secs, (magnitude % 1_000_000_000) as u32);
    let t = if t_ns >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// "Old" means strictly older than `older_than` at `now`: an entry whose age time is
/// before `now - older_than`. A time in the future is never old.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutoff {
    /// Entries with an age time strictly below this are old.
    pub before_ns: i128,
    pub age_by: AgeBy,
}

impl Cutoff {
    pub fn new(now: SystemTime, older_than: Duration, age_by: AgeBy) -> Cutoff {
        Cutoff {
            before_ns: system_time_ns(now) - older_than.as_nanos() as i128,
            age_by,
        }
    }

    /// Everything is old: used by workspace purges.
    pub fn everything() -> Cutoff {
        Cutoff {
            before_ns: i128::MAX,
            age_by: AgeBy::Mtime,
        }
    }

    pub fn is_old(&self, stat: &Stat) -> bool {
        self.age_by.time_ns(stat) < self.before_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_round_trips_before_and_after_the_epoch() {
        for t_ns in [0i128, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_001] {
            assert_eq!(system_time_ns(ns_to_system_time(t_ns)), t_ns);
        }
    }
}
