//! Accounts: register, login, logout, `GET /api/me`, user search, sessions and password.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use confab_proto::{
    AuthResponse, ChangePassword, Credentials, ErrorBody, Me, RevokedSessions, SessionList,
    UserList,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::client::Caller;
use super::error::ApiResult;
use super::extract::{AppJson, AppPath, AppQuery, CSRF_COOKIE, SESSION_COOKIE};
use crate::service::AuthUser;

/// The session cookie (HttpOnly: scripts never see the token) and the CSRF cookie (readable by
/// the web client, which sends it back as `X-CSRF-Token`). `Secure` when the client came over
/// HTTPS. An empty token with age 0 clears both.
fn session_cookies(token: &str, csrf: &str, max_age_secs: i64, https: bool) -> HeaderMap {
    let secure = if https { "; Secure" } else { "" };
    let mut headers = HeaderMap::new();
    for cookie in [
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age_secs}{secure}"),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers
}

/// # `POST /api/auth/register`
/// Creates an account and signs it in: the token in the body, and the session cookie.
#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthResponse),
        (status = 409, description = "Username taken, or too similar to a taken one", body = ErrorBody),
        (status = 422, description = "Username or password breaks the rules", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    ))]
pub async fn register(
    State(app): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<Credentials>,
) -> ApiResult<(StatusCode, HeaderMap, Json<AuthResponse>)> {
    let auth = app.service.register(&body.username, &body.password, &caller.meta).await?;
    let ttl = app.service.session_ttl_secs();
    let cookies = session_cookies(&auth.token, &auth.csrf_token, ttl, caller.https);
    Ok((StatusCode::CREATED, cookies, Json(auth)))
}

/// # `POST /api/auth/login`
/// A wrong password and an unknown user answer the same 401, after the same time.
#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or too many wrong passwords for this account", body = ErrorBody),
    ))]
pub async fn login(
    State(app): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<Credentials>,
) -> ApiResult<(HeaderMap, Json<AuthResponse>)> {
    let auth = app.service.login(&body.username, &body.password, &caller.meta).await?;
    let ttl = app.service.session_ttl_secs();
    let cookies = session_cookies(&auth.token, &auth.csrf_token, ttl, caller.https);
    Ok((cookies, Json(auth)))
}

/// # `POST /api/auth/logout`
/// Ends the session used for this request; its token stops working at once.
#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Cookie-authenticated without the CSRF token", body = ErrorBody),
    ))]
pub async fn logout(
    State(app): State<AppState>,
    caller: Caller,
    user: AuthUser,
) -> ApiResult<(StatusCode, HeaderMap)> {
    app.service.logout(&user).await?;
    Ok((StatusCode::NO_CONTENT, session_cookies("", "", 0, caller.https)))
}

/// # `GET /api/sessions`
/// The caller's signed-in sessions (browsers and programs), most recently used first.
#[utoipa::path(get, path = "/api/sessions", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's sessions", body = SessionList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_sessions(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<SessionList>> {
    Ok(Json(SessionList { sessions: app.service.sessions(&user).await? }))
}

/// # `DELETE /api/sessions`
/// Signs out every session of the caller except the one making this request.
#[utoipa::path(delete, path = "/api/sessions", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "How many sessions were signed out", body = RevokedSessions),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Cookie-authenticated without the CSRF token", body = ErrorBody),
    ))]
pub async fn revoke_other_sessions(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<RevokedSessions>> {
    Ok(Json(RevokedSessions { revoked: app.service.revoke_other_sessions(&user).await? }))
}

/// # `DELETE /api/sessions/{id}`
/// Signs out one of the caller's sessions (the current one too); its token stops working and
/// its live connections close at once.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id from `GET /api/sessions`")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Cookie-authenticated without the CSRF token", body = ErrorBody),
        (status = 404, description = "No such session of the caller", body = ErrorBody),
    ))]
pub async fn revoke_session(
    State(app): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<StatusCode> {
    app.service.revoke_session(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// # `POST /api/me/password`
/// Changes the password; every other session of the account is signed out.
#[utoipa::path(post, path = "/api/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; other sessions signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The current password is wrong, or a cookie-authenticated request without the CSRF token", body = ErrorBody),
        (status = 422, description = "The new password breaks the rules", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords", body = ErrorBody),
    ))]
pub async fn change_password(
    State(app): State<AppState>,
    user: AuthUser,
    AppJson(body): AppJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    app.service.change_password(&user, &body.current_password, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
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
        (status = 429, description = "Too many searches; `Retry-After` says when to retry", body = ErrorBody),
    ))]
pub async fn search_users(
    State(app): State<AppState>,
    user: AuthUser,
    AppQuery(params): AppQuery<SearchParams>,
) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: app.service.search_users(&user, &params.q).await? }))
}
