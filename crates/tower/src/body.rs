//! [`RefusalBody`]: response body types the layer can write its refusals in, and
//! [`AdmissionBody`], which makes any body type one.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;

/// A response body type that can carry the layer's own answers (the short
/// `application/problem+json` body of a 429 or 503).
///
/// [`AdmissionService`](crate::AdmissionService) answers with the inner service's own
/// response type: an admitted response passes through untouched (no re-typing, which
/// would move the whole response head on every request, and behind axum no boxing into
/// axum's `Body`), and a refusal is built in that type. Implemented for the common body
/// types; for another, implement it, or wrap the inner service's bodies in
/// [`AdmissionBody`], which carries any body and a refusal.
///
/// ```
/// use backstop_tower::RefusalBody;
///
/// struct MyBody(Vec<u8>);
///
/// impl RefusalBody for MyBody {
///     fn from_problem_json(json: String) -> Self {
///         MyBody(json.into_bytes())
///     }
/// }
/// # assert_eq!(MyBody::from_problem_json("{}".into()).0, b"{}");
/// ```
pub trait RefusalBody: Sized {
    /// The body of a refusal: `json` is a short problem-details document
    /// (ASCII, a few hundred bytes at most). Called only when a request is refused.
    fn from_problem_json(json: String) -> Self;
}

impl RefusalBody for String {
    fn from_problem_json(json: String) -> Self {
        json
    }
}

impl RefusalBody for Vec<u8> {
    fn from_problem_json(json: String) -> Self {
        json.into_bytes()
    }
}

impl RefusalBody for Bytes {
    fn from_problem_json(json: String) -> Self {
        Bytes::from(json)
    }
}

impl RefusalBody for Full<Bytes> {
    fn from_problem_json(json: String) -> Self {
        Full::new(Bytes::from(json))
    }
}

impl<E: 'static> RefusalBody for BoxBody<Bytes, E> {
    fn from_problem_json(json: String) -> Self {
        Full::new(Bytes::from(json))
            .map_err(|never: Infallible| match never {})
            .boxed()
    }
}

impl<E: 'static> RefusalBody for UnsyncBoxBody<Bytes, E> {
    fn from_problem_json(json: String) -> Self {
        Full::new(Bytes::from(json))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync()
    }
}

#[cfg(feature = "axum")]
impl RefusalBody for axum::body::Body {
    fn from_problem_json(json: String) -> Self {
        axum::body::Body::from(json)
    }
}

pin_project! {
    /// Any body, or the short problem-details body of a refusal: for inner services
    /// whose body type is not a [`RefusalBody`]. Wrap their responses with
    /// [`AdmissionBody::new`] (e.g. tower's `ServiceBuilder::map_response`) below the
    /// layer.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use backstop_core::{Admission, Limits};
    /// use backstop_core::clock::ManualClock;
    /// use backstop_tower::{AdmissionBody, AdmissionLayer};
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use tower::{Service, ServiceBuilder, ServiceExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut limits = Limits::default();
    /// limits.rate.limit = 1;
    /// limits.resources.enabled = false;
    /// let admission = Arc::new(Admission::with_clock(limits, ManualClock::new())?);
    ///
    /// // `Empty` cannot carry a refusal's body; wrapped, it can.
    /// let mut service = ServiceBuilder::new()
    ///     .layer(AdmissionLayer::new(admission))
    ///     .map_response(|response: http::Response<Empty<Bytes>>| {
    ///         response.map(AdmissionBody::new)
    ///     })
    ///     .service_fn(|_request: http::Request<()>| async {
    ///         Ok::<_, Infallible>(http::Response::new(Empty::new()))
    ///     });
    ///
    /// let ok = service.ready().await?.call(http::Request::new(())).await?;
    /// assert_eq!(ok.into_body().collect().await?.to_bytes(), "");
    /// let refused = service.ready().await?.call(http::Request::new(())).await?;
    /// assert_eq!(refused.status(), 429);
    /// let body = refused.into_body().collect().await?.to_bytes();
    /// assert!(body.starts_with(b"{\"type\":\"about:blank\""));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[derive(Debug)]
    pub struct AdmissionBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Refusal { bytes: Option<Bytes> },
    }
}

impl<B> AdmissionBody<B> {
    /// Wraps an inner service's body.
    pub fn new(body: B) -> Self {
        AdmissionBody {
            kind: Kind::Inner { body },
        }
    }
}

impl<B> RefusalBody for AdmissionBody<B> {
    fn from_problem_json(json: String) -> Self {
        AdmissionBody {
            kind: Kind::Refusal {
                bytes: (!json.is_empty()).then(|| Bytes::from(json)),
            },
        }
    }
}

impl<B> Body for AdmissionBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Refusal { bytes } => {
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(B::Data::from(b)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Refusal { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Refusal { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_body_type_carries_the_problem_document() {
        async fn text<B: Body>(body: B) -> String
        where
            B::Error: std::fmt::Debug,
        {
            let bytes = body.collect().await.expect("body").to_bytes();
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        }
        let json = || String::from("{\"status\":429}");
        assert_eq!(text(String::from_problem_json(json())).await, json());
        assert_eq!(Bytes::from_problem_json(json()), json());
        assert_eq!(text(Full::<Bytes>::from_problem_json(json())).await, json());
        assert_eq!(
            text(BoxBody::<Bytes, Infallible>::from_problem_json(json())).await,
            json()
        );
        assert_eq!(
            text(UnsyncBoxBody::<Bytes, Infallible>::from_problem_json(json())).await,
            json()
        );
        assert_eq!(Vec::<u8>::from_problem_json(json()), json().into_bytes());
        #[cfg(feature = "axum")]
        assert_eq!(
            text(axum::body::Body::from_problem_json(json())).await,
            json()
        );
        let wrapped = AdmissionBody::<http_body_util::Empty<Bytes>>::from_problem_json(json());
        assert_eq!(wrapped.size_hint().exact(), Some(json().len() as u64));
        assert_eq!(text(wrapped).await, json());
        let inner = AdmissionBody::new(String::from("inner"));
        assert_eq!(text(inner).await, "inner");
    }
}
