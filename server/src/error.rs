//! Error responses: the reference's `{"detail": …}` bodies with their status codes, plus
//! optional extension fields (compile diagnostics, refusal reasons).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// More fields of the body (e.g. `errors`).
    pub extra: Map<String, Value>,
    /// Add `WWW-Authenticate: Bearer` (401).
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: u16, detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            detail: detail.into(),
            extra: Map::new(),
            challenge: false,
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError { challenge: true, ..ApiError::new(401, "bearer token required") }
    }

    /// 422 `{"detail": "invalid request"}`: the body is JSON but not the expected schema.
    pub fn invalid_request(why: impl Into<String>) -> ApiError {
        ApiError::new(422, "invalid request").with("reason", json!(why.into()))
    }

    /// 400: the body is not (unambiguous) JSON.
    pub fn bad_json(why: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid or ambiguous JSON body").with("reason", json!(why.into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("detail".into(), Value::String(self.detail));
        body.extend(self.extra);
        let mut resp = (self.status, axum::Json(Value::Object(body))).into_response();
        if self.challenge {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
