//! # `GET /api/events/poll?cursor=&timeout=`: the long-poll transport.
//!
//! Answers `{"events": [...], "cursor"}` at once when events are waiting after `cursor`,
//! otherwise holds the request up to `timeout` seconds (default 25, at most 55) for the first
//! one. Without a cursor it answers at once with the current cursor and no events. Pass the
//! answer's `cursor` to the next poll.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::FeedItem;
use crate::api::AppState;
use crate::api::client::Caller;
use crate::api::extract::AppQuery;
use crate::service::{AuthUser, ServiceResult};

const DEFAULT_TIMEOUT_SECS: u64 = 25;
/// Below the proxies' usual 60 s read timeout.
const MAX_TIMEOUT_SECS: u64 = 55;
/// Most events in one answer; the client polls again for the rest.
const MAX_EVENTS: usize = 500;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// The `cursor` of the previous answer (or of a `ready` frame).
    pub cursor: Option<String>,
    /// Seconds to wait for an event, 0-55 [default: 25].
    #[serde(default, deserialize_with = "crate::api::extract::saturating::u64")]
    pub timeout: Option<u64>,
}

/// # `GET /api/events/poll`
#[utoipa::path(get, path = "/api/events/poll", tag = "realtime", params(PollParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Events after the cursor", body = confab_proto::PollResponse),
        (status = 400, description = "Unparsable parameters", body = confab_proto::ErrorBody),
        (status = 401, description = "Not signed in", body = confab_proto::ErrorBody),
        (status = 429, description = "Too many connections for this user, or connection attempts from this address", body = confab_proto::ErrorBody),
    ))]
pub async fn poll(
    State(app): State<AppState>,
    caller: Caller,
    user: AuthUser,
    AppQuery(params): AppQuery<PollParams>,
) -> Response {
    match collect(&app, &user, caller.meta.ip, params).await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn collect(
    app: &AppState,
    user: &AuthUser,
    ip: std::net::IpAddr,
    params: PollParams,
) -> ServiceResult<String> {
    let wait =
        Duration::from_secs(params.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS).min(MAX_TIMEOUT_SECS));
    let Some(cursor) = params.cursor.filter(|c| !c.trim().is_empty()) else {
        let head = app.service.event_head().await?;
        return Ok(format!(r#"{{"events":[],"cursor":"{head}"}}"#));
    };
    let opened = app.service.open_feed(user, ip, Some(&cursor)).await?;
    let mut feed = opened.feed;
    let mut frames: Vec<String> = Vec::new();
    if opened.resync {
        frames.push(opened.first.as_str().to_owned());
    } else {
        while frames.len() < MAX_EVENTS {
            match feed.next_available().await? {
                Some(FeedItem::Frame { frame, .. }) => frames.push(frame.as_str().to_owned()),
                Some(FeedItem::Close(_)) | None => break,
            }
        }
        if frames.is_empty() {
            // Nothing yet: wait for the first event, then take what else arrived with it.
            if let Ok(item) = tokio::time::timeout(wait, feed.next()).await
                && let FeedItem::Frame { frame, .. } = item?
            {
                frames.push(frame.as_str().to_owned());
                while frames.len() < MAX_EVENTS {
                    match feed.next_available().await? {
                        Some(FeedItem::Frame { frame, .. }) => {
                            frames.push(frame.as_str().to_owned())
                        }
                        Some(FeedItem::Close(_)) | None => break,
                    }
                }
            }
        }
    }
    Ok(format!(r#"{{"events":[{}],"cursor":"{}"}}"#, frames.join(","), feed.cursor()))
}
