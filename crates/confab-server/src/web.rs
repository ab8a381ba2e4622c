//! The web client, embedded in the binary from `web/`.
//!
//! `GET /` answers `index.html` with `{{ASSETS}}` replaced by `/assets/<hash>`, where `<hash>`
//! is a digest of every embedded file. Everything under that prefix is immutable and cached
//! for a year; a new build gets a new prefix, so browsers never run stale code. ES modules
//! import each other with relative paths, which resolve under the same prefix: no build step.
//!
//! Every page answer carries a strict Content-Security-Policy: scripts and styles only from
//! this origin, no inline code, no `eval`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use crate::api::error::error_response;

#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../web"]
struct Assets;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A digest of every embedded file: the version in asset URLs.
fn build_hash() -> String {
    let mut names: Vec<_> = Assets::iter().collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in names {
        if let Some(file) = Assets::get(&name) {
            hasher.update(name.as_bytes());
            hasher.update(file.metadata.sha256_hash());
        }
    }
    hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn with_headers(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

/// Routes for the client: `/` (and `/index.html`) and `/assets/<hash>/<file>`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let hash = build_hash();
    let prefix = format!("/assets/{hash}");
    let index = Assets::get("index.html")
        .map(|f| String::from_utf8_lossy(&f.data).replace("{{ASSETS}}", &prefix))
        .unwrap_or_else(|| "<!doctype html><title>Confab</title>".to_owned());
    let page = move || {
        let index = index.clone();
        async move {
            with_headers(
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], index).into_response(),
                "no-cache",
            )
        }
    };
    let current = hash.clone();
    Router::new().route("/", get(page.clone())).route("/index.html", get(page)).route(
        "/assets/{version}/{*path}",
        get(move |Path((version, path)): Path<(String, String)>| {
            let current = current.clone();
            async move { asset(&version, &path, &current) }
        }),
    )
}

fn asset(version: &str, path: &str, current: &str) -> Response {
    let Some(file) = Assets::get(path).filter(|_| path != "index.html") else {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no such file");
    };
    let mime = file.metadata.mimetype();
    let response =
        ([(header::CONTENT_TYPE, mime.to_owned())], file.data.into_owned()).into_response();
    // An old version's URL still works (a page loaded before an upgrade), but only the
    // current one may be cached for good.
    let cache = if version == current { "public, max-age=31536000, immutable" } else { "no-cache" };
    with_headers(response, cache)
}
