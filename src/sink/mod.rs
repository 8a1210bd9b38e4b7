//! Where delivered Items go. A sink is a small trait, so the supervisor never knows
//! whether Items end up on stdout, in a file or elsewhere; `tail` writes JSON lines
//! through [`JsonLines`].
//!
//! The daemon's consumers read the journal instead, each from its own position:
//! [`feed`] (the journal in order, from a position, then live), [`stdout`] (one JSON
//! line per Item), [`sse`] (the control API's streams), and the durable [`consumer`]s
//! with a target: [`webhook`] and [`nats`] (JetStream).

pub mod consumer;
pub mod feed;
pub mod nats;
pub mod sse;
pub mod stdout;
pub mod webhook;

use crate::api::model::Item;
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The reader went away (`| head -1`): stop quietly.
    #[error("the output was closed by its reader")]
    Closed,
    #[error("writing an Item failed: {0}")]
    Io(#[from] io::Error),
}

/// Receives Items in order. `push` may hold an Item in a buffer; `flush` writes out
/// everything held. The caller pushes everything that is ready, then flushes, so a
/// fast reader gets large writes and an idle session never holds a line back.
pub trait Sink {
    fn push(&mut self, item: &Item) -> impl std::future::Future<Output = Result<(), SinkError>> + Send;

    fn flush(&mut self) -> impl std::future::Future<Output = Result<(), SinkError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Bytes of lines held before they are written without waiting for `flush` (a pipe's
/// default capacity).
const WRITE_AT: usize = 64 * 1024;

/// One JSON object per line, with every field the service sent, written in batches.
/// An Item that came off the wire is written as the service sent it (its
/// [`Item::wire_json`]); others are serialised.
pub struct JsonLines<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines {
            out,
            buf: Vec::with_capacity(WRITE_AT + 16 * 1024),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    async fn write_held(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.out.write_all(&self.buf).await;
        self.buf.clear();
        written.map_err(classify)
    }
}

fn classify(e: io::Error) -> SinkError {
    match e.kind() {
        io::ErrorKind::BrokenPipe => SinkError::Closed,
        _ => SinkError::Io(e),
    }
}

impl JsonLines<tokio::io::Stdout> {
    pub fn stdout() -> Self {
        Self::new(tokio::io::stdout())
    }
}

impl<W: AsyncWrite + Unpin + Send> Sink for JsonLines<W> {
    async fn push(&mut self, item: &Item) -> Result<(), SinkError> {
        match item.wire_json() {
            Some(text) => self.buf.extend_from_slice(text.trim().as_bytes()),
            None => serde_json::to_writer(&mut self.buf, item).map_err(io::Error::other)?,
        }
        self.buf.push(b'\n');
        if self.buf.len() >= WRITE_AT {
            self.write_held().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.write_held().await?;
        self.out.flush().await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_json_object_per_line_with_unknown_fields() {
        let mut sink = JsonLines::new(Vec::new());
        let a: Item = serde_json::from_str(r#"{"Id":"a","Type":"MESSAGE","Novel":{"x":1}}"#).unwrap();
        let b: Item = serde_json::from_str(r#"{"Id":"b","Content":"line\nbreak"}"#).unwrap();
        sink.push(&a).await.unwrap();
        sink.push(&b).await.unwrap();
        sink.flush().await.unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], r#"{"Id":"a","Type":"MESSAGE","Novel":{"x":1}}"#);
        assert_eq!(serde_json::from_str::<Item>(lines[1]).unwrap(), b);
    }

    #[tokio::test]
    async fn items_off_the_wire_are_written_as_the_service_sent_them() {
        let frame = |inner: &str| serde_json::json!({"topic": "aws/chat", "content": inner}).to_string();
        let item = |inner: &str| match crate::socket::frame::decode(&frame(inner)).unwrap() {
            crate::socket::frame::Inbound::Chat(item) => *item,
            other => panic!("{other:?}"),
        };
        // The service's own key order and spacing, kept byte for byte.
        let wire = r#"{"Type":"MESSAGE", "Id":"a","Content":"café","Zed":[1,2]}"#;
        // Pretty-printed text would break the one-line contract: serialised instead.
        let pretty = "{\n  \"Id\": \"b\",\n  \"Type\": \"MESSAGE\"\n}";
        let (a, b) = (item(wire), item(pretty));
        assert_eq!(a.wire_json(), Some(wire));
        assert_eq!(b.wire_json(), None);
        let mut sink = JsonLines::new(Vec::new());
        sink.push(&a).await.unwrap();
        sink.push(&b).await.unwrap();
        sink.flush().await.unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(out, format!("{wire}\n{{\"Id\":\"b\",\"Type\":\"MESSAGE\"}}\n"));
    }

    /// Records each write: lines are held until `flush` or until a pipe's worth is ready.
    struct Writes(Vec<usize>, usize);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.push(buf.len());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            self.1 += 1;
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lines_are_written_in_batches_and_flushed_on_request() {
        let mut sink = JsonLines::new(Writes(Vec::new(), 0));
        let item: Item = serde_json::from_str(r#"{"Id":"a","Content":"x"}"#).unwrap();
        for _ in 0..3 {
            sink.push(&item).await.unwrap();
        }
        assert!(sink.out.0.is_empty(), "nothing written before the flush");
        sink.flush().await.unwrap();
        assert_eq!(sink.out.0.len(), 1, "one write for three lines");
        assert_eq!(sink.out.1, 1);
        let line = serde_json::to_vec(&item).unwrap().len() + 1;
        for _ in 0..(WRITE_AT / line + 1) {
            sink.push(&item).await.unwrap();
        }
        assert_eq!(sink.out.0.len(), 2, "a pipe's worth is written without a flush");
        assert!(sink.out.0[1] >= WRITE_AT);
        assert_eq!(sink.out.1, 1);
    }
}
