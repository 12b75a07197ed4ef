//! Parallel, symlink-race-safe cleanup of old temp files (work in progress).
