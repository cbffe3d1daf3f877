//! Errors answered over HTTP, in OpenAI's error format (`{"error": {"message", "type", "code"}}`),
//! which llama-server also uses.

use serde_json::{json, Value};

/// One failed request: its status, OpenAI's error type and one readable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    /// 400: the request itself is wrong.
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    /// 401: missing or wrong API key.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self {
            status: 401,
            kind: "authentication_error",
            message: "invalid or missing API key (send it as `Authorization: Bearer KEY`)".into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            kind: "not_found_error",
            message: message.into(),
        }
    }

    /// 405: an endpoint asked with another method.
    pub fn not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: 405,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    /// 408: the request ran past `--timeout`.
    #[must_use]
    pub fn timeout(secs: u64) -> Self {
        Self {
            status: 408,
            kind: "timeout_error",
            message: format!("the request took longer than the server's --timeout of {secs} s"),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: 413,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    /// 503: the queue is full or the server is stopping.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: 503,
            kind: "unavailable_error",
            message: message.into(),
        }
    }

    /// 501: an endpoint this server was not started with (llama-server's words).
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self {
            status: 501,
            kind: "not_supported_error",
            message: message.into(),
        }
    }

    /// 500: the engine failed on a valid request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            kind: "server_error",
            message: message.into(),
        }
    }

    /// The JSON body.
    #[must_use]
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.status, "message": self.message, "type": self.kind}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}
