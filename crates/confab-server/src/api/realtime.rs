//! REST companions of the real-time streams: settings, presence, typing and delivery receipts
//! for clients that do not hold a WebSocket.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_proto::{ErrorBody, MarkRead, Me, Presence, SetTyping, UpdateMe};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiResult;
use super::extract::{AppJson, AppPath};
use crate::service::AuthUser;

/// # `PATCH /api/me`
/// Changes settings: `share_read_receipts: false` keeps your reads to your own devices.
#[utoipa::path(patch, path = "/api/me", tag = "accounts", request_body = UpdateMe,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account with its settings", body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn update_me(
    State(app): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<UpdateMe>,
) -> ApiResult<Json<Me>> {
    Ok(Json(app.service.update_me(&user, body).await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceList {
    pub presence: Vec<Presence>,
}

/// # `GET /api/presence`
/// Online state and last-seen time of everyone who shares a conversation with you.
#[utoipa::path(get, path = "/api/presence", tag = "realtime", security(("bearer" = [])),
    responses(
        (status = 200, description = "Your contacts' presence", body = PresenceList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_presence(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<PresenceList>> {
    Ok(Json(PresenceList { presence: app.service.list_presence(&user).await? }))
}

/// # `POST /api/conversations/{id}/typing`
/// Starts (`true`, refresh every few seconds) or stops typing; it expires after 5 s.
#[utoipa::path(post, path = "/api/conversations/{id}/typing", tag = "realtime",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = SetTyping, security(("bearer" = [])),
    responses(
        (status = 204, description = "Told"),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 429, description = "Too many typing notices; `Retry-After` says when to retry", body = ErrorBody),
    ))]
pub async fn set_typing(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<SetTyping>,
) -> ApiResult<StatusCode> {
    app.service.set_typing(&user, &id, body.typing).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// # `POST /api/conversations/{id}/delivered`
/// Acknowledges receipt up to `seq`; the sender sees a `delivered` event.
#[utoipa::path(post, path = "/api/conversations/{id}/delivered", tag = "realtime",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = MarkRead, security(("bearer" = [])),
    responses(
        (status = 204, description = "Recorded"),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 422, description = "Negative seq", body = ErrorBody),
    ))]
pub async fn mark_delivered(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<MarkRead>,
) -> ApiResult<StatusCode> {
    app.service.mark_delivered(&user, &id, body.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
