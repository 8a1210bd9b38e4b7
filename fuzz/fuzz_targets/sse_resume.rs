//! SSE resume positions: a `Last-Event-ID` header (the first line; absent if the line
//! is `-`) and the request's path and query (`?after=`, `?from=`; also the control
//! routes' other queries), read as `GET /v1/sessions/{name}/items` and `GET /v1/items`
//! read them. The entry point checks that a position names exactly what was given.
#![no_main]
use connect_chatd::fuzzing::{control_queries, sse_resume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, uri) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"-"[..], data),
    };
    let Ok(uri) = std::str::from_utf8(uri) else {
        return;
    };
    let header = (header != b"-").then_some(header);
    for all in [false, true] {
        if let Some(Err(status)) = sse_resume(all, header, uri) {
            assert_eq!(status, 400);
        }
    }
    let _ = control_queries(uri);
});
