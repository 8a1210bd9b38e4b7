//! Where delivered Items go. A sink is a small trait, so the supervisor never knows
//! whether Items end up on stdout, in a file or elsewhere.

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

/// Receives Items in order, one at a time; returns once the Item is written out.
pub trait Sink {
    fn deliver(&mut self, item: &Item) -> impl std::future::Future<Output = Result<(), SinkError>> + Send;
}

/// One JSON object per line, flushed per line, with every field the service sent.
pub struct JsonLines<W> {
    out: W,
    line: Vec<u8>,
}

impl<W: AsyncWrite + Unpin + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines {
            out,
            line: Vec::with_capacity(1024),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl JsonLines<tokio::io::Stdout> {
    pub fn stdout() -> Self {
        Self::new(tokio::io::stdout())
    }
}

impl<W: AsyncWrite + Unpin + Send> Sink for JsonLines<W> {
    async fn deliver(&mut self, item: &Item) -> Result<(), SinkError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, item).map_err(io::Error::other)?;
        self.line.push(b'\n');
        let written = async {
            self.out.write_all(&self.line).await?;
            self.out.flush().await
        };
        written.await.map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => SinkError::Closed,
            _ => SinkError::Io(e),
        })
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
        sink.deliver(&a).await.unwrap();
        sink.deliver(&b).await.unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], r#"{"Id":"a","Type":"MESSAGE","Novel":{"x":1}}"#);
        assert_eq!(serde_json::from_str::<Item>(lines[1]).unwrap(), b);
    }
}
