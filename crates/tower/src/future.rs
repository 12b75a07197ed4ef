//! [`ResponseFuture`]: the inner service's future, holding the request's queue place.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use backstop_core::jobs::QueueTicket;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::RefusalBody;
use crate::response::{Policy, RATELIMIT_POLICY};
use crate::ticket::AdmissionTicket;

/// What an admitted request's future holds on to: nothing, or the door's ticket `T`.
#[derive(Debug)]
pub(crate) enum Hold<T = QueueTicket> {
    /// Nothing: an exempt request.
    Nothing,
    /// The queue ticket itself.
    Ticket(#[allow(dead_code)] T),
    /// A ticket also put in the request's extensions, which the handler may take.
    Shared(#[allow(dead_code)] AdmissionTicket<T>),
}

/// The [`Hold`] in a response future, given back out of line from a value.
///
/// Dropped in place, a ticket's drop glue takes a pointer into the response future; the
/// compiler must then keep the whole future in memory, and moves the inner future into
/// it and the future to where it is polled with `memcpy` calls (two per request, about
/// 10 ns each on the benchmark machine: the inner future is larger than the 128 bytes
/// copied inline). Given back by value (one pointer, in a register), the future's own
/// drop is a few inline checks and both moves compile to inline copies.
pub(crate) struct Held<T>(Hold<T>);

impl<T> Held<T> {
    /// Gives the queue place back now.
    #[inline]
    fn release(&mut self) {
        match std::mem::replace(&mut self.0, Hold::Nothing) {
            Hold::Nothing => {}
            hold => release(hold),
        }
    }
}

#[inline(never)]
fn release<T>(hold: Hold<T>) {
    drop(hold);
}

impl<T> Drop for Held<T> {
    #[inline]
    fn drop(&mut self) {
        self.release();
    }
}

/// A refusal's response in a response future, dropped out of line from a value, as
/// [`Held`] is.
struct Refusal(Option<Box<Response<String>>>);

impl Drop for Refusal {
    #[inline]
    fn drop(&mut self) {
        if let Some(response) = self.0.take() {
            drop_refusal(response);
        }
    }
}

#[cold]
#[inline(never)]
fn drop_refusal(response: Box<Response<String>>) {
    drop(response);
}

pin_project! {
    /// The response future of [`AdmissionService`](crate::AdmissionService).
    ///
    /// An admitted request's queue place is held by this future: it is given back when
    /// the future completes, or when it is dropped unfinished (the client went away and
    /// the server dropped the request), so the queue count never leaks.
    ///
    /// `T` is the front door's ticket. With a door that decides at once (the in-process
    /// `Admission`) the decision is made in `call` and this future is the inner one
    /// plus the ticket; with a store-backed door it first awaits the decision (boxed).
    pub struct ResponseFuture<F, T = QueueTicket>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F, T>,
    }
}

/// The whole of a response whose decision is awaited: the decision, then the inner call.
pub(crate) type Awaited<O> = Pin<Box<dyn Future<Output = O> + Send>>;

pin_project! {
    #[project = KindProj]
    enum Kind<F, T>
    where
        F: Future,
    {
        Called {
            #[pin]
            future: F,
            hold: Held<T>,
            policy: Option<Policy>,
        },
        // A store-backed door's decision, then the inner call.
        Awaiting {
            future: Awaited<F::Output>,
        },
        // Boxed: refusals allocate anyway, and the admit path's future (moved a few
        // times per request) stays the size of the inner one plus a ticket.
        Refused {
            response: Refusal,
        },
    }
}

impl<F: Future, T> ResponseFuture<F, T> {
    #[inline]
    pub(crate) fn called(future: F, hold: Hold<T>, policy: Option<Policy>) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                hold: Held(hold),
                policy,
            },
        }
    }

    pub(crate) fn refused(response: Box<Response<String>>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Refusal(Some(response)),
            },
        }
    }

    pub(crate) fn awaiting(future: Awaited<F::Output>) -> Self {
        ResponseFuture {
            kind: Kind::Awaiting { future },
        }
    }
}

impl<F, T, B, E> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: RefusalBody,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                hold,
                policy,
            } => {
                let result = ready!(future.poll(cx));
                // The request is answered: its queue place goes back now rather than when
                // the server gets round to dropping this future.
                hold.release();
                let (mut head, body) = result?.into_parts();
                if let Some(policy) = policy.take() {
                    head.headers
                        .entry(&RATELIMIT_POLICY)
                        .or_insert_with(|| policy.default_value());
                }
                Poll::Ready(Ok(Response::from_parts(head, body)))
            }
            KindProj::Awaiting { future } => future.as_mut().poll(cx),
            KindProj::Refused { response } => {
                // Polling a finished future is a caller bug; answer it with an empty 503
                // rather than panic in a server.
                let response = response.0.take().map_or_else(
                    || {
                        let mut empty = Response::new(String::new());
                        *empty.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        empty
                    },
                    |boxed| *boxed,
                );
                Poll::Ready(Ok(response.map(B::from_problem_json)))
            }
        }
    }
}

impl<F: Future, T: std::fmt::Debug> std::fmt::Debug for ResponseFuture<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called { hold, .. } => f
                .debug_struct("ResponseFuture")
                .field("hold", &hold.0)
                .finish(),
            Kind::Refused { .. } => f.write_str("ResponseFuture::Refused"),
            Kind::Awaiting { .. } => f.write_str("ResponseFuture::Awaiting"),
        }
    }
}
