//! Vault's response shapes (reference §2): the success envelope, bare sys
//! objects, 204s, and `{"errors": [...]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// What a handler answers.
#[derive(Debug)]
pub enum Reply {
    /// The success envelope with `data`, `warnings` and `auth`, under `status`
    /// (200, or a batch's partial-failure code).
    Envelope {
        /// HTTP status.
        status: StatusCode,
        /// `data` (`null` when absent).
        data: Option<Value>,
        /// `warnings`.
        warnings: Vec<String>,
        /// `auth` (token endpoints).
        auth: Option<Value>,
        /// Copy `data`'s keys to the top level too (Vault's "sys injector").
        inject: bool,
    },
    /// A bare JSON object (non-logical sys endpoints).
    Raw(StatusCode, Value),
    /// 204 No Content.
    NoContent,
    /// `{"errors": [...]}` under a status.
    Errors(StatusCode, Vec<String>),
}

impl Reply {
    /// 200 with `data`.
    pub fn data(data: Value) -> Self {
        Self::Envelope {
            status: StatusCode::OK,
            data: Some(data),
            warnings: Vec::new(),
            auth: None,
            inject: false,
        }
    }

    /// 200 with `data` and warnings (a 204 endpoint with warnings answers this).
    pub fn data_with_warnings(data: Option<Value>, warnings: Vec<String>) -> Self {
        Self::Envelope {
            status: StatusCode::OK,
            data,
            warnings,
            auth: None,
            inject: false,
        }
    }

    /// `{"errors": messages}`.
    pub fn errors(status: StatusCode, messages: Vec<String>) -> Self {
        Self::Errors(status, messages)
    }

    /// 400 with one message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Errors(StatusCode::BAD_REQUEST, vec![message.into()])
    }

    /// 500 with one message in go-multierror form (Vault's "plain error").
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Errors(StatusCode::INTERNAL_SERVER_ERROR, vec![multierror(message)])
    }

    /// 404 `{"errors":[]}`: a missing object or an empty list.
    pub fn not_found() -> Self {
        Self::Errors(StatusCode::NOT_FOUND, Vec::new())
    }

    /// 404 for a path no route matches.
    pub fn unsupported_path() -> Self {
        Self::Errors(StatusCode::NOT_FOUND, vec![multierror("unsupported path")])
    }

    /// 405 for a method the path does not implement.
    pub fn unsupported_operation() -> Self {
        Self::Errors(
            StatusCode::METHOD_NOT_ALLOWED,
            vec![multierror("unsupported operation")],
        )
    }

    /// Adds warnings to an envelope (other replies are returned unchanged, or
    /// turned from 204 into 200 so the warnings can travel).
    pub fn with_warnings(self, extra: Vec<String>) -> Self {
        if extra.is_empty() {
            return self;
        }
        match self {
            Self::Envelope {
                status,
                data,
                mut warnings,
                auth,
                inject,
            } => {
                warnings.extend(extra);
                Self::Envelope {
                    status,
                    data,
                    warnings,
                    auth,
                    inject,
                }
            }
            Self::NoContent => Self::data_with_warnings(None, extra),
            other => other,
        }
    }
}

/// go-multierror's rendering of one error, which Vault uses for plain errors.
pub fn multierror(message: impl std::fmt::Display) -> String {
    format!("1 error occurred:\n\t* {message}\n\n")
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        self.into_response_with_id(None)
    }
}

impl Reply {
    /// The HTTP response, with `request_id` set to `id` (the id the audit log
    /// recorded) or a fresh one.
    pub fn into_response_with_id(self, id: Option<String>) -> Response {
        let (status, body) = match self {
            Self::Envelope {
                status,
                data,
                warnings,
                auth,
                inject,
            } => {
                let mut body = Map::new();
                if inject && let Some(Value::Object(fields)) = &data {
                    for (k, v) in fields {
                        body.insert(k.clone(), v.clone());
                    }
                }
                body.insert(
                    "request_id".into(),
                    Value::String(id.unwrap_or_else(crate::audit::new_request_id)),
                );
                body.insert("lease_id".into(), Value::String(String::new()));
                body.insert("renewable".into(), Value::Bool(false));
                body.insert("lease_duration".into(), json!(0));
                body.insert("data".into(), data.unwrap_or(Value::Null));
                body.insert("wrap_info".into(), Value::Null);
                body.insert(
                    "warnings".into(),
                    if warnings.is_empty() {
                        Value::Null
                    } else {
                        json!(warnings)
                    },
                );
                body.insert("auth".into(), auth.unwrap_or(Value::Null));
                (status, Some(Value::Object(body)))
            }
            Self::Raw(status, value) => (status, Some(value)),
            Self::NoContent => (StatusCode::NO_CONTENT, None),
            Self::Errors(status, messages) => (status, Some(json!({ "errors": messages }))),
        };
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl Reply {
    /// The same status with no body (HEAD).
    pub fn head(self) -> Self {
        match self {
            Self::Raw(status, _) => Self::Raw(status, Value::Null),
            other => other,
        }
    }
}
