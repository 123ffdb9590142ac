//! `detox serve`: a local drop-in for Perspective's `comments:analyze` and OpenAI's
//! `/v1/moderations`, plus a native batch API, over any [`detox_core::Scorer`].
//!
//! Requests go through a bounded queue and are scored in token-budgeted batches
//! ([`batcher`]); a full queue answers 429 with `Retry-After`. Errors take each API's own
//! shape (Google's `{"error": {code, message, status, details}}` on the Perspective route,
//! OpenAI's `{"error": {message, type, param, code}}` on the moderation route), so existing
//! clients report them as they would report the real service's.

pub mod batcher;
pub mod metrics;
mod openai;
mod perspective;
pub mod text;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use batcher::{Batcher, QueueError};
use detox_core::Scorer;
use metrics::Metrics;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests that may wait for the model before new ones get 429.
    pub queue: usize,
    /// Estimated tokens scored in one model call.
    pub max_batch_tokens: usize,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Longest a request may wait for its scores.
    pub timeout: Duration,
    /// Accepted API keys (empty: no authentication).
    pub api_keys: Vec<String>,
    /// Languages the scorer supports (ISO 639-1).
    pub languages: Vec<String>,
    /// Most texts in one `/v1/score` or `/v1/moderations` request.
    pub max_texts: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            queue: 1024,
            max_batch_tokens: 8192,
            max_body: 4 << 20,
            timeout: Duration::from_secs(30),
            api_keys: Vec::new(),
            languages: vec!["en".into()],
            max_texts: 2048,
        }
    }
}

/// Shared state of the handlers.
pub struct AppState {
    scorer: Arc<dyn Scorer>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    config: ServerConfig,
}

impl AppState {
    /// Starts the batching worker (needs a Tokio runtime) and builds the state.
    pub fn new(scorer: Arc<dyn Scorer>, config: ServerConfig) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::start(
            scorer.clone(),
            config.queue,
            config.max_batch_tokens,
            metrics.clone(),
        );
        Arc::new(Self {
            scorer,
            batcher,
            metrics,
            config,
        })
    }

    /// Scores texts through the queue, with the per-request timeout.
    async fn score(&self, texts: Vec<String>) -> Result<Vec<detox_core::TextScore>, ServeError> {
        match tokio::time::timeout(self.config.timeout, self.batcher.score(texts)).await {
            Err(_) => Err(ServeError::Timeout),
            Ok(Err(QueueError::Full)) => Err(ServeError::Busy),
            Ok(Err(QueueError::Closed)) => Err(ServeError::Unavailable),
            Ok(Err(QueueError::Scorer(m))) => Err(ServeError::Internal(m)),
            Ok(Err(QueueError::Text(m))) => Err(ServeError::Upstream(m)),
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// Checks `?key=` or `Authorization: Bearer` against the configured keys.
    fn authorized(&self, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
        if self.config.api_keys.is_empty() {
            return true;
        }
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let key = query.get("key").map(String::as_str).or(bearer);
        key.is_some_and(|k| self.config.api_keys.iter().any(|a| a == k))
    }
}

/// Failures common to every route, rendered in each API's own error shape.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// 400 with a message and an API-specific error type.
    BadRequest(String, &'static str),
    /// 401.
    Unauthorized,
    /// 404.
    NotFound(String),
    /// 413.
    TooLarge(String),
    /// 429: the queue is full.
    Busy,
    /// 504: the request waited past its timeout.
    Timeout,
    /// 503: shutting down.
    Unavailable,
    /// 500.
    Internal(String),
    /// 502: the scorer's own service (a proxied remote scorer) failed on a text of the request.
    Upstream(String),
}

impl ServeError {
    fn status(&self) -> StatusCode {
        match self {
            ServeError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ServeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::Busy => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ServeError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServeError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn message(&self) -> String {
        match self {
            ServeError::BadRequest(m, _) | ServeError::NotFound(m) | ServeError::TooLarge(m) => m.clone(),
            ServeError::Unauthorized => {
                "API key not valid. Pass a key given to --api-key as ?key= or Authorization: Bearer.".into()
            }
            ServeError::Busy => "Too many requests are waiting to be scored; retry after the Retry-After delay.".into(),
            ServeError::Timeout => "The request was not scored within the server's timeout.".into(),
            ServeError::Unavailable => "The server is shutting down.".into(),
            ServeError::Internal(m) => format!("Scoring failed: {m}"),
            ServeError::Upstream(m) => format!("The scorer's service failed on a text: {m}"),
        }
    }

    fn finish(&self, body: Value) -> Response {
        let mut r = (self.status(), axum::Json(body)).into_response();
        if matches!(self, ServeError::Busy | ServeError::Unavailable) {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        r
    }

    /// Google's error shape (Perspective, native routes).
    pub(crate) fn google(&self) -> Response {
        let status = match self {
            ServeError::BadRequest(..) => "INVALID_ARGUMENT",
            ServeError::Unauthorized => "UNAUTHENTICATED",
            ServeError::NotFound(_) => "NOT_FOUND",
            ServeError::TooLarge(_) => "INVALID_ARGUMENT",
            ServeError::Busy => "RESOURCE_EXHAUSTED",
            ServeError::Timeout => "DEADLINE_EXCEEDED",
            ServeError::Unavailable => "UNAVAILABLE",
            ServeError::Internal(_) => "INTERNAL",
            ServeError::Upstream(_) => "UNAVAILABLE",
        };
        let mut details = Vec::new();
        if let ServeError::BadRequest(_, kind) = self {
            details.push(json!({
                "@type": "type.googleapis.com/google.commentanalyzer.v1alpha1.Error",
                "errorType": kind,
            }));
        }
        self.finish(json!({"error": {
            "code": self.status().as_u16(),
            "message": self.message(),
            "status": status,
            "details": details,
        }}))
    }

    /// OpenAI's error shape.
    pub(crate) fn openai(&self) -> Response {
        let (kind, code) = match self {
            ServeError::BadRequest(_, c) => ("invalid_request_error", Value::String(c.to_string())),
            ServeError::Unauthorized => (
                "invalid_request_error",
                Value::String("invalid_api_key".into()),
            ),
            ServeError::NotFound(_) => ("invalid_request_error", Value::String("not_found".into())),
            ServeError::TooLarge(_) => (
                "invalid_request_error",
                Value::String("request_too_large".into()),
            ),
            ServeError::Busy => (
                "rate_limit_error",
                Value::String("rate_limit_exceeded".into()),
            ),
            ServeError::Timeout => ("timeout", Value::Null),
            ServeError::Unavailable => ("server_error", Value::Null),
            ServeError::Internal(_) | ServeError::Upstream(_) => ("server_error", Value::Null),
        };
        self.finish(json!({"error": {
            "message": self.message(),
            "type": kind,
            "param": Value::Null,
            "code": code,
        }}))
    }
}

/// Parses a JSON body, turning syntax and type errors into a 400 with serde's message.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ServeError> {
    serde_json::from_slice(body).map_err(|e| {
        ServeError::BadRequest(
            format!("Invalid JSON payload received. {e}"),
            "INVALID_JSON",
        )
    })
}

/// The JSON routes, each rendering errors in its API's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Analyze,
    Moderations,
    Score,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Analyze => "comments:analyze",
            Route::Moderations => "moderations",
            Route::Score => "score",
        }
    }

    fn render(self, e: ServeError) -> Response {
        match self {
            Route::Moderations => e.openai(),
            Route::Analyze | Route::Score => e.google(),
        }
    }
}

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Authenticates, reads the body, runs the route and records metrics.
async fn dispatch(
    state: Arc<AppState>,
    route: Route,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let t = Instant::now();
    let result = async {
        if !state.authorized(&headers, &query) {
            return Err(ServeError::Unauthorized);
        }
        let body = body_or_error(body)?;
        match route {
            Route::Analyze => perspective::analyze(&state, &body).await,
            Route::Moderations => openai::moderations(&state, &body).await,
            Route::Score => native_score(&state, &body).await,
        }
    }
    .await;
    let response = match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => route.render(e),
    };
    state.metrics.observe_request(
        route.name(),
        response.status().as_u16(),
        t.elapsed().as_secs_f64(),
    );
    response
}

