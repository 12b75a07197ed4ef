//! Completion scripts and the man page, generated from the same clap definitions as the
//! command line itself, so they cannot drift from it. The copies shipped in
//! `crates/sweep/dist/` are checked against these by `tests/dist.rs`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::Args;

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut command = Args::command();
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, so the generator's internal `expect` cannot fire.
    clap_complete::generate(shell, &mut command, "backstop-sweep", &mut out);
    out
}

/// The man page, as roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Args::command()).render(&mut out)?;
    Ok(out)
}
