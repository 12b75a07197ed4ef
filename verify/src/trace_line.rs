//! `trace_line`: the simulator's trace reader ([`TraceReader`]) on arbitrary bytes.
//!
//! - It never panics, whatever the bytes, and memory stays bounded (lines are capped
//!   at [`MAX_LINE_BYTES`]).
//! - A rejected line is reported with its 1-based line number, no later than the lines
//!   read.
//! - What it accepts round-trips: the events written back with [`TraceWriter`] (keys by
//!   name) and read again are the same events with the same key names, and accepted
//!   times never go backwards.

use backstop_sim_check::trace::{Event, MAX_LINE_BYTES, TraceReader, TraceWriter};

use crate::{Violation, ensure};

/// Most events read from one input (a limit on run time per input).
pub const MAX_EVENTS: usize = 4096;

/// Events with their keys resolved to names, so two readers' tables compare.
type Named = Vec<(Event, Option<String>)>;

/// Reads `bytes` to the end or the first error.
fn read_all(bytes: &[u8]) -> Result<(Named, Option<(u64, u64)>), Violation> {
    let mut reader = TraceReader::new(bytes);
    let mut events = Vec::new();
    let mut last_t_us = 0;
    while events.len() < MAX_EVENTS {
        match reader.next_event() {
            Ok(Some(event)) => {
                ensure!(
                    event.t_us() >= last_t_us,
                    "accepted t_us {} after {last_t_us}",
                    event.t_us()
                );
                last_t_us = event.t_us();
                let key = match event {
                    Event::Request(r) => match r.key {
                        Some(k) => Some(
                            reader
                                .keys()
                                .name(k)
                                .ok_or_else(|| {
                                    Violation::new(format!("key index {k} has no name"))
                                })?
                                .to_owned(),
                        ),
                        None => None,
                    },
                    _ => None,
                };
                events.push((event, key));
            }
            Ok(None) => return Ok((events, None)),
            Err(e) => {
                let line = e
                    .line()
                    .ok_or_else(|| Violation::new(format!("an in-memory read failed: {e}")))?;
                return Ok((events, Some((line, reader.lines_read()))));
            }
        }
    }
    Ok((events, None))
}

/// The `trace_line` check.
///
/// # Errors
///
/// A [`Violation`] for a badly numbered error or an accepted event that does not
/// round-trip.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let (events, error) = read_all(data)?;
    if let Some((line, lines_read)) = error {
        ensure!(
            line >= 1 && line <= lines_read,
            "error on line {line} after reading {lines_read} lines"
        );
    }
    let mut written = Vec::new();
    let mut writer = TraceWriter::new(&mut written);
    for (event, key) in &events {
        let name = key.clone().unwrap_or_default();
        writer
            .write(event, |_| name.clone())
            .map_err(|e| Violation::new(format!("writing {event:?}: {e}")))?;
    }
    writer
        .finish()
        .map_err(|e| Violation::new(format!("flushing: {e}")))?;
    let (again, error) = read_all(&written)?;
    ensure!(
        error.is_none(),
        "written events do not read back (line {:?}):\n{}",
        error,
        String::from_utf8_lossy(&written)
    );
    let strip = |named: &Named| -> Vec<(Event, Option<String>)> {
        named
            .iter()
            .map(|(event, key)| {
                let event = match *event {
                    // Key indices belong to each reader's table; the names must match.
                    Event::Request(mut r) => {
                        r.key = None;
                        Event::Request(r)
                    }
                    other => other,
                };
                (event, key.clone())
            })
            .collect()
    };
    ensure!(
        strip(&again) == strip(&events),
        "round trip changed the events:\n{}",
        String::from_utf8_lossy(&written)
    );
    let longest = written
        .split(|&b| b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    ensure!(
        longest <= MAX_LINE_BYTES,
        "a written line is {longest} bytes, above the reader's limit"
    );
    Ok(())
}
