//! The accept loop: hyper's HTTP/1 connections within the `[serve]` bounds (a
//! header-read timeout, a cap on open connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::Semaphore;

use crate::config::Serving;

/// Serves `router` on `listener` until the runtime stops, within `serving`'s bounds: a
/// connection is closed when its client takes longer than the header-read timeout to
/// send a request head (a new one, or the next one on a kept-alive connection), and at most
/// `max_connections` are open (the rest wait in the listen backlog). Every such close,
/// reaching the cap and every failed accept are logged to stderr.
///
/// # Errors
///
/// None while the runtime runs: accept errors (out of file descriptors, most likely) are
/// logged and retried after a pause.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    serving: Serving,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(serving.max_connections));
    loop {
        // Taken before accepting: at the cap, clients wait in the kernel's backlog and
        // hold no descriptor of ours.
        let place = match Arc::clone(&open).try_acquire_owned() {
            Ok(place) => place,
            Err(_) => {
                tracing::warn!(
                    max_connections = serving.max_connections,
                    "{} connections open, the most allowed; new ones wait",
                    serving.max_connections
                );
                Arc::clone(&open)
                    .acquire_owned()
                    .await
                    .map_err(std::io::Error::other)?
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, most likely: open connections close within the
                // timeouts, so try again shortly rather than spin.
                tracing::warn!(%err, "accept failed; retrying in {ACCEPT_RETRY:?}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            serving.clone(),
            place,
        ));
    }
}

/// How long the accept loop waits after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// One connection, until it ends, fails or breaks a bound; `_place` is its place among
/// the `max_connections`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    serving: Serving,
    _place: tokio::sync::OwnedSemaphorePermit,
) {
    let header_read_timeout = serving.header_read_timeout;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        // What `KeyBy::PeerIp` and axum's `ConnectInfo` extractor read.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        tower::ServiceExt::oneshot(router.clone(), request)
    });
    // hyper's header-read timer runs whenever the connection waits for a request head:
    // on a new connection and between kept-alive requests. A request whose body the
    // handler leaves unread is not waited for: hyper closes the connection after the
    // response instead.
    let ended = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
    match ended {
        Ok(()) => {}
        Err(err) if err.is_timeout() => tracing::info!(
            %peer,
            "closed the connection: no request head within {header_read_timeout:?} \
             (half-sent, or idle after a request)"
        ),
        Err(err) => tracing::info!(%peer, %err, "connection failed"),
    }
}
