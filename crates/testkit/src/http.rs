//! One plain HTTP/1.1 request on a fresh loopback connection, for tests that talk to a
//! real server (a Prometheus, a service binary) without an HTTP client stack.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a request may wait for its answer.
const READ_BOUND: Duration = Duration::from_secs(20);

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header lines as sent, name and value (trimmed).
    pub headers: Vec<(String, String)>,
    /// The body, a chunked one put together.
    pub body: String,
}

impl Answer {
    /// The value of the first header called `name` (any case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `method path` with an empty body to `addr` (`host:port`) and reads the whole
/// answer: its status and its body (a chunked body put together).
///
/// # Errors
///
/// When the connection fails, the answer does not come within 20 s, or it has no
/// status line.
pub fn request(addr: &str, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    fetch(addr, method, path).map(|answer| (answer.status, answer.body))
}

/// As [`request`], with the headers too.
///
/// # Errors
///
/// As [`request`].
pub fn fetch(addr: &str, method: &str, path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(READ_BOUND))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {reply:?}")))?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.to_owned(), value.trim().to_owned()))
        })
        .collect();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The body of a chunked answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `text` percent-encoded for a query string.
///
/// ```
/// assert_eq!(backstop_testkit::http::url_encode("up == 1"), "up%20%3D%3D%201");
/// ```
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_put_together() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
