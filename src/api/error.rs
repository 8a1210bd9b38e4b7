//! Errors of the Participant Service API, decoded as the service sends them.
//!
//! The code comes from the `x-amzn-ErrorType` header (anything after `:` stripped),
//! else from the body's `__type` or `code` (a `#` prefix stripped), else from the HTTP
//! status. Callers branch on [`ApiError::is_retryable`], [`ApiError::is_access_denied`]
//! and friends rather than on strings.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::fmt;

/// The service's error codes; `Other` keeps anything else verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    Validation,
    ServiceQuotaExceeded,
    AccessDenied,
    ResourceNotFound,
    Conflict,
    Throttling,
    InternalServer,
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "ValidationException" => ErrorCode::Validation,
            "ServiceQuotaExceededException" => ErrorCode::ServiceQuotaExceeded,
            "AccessDeniedException" => ErrorCode::AccessDenied,
            "ResourceNotFoundException" => ErrorCode::ResourceNotFound,
            "ConflictException" => ErrorCode::Conflict,
            "ThrottlingException" | "TooManyRequestsException" => ErrorCode::Throttling,
            "InternalServerException" => ErrorCode::InternalServer,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// The code a bare HTTP status stands for, when the service named none.
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            400 => ErrorCode::Validation,
            402 => ErrorCode::ServiceQuotaExceeded,
            401 | 403 => ErrorCode::AccessDenied,
            404 => ErrorCode::ResourceNotFound,
            409 => ErrorCode::Conflict,
            429 => ErrorCode::Throttling,
            500 => ErrorCode::InternalServer,
            other => ErrorCode::Other(format!("Http{other}")),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Validation => "ValidationException",
            ErrorCode::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorCode::AccessDenied => "AccessDeniedException",
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::Conflict => "ConflictException",
            ErrorCode::Throttling => "ThrottlingException",
            ErrorCode::InternalServer => "InternalServerException",
            ErrorCode::Other(s) => s,
        }
    }

    /// The HTTP status the service answers this code with.
    pub fn status(&self) -> u16 {
        match self {
            ErrorCode::Validation => 400,
            ErrorCode::ServiceQuotaExceeded => 402,
            ErrorCode::AccessDenied => 403,
            ErrorCode::ResourceNotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Throttling => 429,
            ErrorCode::InternalServer | ErrorCode::Other(_) => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error status.
    #[error("{operation} failed: {code} (HTTP {status}): {message}")]
    Service {
        operation: &'static str,
        status: u16,
        code: ErrorCode,
        message: String,
        request_id: Option<String>,
    },
    /// The request did not get an answer (connect, timeout, reset).
    #[error("{operation} failed: no answer from the service: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    /// The service's certificate was not trusted (or TLS failed in another way that a
    /// retry will not mend): `ca_file`, the OS store or a TLS-inspecting gateway needs
    /// fixing. Not retried.
    #[error("{operation} failed: TLS with the service: {message}")]
    Tls {
        operation: &'static str,
        message: String,
    },
    /// The service answered 2xx with a body that does not fit the model.
    #[error("{operation} failed: the response does not fit the API model: {message}")]
    Decode {
        operation: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ApiError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Throttling, a server-side failure or no answer at all: worth trying again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Service { status, code, .. } => {
                matches!(code, ErrorCode::Throttling | ErrorCode::InternalServer)
                    || matches!(status, 429 | 500 | 502 | 503 | 504)
            }
            ApiError::Transport { .. } => true,
            ApiError::Tls { .. } | ApiError::Decode { .. } => false,
        }
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::Throttling))
    }

    /// 403: a rejected token, or for a live chat usually a chat that has ended.
    pub fn is_access_denied(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::AccessDenied))
    }

    pub fn is_validation(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::Validation))
    }
}

/// Decodes an error response into its code and message.
pub fn decode_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> (ErrorCode, String) {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| -> Option<String> {
        let obj = json.as_ref()?.as_object()?;
        names
            .iter()
            .find_map(|n| obj.get(*n).and_then(|v| v.as_str()).map(str::to_string))
    };
    let from_header = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty());
    let from_body = || {
        field(&["__type", "code", "Code"]).map(|t| {
            let t = t.rsplit('#').next().unwrap_or(&t).to_string();
            t.split(':').next().unwrap_or("").to_string()
        })
    };
    let code = from_header
        .or_else(from_body)
        .filter(|s| !s.is_empty())
        .map(|c| ErrorCode::parse(&c))
        .unwrap_or_else(|| ErrorCode::from_status(status.as_u16()));
    let message = field(&["message", "Message"])
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_string());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn decode(status: u16, header: Option<&str>, body: &str) -> (ErrorCode, String) {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert("x-amzn-ErrorType", HeaderValue::from_str(v).unwrap());
        }
        decode_error(StatusCode::from_u16(status).unwrap(), &h, body.as_bytes())
    }

    #[test]
    fn every_code_decodes_from_the_header() {
        for (status, name, code) in [
            (400, "ValidationException", ErrorCode::Validation),
            (
                402,
                "ServiceQuotaExceededException",
                ErrorCode::ServiceQuotaExceeded,
            ),
            (403, "AccessDeniedException", ErrorCode::AccessDenied),
            (404, "ResourceNotFoundException", ErrorCode::ResourceNotFound),
            (409, "ConflictException", ErrorCode::Conflict),
            (429, "ThrottlingException", ErrorCode::Throttling),
            (500, "InternalServerException", ErrorCode::InternalServer),
        ] {
            let header = format!("{name}:http://internal.amazon.com/coral/com.amazonaws.connect/");
            let (c, m) = decode(status, Some(&header), r#"{"message":"why"}"#);
            assert_eq!(c, code);
            assert_eq!(m, "why");
            assert_eq!(c.status(), status);
            assert_eq!(ErrorCode::from_status(status), code);
        }
    }

    #[test]
    fn body_type_and_status_are_fallbacks() {
        let (c, m) = decode(
            400,
            None,
            r#"{"__type":"com.amazonaws.connect#ConflictException","Message":"dup"}"#,
        );
        assert_eq!((c, m.as_str()), (ErrorCode::Conflict, "dup"));
        let (c, _) = decode(403, None, r#"{"code":"AccessDeniedException"}"#);
        assert_eq!(c, ErrorCode::AccessDenied);
        let (c, m) = decode(503, None, "<html>gateway</html>");
        assert_eq!(
            (c, m.as_str()),
            (ErrorCode::Other("Http503".into()), "Service Unavailable")
        );
        let (c, _) = decode(429, None, "");
        assert_eq!(c, ErrorCode::Throttling);
    }

    #[test]
    fn retry_classification() {
        let e = |status: u16| ApiError::Service {
            operation: "X",
            status,
            code: ErrorCode::from_status(status),
            message: String::new(),
            request_id: None,
        };
        for s in [429, 500, 502, 503, 504] {
            assert!(e(s).is_retryable(), "{s}");
        }
        for s in [400, 402, 403, 404, 409] {
            assert!(!e(s).is_retryable(), "{s}");
        }
        assert!(e(403).is_access_denied() && e(429).is_throttled() && e(400).is_validation());
    }
}
