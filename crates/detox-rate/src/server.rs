//! `detox rate serve`: the rating page and its small JSON API, over the ratings database.
//!
//! | route | what |
//! |---|---|
//! | `GET /r/{token}` | the page (one self-contained HTML file; 403 for an unknown token) |
//! | `GET /api/{token}/state` | the rater's items in their own order, their current answers, the scale |
//! | `POST /api/{token}/rate` | `{"item", "answer", "submission"}`: stored and committed before the answer |
//! | `POST /api/{token}/undo` | `{"submission"}`: takes back the rater's latest standing answer |
//!
//! A `submission` id makes a resend harmless: the same id with the same content is
//! acknowledged again and stored once; with other content it is a 409. No route shows a
//! method, a source or a score.

use crate::db::{Answer, Db, Item, Rater, Refused, Stored};
use crate::items::order_for;
use crate::RateError;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The page.
pub const PAGE: &str = include_str!("page.html");

/// Largest request body, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// The server's state.
pub struct RateServer {
    db: Db,
    items: Vec<Item>,
}

impl RateServer {
    /// Over an open database holding its items.
    pub fn new(db: Db) -> Result<Arc<Self>, RateError> {
        let items = db.items()?;
        if items.is_empty() {
            return Err(RateError::Input(
                "the database holds no items: give --runs or --items FILE".into(),
            ));
        }
        Ok(Arc::new(Self { db, items }))
    }
}

/// A failure as a JSON answer.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<RateError> for ApiError {
    fn from(e: RateError) -> Self {
        tracing::error!("{e}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        RateError::from(e).into()
    }
}

fn rater_of(s: &RateServer, token: &str) -> Result<Rater, ApiError> {
    s.db.rater(token)?.ok_or_else(|| {
        ApiError(
            StatusCode::FORBIDDEN,
            "unknown rater link: ask for a link made with `detox rate add-rater`".into(),
        )
    })
}

async fn page(State(s): State<Arc<RateServer>>, Path(token): Path<String>) -> Response {
    match s.db.rater(&token) {
        Ok(Some(_)) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"),
            ],
            Html(PAGE),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::FORBIDDEN,
            Html("<!doctype html><html lang=\"en\"><title>detox rate</title><h1>Unknown link</h1><p>This rating link is not known. Ask for a link made with <code>detox rate add-rater</code>.</p></html>"),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn rater_state(
    State(s): State<Arc<RateServer>>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rater = rater_of(&s, &token)?;
    let answers = s.db.answers_of(rater.id)?;
    let by_id: HashMap<i64, &Item> = s.items.iter().map(|i| (i.id, i)).collect();
    let ids: Vec<i64> = s.items.iter().map(|i| i.id).collect();
    let items: Vec<Value> = order_for(&ids, rater.id)
        .into_iter()
        .filter_map(|id| by_id.get(&id))
        .map(|it| json!({"id": it.id, "context": it.context, "text": it.text}))
        .collect();
    let answers: serde_json::Map<String, Value> = answers
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.name().into())))
        .collect();
    let scale: Vec<&str> = Answer::ALL.iter().map(|a| a.name()).collect();
    Ok(Json(json!({
        "rater": rater.name,
        "items": items,
        "answers": answers,
        "scale": scale,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    item: i64,
    answer: String,
    submission: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UndoBody {
    submission: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e} (expected {shape})")))
}

fn check_submission(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 100 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`submission` must be a non-empty id of at most 100 characters".into(),
        ));
    }
    Ok(())
}

fn refused(r: Refused) -> ApiError {
    let code = match r {
        Refused::UnknownItem(_) => StatusCode::NOT_FOUND,
        Refused::Conflict(_) | Refused::NothingToUndo => StatusCode::CONFLICT,
    };
    ApiError(code, r.to_string())
}

async fn rate(
    State(s): State<Arc<RateServer>>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let rater = rater_of(&s, &token)?;
    let b: RateBody = parse(
        &body,
        r#"{"item": id, "answer": one of the scale, "submission": id}"#,
    )?;
    check_submission(&b.submission)?;
    let answer = Answer::parse(&b.answer).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not on the scale ({})",
                b.answer,
                Answer::ALL.map(|a| a.name()).join(", ")
            ),
        )
    })?;
    let s2 = s.clone();
    let stored =
        tokio::task::spawn_blocking(move || s2.db.rate(rater.id, b.item, answer, &b.submission))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
            .map_err(refused)?;
    let rated = s.db.answers_of(rater.id)?.len();
    Ok(Json(
        json!({"stored": stored == Stored::New, "rated": rated, "total": s.items.len()}),
    ))
}

async fn undo(
    State(s): State<Arc<RateServer>>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let rater = rater_of(&s, &token)?;
    let b: UndoBody = parse(&body, r#"{"submission": id}"#)?;
    check_submission(&b.submission)?;
    let s2 = s.clone();
    let (item, stored) = tokio::task::spawn_blocking(move || s2.db.undo(rater.id, &b.submission))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
        .map_err(refused)?;
    let rated = s.db.answers_of(rater.id)?.len();
    Ok(Json(
        json!({"item": item, "stored": stored == Stored::New, "rated": rated, "total": s.items.len()}),
    ))
}

async fn index() -> Html<&'static str> {
    Html("<!doctype html><html lang=\"en\"><title>detox rate</title><h1>detox rate</h1><p>Open the personal link you were given.</p></html>")
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such page".into())
}

/// The router.
pub fn router(state: Arc<RateServer>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/r/{token}", get(page))
        .route("/api/{token}/state", get(rater_state))
        .route("/api/{token}/rate", post(rate))
        .route("/api/{token}/undo", post(undo))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves until `shutdown` completes (requests in flight finish; every acknowledged rating is
/// already committed).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<RateServer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
