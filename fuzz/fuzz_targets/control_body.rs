//! The control API's request bodies: the first byte picks the route (add a session,
//! send a message, an event, an attachment by path) and the `Content-Type`, the
//! first line is an `Idempotency-Key` header, the rest the body, read as the routes
//! read it (`JsonBody`: media type, size, shape) and checked as they check it.
#![no_main]
use connect_chatd::fuzzing::{control_body, idempotency_key, BodyRoute};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&[u8]>; 4] = [
    Some(b"application/json"),
    Some(b"application/json; charset=utf-8"),
    Some(b"text/plain"),
    None,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let route = BodyRoute::ALL[usize::from(sel & 3)];
    let content_type = CONTENT_TYPES[usize::from(sel >> 2 & 3)];
    let (key, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    if let Ok(Some(k)) = idempotency_key(key) {
        assert!(!k.is_empty() && k.len() <= 400 && k.bytes().all(|b| b.is_ascii_graphic()));
    }
    match control_body(route, content_type, body) {
        Ok(_) => assert!(content_type.is_some_and(|c| c.starts_with(b"application/json"))),
        Err(0) => {}
        // Only client errors: nothing a body holds is the daemon's fault.
        Err(status) => assert!((400..500).contains(&status), "{route:?}: {status}"),
    }
});
