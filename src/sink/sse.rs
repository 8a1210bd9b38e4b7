//! The control API's streams as Server-Sent Events: `event: item`, one event per
//! journalled Item, with comment heartbeats so idle streams stay open through proxies.
//!
//! * one session's stream: `id:` the Item's `Id`, `data:` the Item as the service sent it;
//! * every session's stream: `id:` `NAME/ID`, `data:` `{"session": NAME, "item": {…}}`.
//!
//! An Item without an `Id` is named `#SEQ` (its journal position), which resumes too.

use crate::journal::JournalEntry;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often an idle stream gets a comment line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

fn item_id(e: &JournalEntry) -> String {
    e.item_id.clone().unwrap_or_else(|| format!("#{}", e.seq))
}

/// One session's Items; `position` (for the consumer-lag metric) follows what is sent.
pub fn session_stream(entries: mpsc::Receiver<Arc<JournalEntry>>, position: Arc<AtomicI64>) -> Response {
    events(entries, position, |e| (item_id(e), e.json.to_string()))
}

/// Every session's Items, each wrapped with its session's name.
pub fn all_stream(entries: mpsc::Receiver<Arc<JournalEntry>>, position: Arc<AtomicI64>) -> Response {
    events(entries, position, |e| {
        let mut data = Vec::with_capacity(e.json.len() + e.session.len() + 24);
        super::stdout::line(e, &mut data);
        data.pop(); // the newline
        let id = format!("{}/{}", e.session, item_id(e));
        (id, String::from_utf8(data).expect("JSON is UTF-8"))
    })
}

/// Appends one `event: item` event; a `data` value with line breaks (the service sends
/// compact JSON, so this is only a safeguard) becomes several `data:` lines.
fn write_event(out: &mut String, id: &str, data: &str) {
    out.push_str("event: item\nid: ");
    out.push_str(id);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
}

/// Bytes of events gathered into one write at most.
const CHUNK: usize = 64 * 1024;

/// The stream: every event that is ready goes out in one chunk (one write, where one
/// write per event cost a system call per Item), and an idle stream gets a
/// `: keep-alive` comment every [`KEEPALIVE`].
fn events(
    entries: mpsc::Receiver<Arc<JournalEntry>>,
    position: Arc<AtomicI64>,
    event: impl Fn(&JournalEntry) -> (String, String) + Send + Sync + 'static,
) -> Response {
    let state = (entries, event, position);
    let stream = futures_util::stream::unfold(state, |(mut rx, event, position)| async move {
        let first = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(_) => {
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(b": keep-alive\n\n")),
                    (rx, event, position),
                ))
            }
        };
        let mut out = String::with_capacity(first.json.len() + 128);
        let (id, data) = event(&first);
        write_event(&mut out, &id, &data);
        let mut last = first.seq;
        while out.len() < CHUNK {
            match rx.try_recv() {
                Ok(e) => {
                    let (id, data) = event(&e);
                    write_event(&mut out, &id, &data);
                    last = e.seq;
                }
                Err(_) => break,
            }
        }
        position.fetch_max(last, Ordering::Relaxed);
        Some((Ok(Bytes::from(out)), (rx, event, position)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_server_sent_events() {
        let mut out = String::new();
        write_event(&mut out, "a/1", "{\"x\":1}");
        write_event(&mut out, "2", "line1\r\nline2");
        assert_eq!(
            out,
            "event: item\nid: a/1\ndata: {\"x\":1}\n\nevent: item\nid: 2\ndata: line1\ndata: line2\n\n"
        );
    }
}
