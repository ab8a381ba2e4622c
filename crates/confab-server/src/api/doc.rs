//! The answers every operation of a kind can give, added to the OpenAPI document once here
//! instead of repeating them in each `#[utoipa::path]`: the extractors and layers that produce
//! them apply to every route, so per-handler lists drift (schemathesis finds the gaps).
//!
//! - a JSON body: 400 (not JSON), 413 (over the body limit), 422 (JSON of the wrong shape);
//! - path or query parameters: 400 (undecodable);
//! - a bearer-authenticated operation: 401 (no or a dead session);
//! - a state-changing method: 403 (the CSRF layer's cross-site refusal, or a cookie without
//!   its `X-CSRF-Token`);
//! - a WebSocket upgrade (documented with 101): 400 when the request is not an upgrade.
//!
//! An operation's own description of a status wins: only missing statuses are added.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds the common answers to every operation of `openapi`.
pub fn add_common_responses(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let safe = [&mut item.get, &mut item.head, &mut item.options, &mut item.trace];
        for operation in safe.into_iter().flatten() {
            add_to(operation, false);
        }
        let unsafe_ = [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in unsafe_.into_iter().flatten() {
            add_to(operation, true);
        }
    }
}

fn add_to(operation: &mut Operation, state_changing: bool) {
    let params = operation.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query),
        RefOr::Ref(_) => true,
    });
    let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let upgrade = operation.responses.responses.contains_key("101");
    let mut add = |status: &str, description: &str| {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        });
    };
    if operation.request_body.is_some() {
        add("400", "The body is not JSON");
        add("413", "The body is over the size limit");
        add("422", "The body is JSON of the wrong shape, or breaks a rule");
    }
    if params {
        add("400", "Undecodable path or query parameters");
    }
    if upgrade {
        add("400", "Not a WebSocket upgrade request");
    }
    if authenticated {
        add("401", "Not signed in");
    }
    if state_changing {
        add("403", "A cross-site request, or a cookie-authenticated one without the CSRF token");
    }
}
