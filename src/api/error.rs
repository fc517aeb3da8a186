//! The Zumik error envelope `{"error":{"message","type","code","param"}}` and the mapping of
//! every failure the API can meet (bad JSON, bad fields, unknown ids, conflicts, auth) to it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An API error with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `conflict_error`, `api_error`.
    pub kind: &'static str,
    /// Stable machine code, e.g. `invalid_field`, `cluster_not_found`.
    pub code: &'static str,
    pub message: String,
    /// The offending field or parameter, when there is one.
    pub param: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    param: Option<&'a str>,
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>, param: Option<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            param,
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>, param: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            code,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>, param: &str) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            kind: "conflict_error",
            code,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            code: "invalid_token",
            message: message.into(),
            param: None,
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "api_error",
            code,
            message: message.into(),
            param: None,
        }
    }

    /// A request body that does not parse: names the field serde complains about.
    pub fn from_json(e: &serde_json::Error) -> Self {
        let message = e.to_string();
        ApiError::invalid("invalid_body", message.clone(), field_of(&message))
    }
}

/// The field named in a serde message (``unknown field `x` ``, ``missing field `x` ``).
fn field_of(message: &str) -> Option<String> {
    let (head, rest) = message.split_once('`')?;
    if !head.ends_with("field ") {
        return None; // e.g. ``invalid value: integer `-1` ``: a value, not a field
    }
    let (field, _) = rest.split_once('`')?;
    Some(field.to_owned())
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                param: self.param.as_deref(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        let e = serde_json::from_str::<crate::events::LaneActivateV1>(
            r#"{"lane":"a/b","report_digest":"x","ts":"2026-01-01T00:00:00Z","extra":1}"#,
        )
        .unwrap_err();
        assert_eq!(ApiError::from_json(&e).param.as_deref(), Some("extra"));
        assert_eq!(field_of("no backticks"), None);
        assert_eq!(field_of("invalid value: integer `-1`, expected u32"), None);
        assert_eq!(field_of("missing field `lanes`").as_deref(), Some("lanes"));
    }
}
