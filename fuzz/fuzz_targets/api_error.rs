//! The API error decoder: a status (two bytes, 400–599), an `x-amzn-ErrorType` header
//! (the first line; none if empty) and the body, decoded as the client decodes a
//! non-2xx answer, then classified (retryable, throttled, access denied, validation).
#![no_main]
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use connect_chatd::api::error::decode_error;
use connect_chatd::api::{ApiError, ErrorCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 400 + u16::from_le_bytes([data[0], data[1]]) % 200;
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let rest = &data[2..];
    let (header, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let mut headers = HeaderMap::new();
    if !header.is_empty() {
        let Ok(v) = HeaderValue::from_bytes(header) else {
            return;
        };
        headers.insert("x-amzn-errortype", v);
    }
    let (code, message) = decode_error(status, &headers, body);
    // A code always names itself; one parsed from its own name is the same code.
    assert!(!code.as_str().is_empty());
    assert_eq!(ErrorCode::parse(code.as_str()), code);
    let e = ApiError::Service {
        operation: "GetTranscript",
        status: status.as_u16(),
        code,
        message,
        request_id: None,
    };
    let _ = (
        e.is_retryable(),
        e.is_throttled(),
        e.is_access_denied(),
        e.is_validation(),
    );
    let _ = e.to_string();
});
