//! Extractors that turn malformed input into our JSON errors instead of axum's plain-text
//! rejections, and the authenticated caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::AppState;
use crate::security::session::csrf_matches;
use crate::service::{AuthUser, ServiceError};

/// The session cookie set at login for browsers.
pub const SESSION_COOKIE: &str = "confab_session";
/// The readable cookie holding the session's CSRF token, for the web client to send back.
pub const CSRF_COOKIE: &str = "confab_csrf";
/// The header a cookie-authenticated state-changing request carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A JSON body, always an object. The content type is not checked (any client may post JSON);
/// cross-site form posts are stopped by the CSRF layer. Syntax errors answer 400, wrong shapes
/// 422, bodies over the limit 413.
///
/// Any other JSON value (an array, a string, a number, `true`, `null`) is a wrong shape, even
/// where `T` would take it: serde's derived `Deserialize` also reads a struct from an array,
/// its fields by position, so `["hello"]` would otherwise be a message.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ServiceError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ServiceError::TooLarge("the request body is too large".into())
            } else {
                ServiceError::Malformed(e.body_text())
            }
        })?;
        if !starts_an_object(&bytes) {
            // Only a rare, refused body pays for this second parse, which tells a wrong shape
            // (422) from a syntax error (400).
            return Err(match serde_json::from_slice::<IgnoredAny>(&bytes) {
                Ok(_) => ServiceError::invalid("body", "must be a JSON object"),
                Err(e) => body_error(e),
            });
        }
        serde_json::from_slice(&bytes).map(AppJson).map_err(|e| {
            // serde stops at the first wrong field, before it would have seen a syntax error
            // further on (`{} x`): malformed JSON is 400 whatever its shape. Only a refused
            // body pays for the second parse.
            match (e.classify(), serde_json::from_slice::<IgnoredAny>(&bytes)) {
                (serde_json::error::Category::Data, Err(syntax)) => body_error(syntax),
                _ => body_error(e),
            }
        })
    }
}

/// Whether the first character after any JSON whitespace opens an object.
fn starts_an_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

fn body_error(e: serde_json::Error) -> ServiceError {
    match e.classify() {
        serde_json::error::Category::Data => ServiceError::invalid("body", e.to_string()),
        _ => ServiceError::Malformed(format!("body: malformed JSON: {e}")),
    }
}

/// Query parameters; unparsable ones answer 400.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| AppQuery(q))
            .map_err(|e| ServiceError::Malformed(e.body_text()))
    }
}

/// A query integer beyond its type's range is clamped to the range: `limit=99999999999999999999`
/// is a large limit, as `limit=1000` is, not a malformed one. Anything that is not an integer
/// still answers 400. For `#[serde(default, deserialize_with = "…")]` on `Option` fields.
pub mod saturating {
    use std::borrow::Cow;

    use serde::de::{Deserialize, Deserializer, Error};

    /// A signed integer, clamped to `i64`.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        let negative = text.starts_with('-');
        match integer_digits(&text, true) {
            false => Err(D::Error::custom("must be an integer")),
            true => Ok(Some(text.parse().unwrap_or(if negative { i64::MIN } else { i64::MAX }))),
        }
    }

    /// A non-negative integer, clamped to `u64`.
    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        match integer_digits(&text, false) {
            false => Err(D::Error::custom("must be a non-negative integer")),
            true => Ok(Some(text.parse().unwrap_or(u64::MAX))),
        }
    }

    /// Whether `text` is an optional sign and at least one ASCII digit (the only integers whose
    /// `parse` can then fail are those out of range).
    fn integer_digits(text: &str, signed: bool) -> bool {
        let digits = match text.as_bytes().first() {
            Some(b'+') => &text[1..],
            Some(b'-') if signed => &text[1..],
            _ => text,
        };
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }

    #[cfg(test)]
    mod tests {
        use serde::Deserialize;

        #[derive(Deserialize)]
        struct Q {
            #[serde(default, deserialize_with = "super::i64")]
            n: Option<i64>,
            #[serde(default, deserialize_with = "super::u64")]
            u: Option<u64>,
        }

        fn q(query: &str) -> Result<(Option<i64>, Option<u64>), String> {
            let uri: axum::http::Uri = format!("/?{query}").parse().expect("uri");
            axum::extract::Query::<Q>::try_from_uri(&uri)
                .map(|axum::extract::Query(q)| (q.n, q.u))
                .map_err(|e| e.body_text())
        }

        #[test]
        fn integers_out_of_range_are_clamped_and_the_rest_refused() {
            assert_eq!(q(""), Ok((None, None)));
            assert_eq!(q("n=42&u=7"), Ok((Some(42), Some(7))));
            assert_eq!(q("n=-5&u=%2B3"), Ok((Some(-5), Some(3))));
            assert_eq!(q("n=99999999999999999999"), Ok((Some(i64::MAX), None)));
            assert_eq!(q("n=-99999999999999999999"), Ok((Some(i64::MIN), None)));
            assert_eq!(q("u=99999999999999999999"), Ok((None, Some(u64::MAX))));
            for bad in ["n=", "n=-", "n=1.5", "n=1e3", "n=%201", "n=x", "u=-1", "u=", "n=1&n=2"] {
                assert!(q(bad).is_err(), "{bad} was accepted");
            }
        }
    }
}

