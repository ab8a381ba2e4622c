//! Conversations and their members.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_proto::{
    AddParticipants, Conversation, ConversationList, CreateConversation, ErrorBody,
    UpdateConversation,
};

use super::AppState;
use super::error::ApiResult;
use super::extract::{AppJson, AppPath};
use crate::service::AuthUser;

/// # `GET /api/conversations`
/// The caller's conversations, most recent activity first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", security(("bearer" = [])),
    responses(
        (status = 200, description = "My conversations", body = ConversationList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_conversations(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<ConversationList>> {
    Ok(Json(ConversationList { conversations: app.service.list_conversations(&user).await? }))
}

/// # `POST /api/conversations`
/// - A direct conversation that already exists for the pair answers 200 with it.
/// - Unknown participants, a direct conversation without exactly one other person, or a
///   group without a title answer 422.
#[utoipa::path(post, path = "/api/conversations", tag = "conversations",
    request_body = CreateConversation, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Conversation),
        (status = 200, description = "The existing direct conversation", body = Conversation),
        (status = 422, description = "Invalid participants or title", body = ErrorBody),
    ))]
pub async fn create_conversation(
    State(app): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<CreateConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    let made = app.service.create_conversation(&user, body).await?;
    Ok((if made.created { StatusCode::CREATED } else { StatusCode::OK }, Json(made.value)))
}

/// # `GET /api/conversations/{id}`
/// Non-participants get 404, as if the conversation did not exist.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation", body = Conversation),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
    ))]
pub async fn get_conversation(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.service.get_conversation(&user, &id).await?))
}

/// # `PATCH /api/conversations/{id}`
/// Renames a group (any member).
#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = UpdateConversation, security(("bearer" = [])),
    responses(
        (status = 200, description = "Renamed", body = Conversation),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 422, description = "Invalid title, or a direct conversation", body = ErrorBody),
    ))]
pub async fn rename_conversation(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<UpdateConversation>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.service.rename_conversation(&user, &id, &body.title).await?))
}

/// # `POST /api/conversations/{id}/participants`
/// Group admins add members; people already in the group are skipped.
#[utoipa::path(post, path = "/api/conversations/{id}/participants", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = AddParticipants, security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation with its new members", body = Conversation),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 422, description = "Unknown users, too many members, or a direct conversation", body = ErrorBody),
    ))]
pub async fn add_participants(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<AddParticipants>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(app.service.add_participants(&user, &id, body.user_ids).await?))
}

/// # `DELETE /api/conversations/{id}/participants/{user_id}`
/// An admin removes a member; anyone may remove themself (that is leaving).
#[utoipa::path(delete, path = "/api/conversations/{id}/participants/{user_id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"),
           ("user_id" = String, Path, description = "The member to remove")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such conversation or member", body = ErrorBody),
    ))]
pub async fn remove_participant(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath((id, target)): AppPath<(String, String)>,
) -> ApiResult<StatusCode> {
    app.service.remove_participant(&user, &id, &target).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// # `POST /api/conversations/{id}/leave`
/// If the last admin leaves, the longest-standing member becomes admin.
#[utoipa::path(post, path = "/api/conversations/{id}/leave", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), security(("bearer" = [])),
    responses(
        (status = 204, description = "Left"),
        (status = 404, description = "No such conversation, or not yours", body = ErrorBody),
        (status = 422, description = "A direct conversation cannot be left", body = ErrorBody),
    ))]
pub async fn leave_conversation(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<StatusCode> {
    app.service.leave_conversation(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
