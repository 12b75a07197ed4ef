//! [`KeyBy`]: which client a request comes from, for the admission's per-client stage
//! ([`Admission::with_per_key`](backstop_core::Admission::with_per_key)).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::head::RequestHead;

/// Longest key used, in bytes: longer keys are cut to this length (at a character
/// boundary), so a client cannot make the limiter store or hash arbitrarily large keys.
/// A cut key still counts against a limit; it cannot be used to escape one.
pub const MAX_KEY_BYTES: usize = 256;

type KeyFn = dyn Fn(&RequestHead<'_>) -> Option<String> + Send + Sync;

/// How the client key is read from a request. A request without a key (no such header,
/// no peer address known) is held to the shared limits only.
#[derive(Clone)]
pub enum KeyBy {
    /// The value of a header, e.g. `x-api-key` (bytes that are not UTF-8 are replaced,
    /// so distinct values may share a key; they are never exempt).
    Header(http::HeaderName),
    /// The peer's IP address, from a [`SocketAddr`] in the request's extensions, or
    /// axum's `ConnectInfo<SocketAddr>` (with the `axum` feature, on by default; serve
    /// with `into_make_service_with_connect_info::<SocketAddr>()`).
    PeerIp,
    /// A closure.
    Fn(Arc<KeyFn>),
}

impl KeyBy {
    /// Keys by the value of header `name`.
    pub fn header(name: http::HeaderName) -> Self {
        KeyBy::Header(name)
    }

    /// Keys by a closure over the request head.
    pub fn from_fn(
        key: impl Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        KeyBy::Fn(Arc::new(key))
    }

    /// The key of the request with head `head`, if it has one, at most
    /// [`MAX_KEY_BYTES`] long. A header's key borrows from the request.
    pub fn extract<'a>(&self, head: &RequestHead<'a>) -> Option<Cow<'a, str>> {
        let key = match self {
            KeyBy::Header(name) => {
                let value = head.headers().get(name)?;
                String::from_utf8_lossy(value.as_bytes())
            }
            KeyBy::PeerIp => Cow::Owned(peer_addr(head)?.ip().to_string()),
            KeyBy::Fn(key) => Cow::Owned(key(head)?),
        };
        Some(cut(key))
    }
}

/// `key` cut to at most [`MAX_KEY_BYTES`], at a character boundary.
fn cut(key: Cow<'_, str>) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let end = (0..=MAX_KEY_BYTES)
        .rev()
        .find(|&i| key.is_char_boundary(i))
        .unwrap_or(0);
    match key {
        Cow::Borrowed(text) => Cow::Borrowed(&text[..end]),
        Cow::Owned(mut text) => {
            text.truncate(end);
            Cow::Owned(text)
        }
    }
}

fn peer_addr(head: &RequestHead<'_>) -> Option<SocketAddr> {
    if let Some(addr) = head.extensions().get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = head
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    None
}

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyBy::Header(name) => f.debug_tuple("Header").field(name).finish(),
            KeyBy::PeerIp => f.write_str("PeerIp"),
            KeyBy::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes, two per character
        let key = cut(Cow::Borrowed(&long));
        assert_eq!(key.len(), MAX_KEY_BYTES);
        let odd = format!("x{long}"); // the limit falls inside a character
        assert_eq!(cut(Cow::Owned(odd)).len(), MAX_KEY_BYTES - 1);
        assert_eq!(cut(Cow::Borrowed("short")), "short");
    }
}
