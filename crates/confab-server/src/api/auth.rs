//! Accounts: register, login, logout, `GET /api/me`, user search.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use confab_proto::{AuthResponse, Credentials, ErrorBody, Me, UserList};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::ApiResult;
use super::extract::{AppJson, AppQuery, SESSION_COOKIE};
use crate::service::AuthUser;

fn session_cookie(token: &str, max_age_secs: i64) -> HeaderMap {
    let cookie =
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}");
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    headers
}

/// # `POST /api/auth/register`
/// Creates an account and signs it in: the token in the body, and the session cookie.
#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthResponse),
        (status = 409, description = "Username taken (case-insensitively)", body = ErrorBody),
        (status = 422, description = "Username or password breaks the rules", body = ErrorBody),
    ))]
pub async fn register(
    State(app): State<AppState>,
    AppJson(body): AppJson<Credentials>,
) -> ApiResult<(StatusCode, HeaderMap, Json<AuthResponse>)> {
    let auth = app.service.register(&body.username, &body.password).await?;
    let cookie = session_cookie(&auth.token, app.service.session_ttl_secs());
    Ok((StatusCode::CREATED, cookie, Json(auth)))
}

/// # `POST /api/auth/login`
/// A wrong password and an unknown user answer the same 401, after the same time.
#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
    ))]
pub async fn login(
    State(app): State<AppState>,
    AppJson(body): AppJson<Credentials>,
) -> ApiResult<(HeaderMap, Json<AuthResponse>)> {
    let auth = app.service.login(&body.username, &body.password).await?;
    let cookie = session_cookie(&auth.token, app.service.session_ttl_secs());
    Ok((cookie, Json(auth)))
}

/// # `POST /api/auth/logout`
/// Ends the session used for this request; its token stops working at once.
#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn logout(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<(StatusCode, HeaderMap)> {
    app.service.logout(&user).await?;
    Ok((StatusCode::NO_CONTENT, session_cookie("", 0)))
}

/// # `GET /api/me`
#[utoipa::path(get, path = "/api/me", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user and their settings", body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn me(State(app): State<AppState>, user: AuthUser) -> ApiResult<Json<Me>> {
    Ok(Json(app.service.me(&user).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Username prefix, case-insensitive.
    #[serde(default)]
    q: String,
}

/// # `GET /api/users?q=prefix`
/// Up to 20 users whose name starts with `q`, ignoring case, by name.
#[utoipa::path(get, path = "/api/users", tag = "accounts", params(SearchParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Matching users", body = UserList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn search_users(
    State(app): State<AppState>,
    _user: AuthUser,
    AppQuery(params): AppQuery<SearchParams>,
) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: app.service.search_users(&params.q).await? }))
}
