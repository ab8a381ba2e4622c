//! HTTP: the router, its middleware and thin handlers. A handler parses the request, calls one
//! service method and maps the result to a status; no SQL and no permission logic here.
//!
//! `/api/openapi.json` is generated from the handlers' `#[utoipa::path]` annotations and the
//! proto types, by registering each route through `OpenApiRouter`.

mod auth;
pub mod client;
mod conversations;
mod doc;
pub mod error;
pub mod extract;
mod messages;
mod realtime;

use std::any::Any;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confab_proto::Health;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::csrf::CsrfLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Service;
use error::error_response;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub net: Arc<client::NetPolicy>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Confab", description = "A self-hostable private messaging server."),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Register, sign in, users"),
        (name = "conversations", description = "Direct and group conversations"),
        (name = "messages", description = "History, send, edit, delete, read state"),
        (name = "realtime", description = "WebSocket, SSE and long-poll streams; typing, presence, receipts"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// # `GET /healthz`
/// 200 once the server is ready (the database is open and migrated before it listens).
#[utoipa::path(get, path = "/healthz", tag = "accounts",
    responses((status = 200, description = "Ready", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Longest time a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The whole HTTP application. `max_body_bytes` bounds every request body; `drain` (the 503
/// while shutting down) goes inside the security headers, so that answer carries them too.
pub fn router(
    state: AppState,
    max_body_bytes: usize,
    drain: impl FnOnce(Router) -> Router,
) -> Router {
    let hsts = state.net.tls;
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me, realtime::update_me))
        .routes(routes!(auth::search_users))
        .routes(routes!(auth::list_sessions, auth::revoke_other_sessions))
        .routes(routes!(auth::revoke_session))
        .routes(routes!(auth::change_password))
        .routes(routes!(conversations::list_conversations, conversations::create_conversation))
        .routes(routes!(conversations::get_conversation, conversations::rename_conversation))
        .routes(routes!(conversations::add_participants))
        .routes(routes!(conversations::remove_participant))
        .routes(routes!(conversations::leave_conversation))
        .routes(routes!(messages::list_messages, messages::send_message))
        .routes(routes!(messages::edit_message, messages::delete_message))
        .routes(routes!(messages::mark_read))
        .routes(routes!(realtime::set_typing))
        .routes(routes!(realtime::mark_delivered))
        .routes(routes!(realtime::list_presence))
        .routes(routes!(crate::realtime::ws::websocket))
        .routes(routes!(crate::realtime::sse::events))
        .routes(routes!(crate::realtime::poll::poll))
        .split_for_parts();
    doc::add_common_responses(&mut openapi);
    let openapi_json: Arc<str> = match openapi.to_json() {
        Ok(json) => json.into(),
        Err(e) => {
            tracing::error!(error = ?e, "cannot serialize the OpenAPI document");
            "{}".into()
        }
    };

    let routes = api
        .route(
            "/api/openapi.json",
            get(move || {
                let json = openapi_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json.to_string()) }
            }),
        )
        .merge(crate::web::router())
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .with_state(state);
    drain(routes)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A body that trickles in (slowloris) fails instead of holding its connection; bodies
        // here are small JSON, sent at once.
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        // Cookie-authenticated browsers are protected from cross-site requests by Fetch Metadata
        // and Origin checks; programs sending a bearer token send neither header and pass.
        .layer(CsrfLayer::new().with_rejection_response(|_| {
            error_response(StatusCode::FORBIDDEN, "forbidden", "cross-site request refused")
        }))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // JSON and streams render nothing: forbid everything. The web client's pages set their own
        // (still strict) policy, which this does not overwrite.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            axum::http::HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(
                "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            axum::http::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            hsts.then(|| HeaderValue::from_static("max-age=31536000; includeSubDomains")),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
}

/// A panic is a bug: log it and answer the JSON 500, never a dropped connection.
fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error")
        .into_response()
}
