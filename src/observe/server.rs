//! The small HTTP server: `/metrics` (Prometheus text), `/healthz` (the process
//! runs its pipeline), `/readyz` (watching, every network with a fresh head,
//! every enforce executor able to act: key loaded, balance above its reserve, an
//! endpoint answering).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Telemetry;

/// Binds `listen` and serves until `stop` fires. Returns the address bound
/// (port 0 picks one) and the server task.
pub async fn serve(
    listen: SocketAddr,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(telemetry);
    let handle = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(target: "guardian::observe", error = %e, "the metrics server stopped");
        }
    });
    Ok((bound, handle))
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.encode(),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// 200 while watching with fresh heads; the body also lists each policy
/// still warming up (blind until a block), which does not make it 503: the
/// other policies are watching.
async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    // Policies whose metric no endpoint answered at the latest block, and
    // policies whose windows are not full yet: said, not failed on.
    let mut detail: String = t.no_data().iter().map(|l| format!("{l}\n")).collect();
    for line in t.blind_policies() {
        detail.push_str(&line);
        detail.push('\n');
    }
    match t.readiness() {
        Ok(()) => (StatusCode::OK, format!("ready\n{detail}")),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n{detail}"),
        ),
    }
}
