//! The control API's streams as Server-Sent Events: `event: item`, one event per
//! journalled Item, with comment heartbeats so idle streams stay open through proxies.
//!
//! * one session's stream: `id:` the Item's `Id`, `data:` the Item as the service sent it;
//! * every session's stream: `id:` `NAME/ID`, `data:` `{"session": NAME, "item": {…}}`.
//!
//! An Item without an `Id` is named `#SEQ` (its journal position), which resumes too.

use crate::journal::JournalEntry;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often an idle stream gets a comment line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

fn item_id(e: &JournalEntry) -> String {
    e.item_id.clone().unwrap_or_else(|| format!("#{}", e.seq))
}

/// One session's Items.
pub fn session_stream(entries: mpsc::Receiver<Arc<JournalEntry>>) -> Response {
    events(entries, |e| (item_id(e), e.json.to_string()))
}

/// Every session's Items, each wrapped with its session's name.
pub fn all_stream(entries: mpsc::Receiver<Arc<JournalEntry>>) -> Response {
    events(entries, |e| {
        let mut data = Vec::with_capacity(e.json.len() + e.session.len() + 24);
        super::stdout::line(e, &mut data);
        data.pop(); // the newline
        let id = format!("{}/{}", e.session, item_id(e));
        (id, String::from_utf8(data).expect("JSON is UTF-8"))
    })
}

fn events(
    entries: mpsc::Receiver<Arc<JournalEntry>>,
    event: impl Fn(&JournalEntry) -> (String, String) + Send + Sync + 'static,
) -> Response {
    let event = Arc::new(event);
    let stream = futures_util::stream::unfold(entries, move |mut rx| {
        let event = event.clone();
        async move {
            let entry = rx.recv().await?;
            let (id, data) = event(&entry);
            let sse = Event::default().event("item").id(id).data(data);
            Some((Ok::<_, std::convert::Infallible>(sse), rx))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keep-alive"))
        .into_response()
}
