//! Which timestamp decides an entry's age, and the cutoff it is compared with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsops::Meta;

/// Which of an entry's timestamps its age is measured from.
///
/// The default is the newest of the modification and change times, as
/// `systemd-tmpfiles` ages files by default: a file a job just extracted from an
/// archive keeps the archive's old mtime, but its ctime is the extraction time, so it is
/// not mistaken for an old file. The access time is left out of the default because it
/// is not updated on `noatime` mounts and reading a file should not be what keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgeBy {
    /// The newest of the modification and change times (the default).
    #[default]
    MtimeOrCtime,
    /// The modification time alone, as the original `/tmp/makevideo` cleanup and
    /// `find -mtime` do. Use it when ages are set with `filetime` (as the simulator
    /// does): setting an mtime updates the ctime to now.
    Mtime,
    /// The newest of access, modification and change time: a file that was merely read
    /// recently is kept too.
    Newest,
}

impl AgeBy {
    /// The entry's age time in nanoseconds since the Unix epoch (negative before it).
    pub(crate) fn time_ns(self, meta: &Meta) -> i128 {
        match self {
            AgeBy::MtimeOrCtime => meta.mtime_ns.max(meta.ctime_ns),
            AgeBy::Mtime => meta.mtime_ns,
            AgeBy::Newest => meta.mtime_ns.max(meta.ctime_ns).max(meta.atime_ns),
        }
    }
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

    pub fn is_old(&self, meta: &Meta) -> bool {
        self.age_by.time_ns(meta) < self.before_ns
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
