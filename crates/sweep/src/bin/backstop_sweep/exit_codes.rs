//! The exit codes `backstop-sweep` returns, one per outcome a script may want to tell
//! apart.

/// Exit status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything eligible was handled (files that vanished on their own don't count).
    Clean,
    /// The sweep could not run at all for a reason other than usage (e.g. no threads).
    Fatal,
    /// Bad arguments, or a root that cannot be opened or is not a directory.
    Usage,
    /// The sweep ran, but some entries failed (see the error summary).
    Partial,
    /// The sweep ran (and removed what it removed), but its report could not be
    /// written to stdout (`/dev/full`, a closed pipe, …) or its metrics textfile could
    /// not be replaced; stderr says why.
    OutputFailed,
}

impl ExitCode {
    /// The numeric status.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Clean => 0,
            ExitCode::Fatal => 1,
            ExitCode::Usage => 2,
            ExitCode::Partial => 3,
            ExitCode::OutputFailed => 4,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}
