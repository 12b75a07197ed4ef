//! [`TraceWriter`]: events written as trace lines.

use std::io::{self, Write};

use super::event::Event;

/// Writes events as trace lines.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
}

impl<W: Write> TraceWriter<W> {
    /// A writer into `out` (buffer it).
    pub fn new(out: W) -> Self {
        TraceWriter { out }
    }

    /// Writes one event; `key_name` names interned keys.
    pub fn write(&mut self, event: &Event, key_name: impl Fn(u32) -> String) -> io::Result<()> {
        match *event {
            Event::Request(r) => {
                write!(
                    self.out,
                    "{{\"t_us\":{},\"type\":\"request\",\"id\":{}",
                    r.t_us, r.id
                )?;
                if let Some(k) = r.key {
                    let name = serde_json::to_string(&key_name(k)).map_err(io::Error::other)?;
                    write!(self.out, ",\"key\":{name}")?;
                }
                writeln!(
                    self.out,
                    ",\"job_us\":{},\"files\":{},\"bytes\":{}}}",
                    r.job_us, r.files, r.bytes
                )
            }
            Event::Memory {
                t_us,
                available_bytes,
            } => writeln!(
                self.out,
                "{{\"t_us\":{t_us},\"type\":\"memory\",\"available_bytes\":{available_bytes}}}"
            ),
            Event::Disk { t_us, used_bytes } => writeln!(
                self.out,
                "{{\"t_us\":{t_us},\"type\":\"disk\",\"used_bytes\":{used_bytes}}}"
            ),
        }
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
