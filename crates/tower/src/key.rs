//! Per-client limits: which client a request comes from ([`KeyBy`]), and the limiter
//! that holds each client to its own budget ([`ClientLimit`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use backstop_core::Refusal;
use bytes::Bytes;
use http::HeaderName;

use crate::head::RequestHead;

/// Longest key kept, in bytes: longer header values are cut to this length, so a client
/// cannot make the limiter store (or hash) arbitrarily large keys. A cut key still
/// counts against a limit; it cannot be used to escape one.
pub const MAX_KEY_BYTES: usize = 256;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// The peer's IP address.
    Ip(IpAddr),
    /// A header value or a key chosen by a closure, at most [`MAX_KEY_BYTES`] long.
    Bytes(Bytes),
}

impl ClientKey {
    /// A key from arbitrary bytes, cut to [`MAX_KEY_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Self {
        ClientKey::Bytes(Bytes::copy_from_slice(
            &bytes[..bytes.len().min(MAX_KEY_BYTES)],
        ))
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        ClientKey::Ip(ip)
    }
}

impl From<&str> for ClientKey {
    fn from(text: &str) -> Self {
        ClientKey::from_bytes(text.as_bytes())
    }
}

type KeyFn = dyn Fn(&RequestHead<'_>) -> Option<ClientKey> + Send + Sync;

/// How the client key is read from a request. A request without a key (no such header,
/// no peer address known) is held only to the shared limits.
#[derive(Clone)]
pub enum KeyBy {
    /// The value of a header, e.g. `x-api-key`.
    Header(HeaderName),
    /// The peer's IP address, from a [`SocketAddr`] in the request's extensions, or
    /// axum's `ConnectInfo<SocketAddr>` (with the `axum` feature, on by default; serve
    /// with `into_make_service_with_connect_info::<SocketAddr>()`).
    PeerIp,
    /// A closure.
    Fn(Arc<KeyFn>),
}

impl KeyBy {
    /// Keys by the value of header `name`.
    pub fn header(name: HeaderName) -> Self {
        KeyBy::Header(name)
    }

    /// Keys by a closure over the request head.
    pub fn from_fn(
        key: impl Fn(&RequestHead<'_>) -> Option<ClientKey> + Send + Sync + 'static,
    ) -> Self {
        KeyBy::Fn(Arc::new(key))
    }

    /// The key of the request with head `head`, if it has one.
    pub fn extract(&self, head: &RequestHead<'_>) -> Option<ClientKey> {
        match self {
            KeyBy::Header(name) => head
                .headers()
                .get(name)
                .map(|value| ClientKey::from_bytes(value.as_bytes())),
            KeyBy::PeerIp => peer_addr(head).map(|addr| ClientKey::Ip(addr.ip())),
            KeyBy::Fn(key) => key(head),
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

/// A limiter that holds each client to its own budget, consulted before the shared
/// [`Admission`](backstop_core::Admission).
///
/// Implemented for backstop-core's `KeyedSlidingWindow<ClientKey, _>`; implement it for
/// anything else that can answer per key.
pub trait ClientLimit: Send + Sync + 'static {
    /// Admits one request from `key`, or says why not: 429 for a client over its limit,
    /// 503 when the limiter has no room for another client.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer with.
    fn check(&self, key: &ClientKey) -> Result<(), Refusal>;

    /// The quota and window `key` is held to, for the `RateLimit-Policy` header of its
    /// 429s (asked only when refusing, so it may differ per client).
    fn quota(&self, key: &ClientKey) -> (u32, Duration);
}
