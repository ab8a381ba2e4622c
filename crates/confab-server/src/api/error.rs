//! The one place where failures become HTTP: status codes and the JSON error body
//! `{"error": {"code", "message"}}` with stable, snake_case codes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_proto::{ErrorBody, ErrorDetail};

use crate::service::ServiceError;

pub type ApiResult<T> = Result<T, ServiceError>;

/// A JSON error response with this status, code and message.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into() } };
    (status, Json(body)).into_response()
}

impl ServiceError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ServiceError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ServiceError::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ServiceError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ServiceError::Internal(e) => {
                // The cause is for the operator, never for the client.
                tracing::error!(error = ?e, "internal error");
                "internal server error".to_owned()
            }
            ServiceError::NotFound => "not found".to_owned(),
            other => other.to_string(),
        };
        let mut response = error_response(status, code, message);
        if let ServiceError::RateLimited { retry_after_secs, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_pinned_status_and_code() {
        let cases = [
            (ServiceError::NotFound, 404, "not_found"),
            (ServiceError::Unauthenticated("x"), 401, "unauthorized"),
            (ServiceError::Forbidden("x"), 403, "forbidden"),
            (ServiceError::invalid("f", "r"), 422, "invalid_input"),
            (ServiceError::Malformed("x".into()), 400, "invalid_input"),
            (ServiceError::Conflict("x".into()), 409, "conflict"),
            (ServiceError::TooLarge("x".into()), 413, "payload_too_large"),
            (ServiceError::rate_limited("x", 3), 429, "rate_limited"),
            (ServiceError::Unavailable("x".into()), 503, "unavailable"),
            (ServiceError::Internal(anyhow::anyhow!("secret detail")), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let (s, c) = error.status_and_code();
            assert_eq!((s.as_u16(), c), (status, code));
        }
    }

    #[test]
    fn rate_limited_answers_carry_retry_after() {
        let response = ServiceError::rate_limited("slow down", 7).into_response();

        assert_eq!(
            response.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let response = ServiceError::Internal(anyhow::anyhow!("secret detail")).into_response();

        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
        let text = String::from_utf8_lossy(&bytes);

        assert!(text.contains("\"internal\""));
        assert!(!text.contains("secret"));
    }
}
