//! Messages: history, send, edit, delete, and the read watermark.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_proto::{EditMessage, ErrorBody, MarkRead, Message, MessagePage, SendMessage};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, saturating};
use crate::service::{AuthUser, HistoryQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Page size, 1-100 (larger values are clamped to 100) [default: 50].
    #[serde(default, deserialize_with = "saturating::i64")]
    limit: Option<i64>,
    /// Only messages with a smaller `seq` (the newest of them).
    #[serde(default, deserialize_with = "saturating::i64")]
    before: Option<i64>,
    /// Only messages with a larger `seq` (the oldest of them).
    #[serde(default, deserialize_with = "saturating::i64")]
    after: Option<i64>,
}

/// # `GET /api/conversations/{id}/messages?limit&before&after`
/// Messages in ascending `seq`. Without a cursor, the newest page.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Conversation id"), HistoryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of history", body = MessagePage),
        (status = 400, description = "Unparsable parameters", body = ErrorBody),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 422, description = "Out-of-range parameters", body = ErrorBody),
        (status = 429, description = "Too many history requests; `Retry-After` says when to retry", body = ErrorBody),
    ))]
pub async fn list_messages(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppQuery(p): AppQuery<HistoryParams>,
) -> ApiResult<Json<MessagePage>> {
    let query = HistoryQuery { limit: p.limit, before: p.before, after: p.after };
    let (messages, has_more) = app.service.list_messages(&user, &id, query).await?;
    Ok(Json(MessagePage { messages, has_more }))
}

/// # `POST /api/conversations/{id}/messages`
/// - A repeated `client_id` from the same sender answers 200 with the first message.
/// - Non-participants get 404 `not_found`, as if the conversation did not exist.
#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = SendMessage, security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = Message),
        (status = 200, description = "Stored earlier with this client_id", body = Message),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 413, description = "Content too long", body = ErrorBody),
        (status = 422, description = "Empty content or bad reply_to", body = ErrorBody),
        (status = 429, description = "Too many messages; `Retry-After` says when to retry", body = ErrorBody),
    ))]
pub async fn send_message(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<SendMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let sent = app.service.send_message(&user, &id, body).await?;
    Ok((if sent.created { StatusCode::CREATED } else { StatusCode::OK }, Json(sent.value)))
}

/// # `PATCH /api/messages/{id}`
/// Only the sender edits, and not a deleted message (409).
#[utoipa::path(patch, path = "/api/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    request_body = EditMessage, security(("bearer" = [])),
    responses(
        (status = 200, description = "Edited", body = Message),
        (status = 403, description = "Not the sender", body = ErrorBody),
        (status = 404, description = "No such message, or not yours to see", body = ErrorBody),
        (status = 409, description = "The message is deleted", body = ErrorBody),
        (status = 429, description = "Too many messages; `Retry-After` says when to retry", body = ErrorBody),
    ))]
pub async fn edit_message(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<EditMessage>,
) -> ApiResult<Json<Message>> {
    Ok(Json(app.service.edit_message(&user, &id, &body.content).await?))
}

/// # `DELETE /api/messages/{id}`
/// The sender, or a group admin. A tombstone keeps the `seq`; the content is erased.
#[utoipa::path(delete, path = "/api/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id")), security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Neither the sender nor a group admin", body = ErrorBody),
        (status = 404, description = "No such message, or not yours to see", body = ErrorBody),
    ))]
pub async fn delete_message(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<StatusCode> {
    app.service.delete_message(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// # `POST /api/conversations/{id}/read`
/// Moves the caller's read watermark forward to `seq` (never back).
#[utoipa::path(post, path = "/api/conversations/{id}/read", tag = "messages",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = MarkRead, security(("bearer" = [])),
    responses(
        (status = 204, description = "Marked read"),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 422, description = "Negative seq", body = ErrorBody),
    ))]
pub async fn mark_read(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<MarkRead>,
) -> ApiResult<StatusCode> {
    app.service.mark_read(&user, &id, body.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