/// Path parameters; undecodable ones answer 400.
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for AppPath<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| AppPath(p))
            .map_err(|e| ServiceError::Malformed(e.body_text()))
    }
}

/// The bearer token of `Authorization: Bearer …` (`false`), else the session cookie (`true`).
pub fn request_token(parts: &Parts) -> Option<(&str, bool)> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| (token.trim(), false));
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| (value, true))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (token, via_cookie) =
            request_token(parts).ok_or(ServiceError::Unauthenticated("authentication required"))?;
        let user = app.service.authenticate(token, via_cookie).await?;
        // A browser sends the cookie with any request, including one a hostile page makes it
        // send: a state-changing request must also prove it read the CSRF token.
        if via_cookie && !parts.method.is_safe() {
            let presented =
                parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !csrf_matches(token, presented) {
                return Err(ServiceError::Forbidden(
                    "missing or wrong X-CSRF-Token for a cookie-authenticated request",
                ));
            }
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = axum::http::Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).expect("request").into_parts().0
    }

    #[test]
    fn bearer_header_wins_over_the_cookie() {
        let p = parts(&[("authorization", "Bearer abc"), ("cookie", "confab_session=xyz")]);
        assert_eq!(request_token(&p), Some(("abc", false)));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let p = parts(&[("cookie", "theme=dark; confab_session=xyz; other=1")]);
        assert_eq!(request_token(&p), Some(("xyz", true)));
    }

    async fn update_me(body: &'static str) -> Result<confab_proto::UpdateMe, (u16, String)> {
        let request = axum::http::Request::builder()
            .method("PATCH")
            .body(axum::body::Body::from(body))
            .expect("request");
        AppJson::<confab_proto::UpdateMe>::from_request(request, &())
            .await
            .map(|AppJson(body)| body)
            .map_err(|e| (e.status_and_code().0.as_u16(), e.to_string()))
    }

    #[tokio::test]
    async fn only_a_json_object_is_a_body() {
        assert!(update_me(r#"{"share_read_receipts": false}"#).await.is_ok());
        assert!(update_me(" \r\n\t{}").await.is_ok());
        for wrong_shape in ["[true]", "[]", " [false]", "\"x\"", "5", "true", "null"] {
            let (status, message) = update_me(wrong_shape).await.expect_err(wrong_shape);
            assert_eq!((status, message.as_str()), (422, "body: must be a JSON object"));
        }
        for malformed in ["", "  ", "[", "[true", "nul", "\u{feff}{}", "[] []"] {
            let (status, _) = update_me(malformed).await.expect_err(malformed);
            assert_eq!(status, 400, "{malformed:?}");
        }
    }

    #[test]
    fn other_schemes_and_missing_credentials_give_nothing() {
        assert_eq!(request_token(&parts(&[("authorization", "Basic abc")])), None);
        assert_eq!(request_token(&parts(&[("cookie", "confab_sessionx=1")])), None);
        assert_eq!(request_token(&parts(&[])), None);
    }
}
