//! Peers that backstop is measured against, kept beside the benchmarks.
