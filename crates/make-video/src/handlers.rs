//! The routes' handlers: queue a job, the metrics text, the health of the gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backstop_tower::AdmissionTicket;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::door::Door;
use crate::exposition;
use crate::jobs::QueuedJob;

/// What every handler shares.
pub(crate) struct AppState<D: Door> {
    pub(crate) admission: Arc<D>,
    pub(crate) queued: mpsc::Sender<QueuedJob<D::Ticket>>,
    pub(crate) next_id: AtomicU64,
    /// The service's metrics: its own counters and backstop-core's collector.
    pub(crate) registry: Registry,
}

/// `POST /make-video`, behind admission: queues the job whose place the layer took.
pub(crate) async fn queue_job<D: Door>(
    State(state): State<Arc<AppState<D>>>,
    Extension(ticket): Extension<AdmissionTicket<D::Ticket>>,
) -> Response {
    let Some(ticket) = ticket.take() else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "queue place already taken",
        );
    };
    // Relaxed: a unique number is all that is needed.
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    match state.queued.try_send(QueuedJob { id, ticket }) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "job_id": id })),
        )
            .into_response(),
        // The ticket comes back in the error and is dropped: the place is freed.
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the dispatcher is gone"),
    }
}

/// `GET /metrics`: the registry's text, as OpenMetrics when the scraper asks for it, else
/// in the classic text format.
pub(crate) async fn metrics<D: Door>(
    State(state): State<Arc<AppState<D>>>,
    headers: HeaderMap,
) -> Response {
    let mut text = String::with_capacity(4096);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if exposition::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS)], text).into_response()
    } else {
        let text = exposition::to_text_format(&text);
        ([(header::CONTENT_TYPE, exposition::TEXT_FORMAT)], text).into_response()
    }
}

/// `GET /health`: the resource gate's state and why, with the queue and slot counts.
pub(crate) async fn health<D: Door>(State(state): State<Arc<AppState<D>>>) -> Response {
    let (gate, verdict) = state.admission.gate();
    let (status, reason) = match verdict {
        Ok(()) => (StatusCode::OK, None),
        Err(shortage) => (StatusCode::SERVICE_UNAVAILABLE, Some(shortage.to_string())),
    };
    let (queue_depth, jobs_active) = state.admission.depth().await;
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "gate": gate,
        "reason": reason,
        "queue_depth": queue_depth,
        "jobs_active": jobs_active,
    });
    (status, Json(body)).into_response()
}

/// An RFC 9457 problem answer.
fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}
