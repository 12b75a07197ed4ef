//! What a `tracing-subscriber` writes, kept in memory for the test to read.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// Everything a subscriber writes through it; clones share one buffer, so the test keeps
/// one and hands another to the subscriber.
///
/// ```
/// use backstop_testkit::capture::Captured;
///
/// let out = Captured::default();
/// let subscriber = tracing_subscriber::fmt()
///     .with_ansi(false)
///     .with_writer(out.clone())
///     .finish();
/// tracing::subscriber::with_default(subscriber, || tracing::info!(answer = 42, "hello"));
/// let text = out.text();
/// assert!(text.contains("INFO") && text.contains("hello answer=42"), "{text}");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far, as text.
    ///
    /// # Panics
    ///
    /// If what was written is not UTF-8 (tracing-subscriber writes UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("the subscriber writes UTF-8")
    }

    /// What was written so far.
    pub fn bytes(&self) -> Vec<u8> {
        // A test that panicked while writing left whole lines; read them anyway.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