async fn analyze(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, Route::Analyze, query, headers, body).await
}

async fn moderations(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, Route::Moderations, query, headers, body).await
}

async fn score(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(state, Route::Score, query, headers, body).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreRequest {
    texts: Vec<String>,
    #[serde(default)]
    attributes: Option<Vec<String>>,
}

/// `POST /v1/score`: many texts, chosen attributes, detox's own shape.
async fn native_score(s: &AppState, body: &Bytes) -> Result<Value, ServeError> {
    let req: ScoreRequest = parse_json(body)?;
    if req.texts.len() > s.config.max_texts {
        return Err(ServeError::BadRequest(
            format!(
                "{} texts in one request; the limit is {}",
                req.texts.len(),
                s.config.max_texts
            ),
            "TOO_MANY_TEXTS",
        ));
    }
    let info = s.scorer.info();
    let attrs: Vec<(usize, String)> = match &req.attributes {
        None => info.attributes.iter().cloned().enumerate().collect(),
        Some(list) => list
            .iter()
            .map(|a| {
                info.attribute_index(a)
                    .map(|i| (i, a.clone()))
                    .ok_or_else(|| {
                        ServeError::BadRequest(
                            format!(
                                "unknown attribute `{a}` (this scorer has: {})",
                                info.attributes.join(", ")
                            ),
                            "UNKNOWN_ATTRIBUTE",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let scores = s.score(req.texts).await?;
    let results: Vec<Value> = scores
        .iter()
        .map(|t| {
            let m: serde_json::Map<String, Value> = attrs
                .iter()
                .map(|(i, a)| (a.clone(), json!(t.values[*i])))
                .collect();
            json!({"scores": m, "tokens": t.tokens, "truncated": t.truncated})
        })
        .collect();
    Ok(json!({"model": info.id, "results": results}))
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "scorer": state.scorer.info().id,
        "attributes": state.scorer.info().attributes,
    }))
    .into_response()
}

async fn metrics_route(State(state): State<Arc<AppState>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ServeError::NotFound(format!(
        "No route for {method} {}; routes: POST /v1alpha1/comments:analyze, POST /v1/moderations, POST /v1/score, GET /healthz, GET /metrics",
        uri.path()
    ))
    .google()
}

/// The body of a request, or the error for one over the size limit.
pub(crate) fn body_or_error(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ServeError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::TooLarge(format!("Request body too large: {e}"))
        } else {
            ServeError::BadRequest(format!("Cannot read the request body: {e}"), "BAD_BODY")
        }
    })
}

/// The router: every route, the body limit and the fallback.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body;
    Router::new()
        .route("/v1alpha1/comments:analyze", post(analyze))
        .route("/v1/moderations", post(moderations))
        .route("/v1/score", post(score))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
