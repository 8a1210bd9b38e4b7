//! The stdout consumer (`stdout = true`): one JSON line per journalled Item,
//! `{"session": NAME, "item": {…}}`, for `journalctl`, `docker logs` and log shippers.
//!
//! Its position in the journal is durable (consumer `stdout`): a restarted daemon goes
//! on after the last line it wrote. Lines are written in batches (everything ready,
//! flushed when nothing more is waiting) and the position is saved after each flush,
//! so a SIGKILL between the two repeats at most that batch on stdout (the journal
//! itself never repeats an Item).

use super::feed::{self, Start};
use crate::journal::{Journal, JournalEntry};
use crate::sink::SinkError;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The consumer's name in the journal.
pub const CONSUMER: &str = "stdout";

/// Bytes gathered before they are written without waiting for the batch to end.
const WRITE_AT: usize = 64 * 1024;

/// One line for `entry`.
pub fn line(entry: &JournalEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"session\":");
    out.extend_from_slice(
        serde_json::to_string(&entry.session)
            .expect("a string serialises")
            .as_bytes(),
    );
    out.extend_from_slice(b",\"item\":");
    out.extend_from_slice(entry.json.as_bytes());
    out.extend_from_slice(b"}\n");
}

/// Writes every journalled Item after the consumer's position to `out`, then follows
/// the journal until `out` is closed or `stop` is set; then it writes what is
/// committed by that moment and returns.
pub async fn run<W: AsyncWrite + Unpin>(
    journal: Journal,
    mut out: W,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let position = {
        let j = journal.clone();
        tokio::task::spawn_blocking(move || j.position(CONSUMER))
            .await
            .expect("the journal read does not panic")
            .map_err(|e| SinkError::Io(std::io::Error::other(e.to_string())))?
    };
    let from = position.map_or(Start::Start, Start::After);
    let mut entries = feed::follow(journal.clone(), None, from);
    let mut buf = Vec::with_capacity(WRITE_AT + 16 * 1024);
    // Once stopping: the last committed entry, where this consumer ends.
    let mut until: Option<Option<crate::journal::Seq>> = None;
    let mut written: Option<crate::journal::Seq> = position;
    loop {
        if let Some(target) = until {
            if target.is_none_or(|t| written.is_some_and(|w| w >= t)) {
                return Ok(());
            }
        }
        let first = tokio::select! {
            entry = entries.recv() => match entry {
                Some(e) => e,
                None => return Ok(()),
            },
            _ = crate::stop::stopped(&mut stop), if until.is_none() => {
                let j = journal.clone();
                let last = tokio::task::spawn_blocking(move || j.last_seq())
                    .await
                    .expect("the journal read does not panic")
                    .map_err(|e| SinkError::Io(std::io::Error::other(e.to_string())))?;
                until = Some(last);
                continue;
            }
        };
        let mut last: Arc<JournalEntry> = first;
        line(&last, &mut buf);
        while let Ok(next) = entries.try_recv() {
            line(&next, &mut buf);
            last = next;
            if buf.len() >= WRITE_AT {
                write(&mut out, &mut buf).await?;
            }
        }
        write(&mut out, &mut buf).await?;
        out.flush().await.map_err(classify)?;
        written = Some(last.seq);
        if let Err(e) = journal.set_position(CONSUMER, last.seq).await {
            tracing::warn!(error = %e, "cannot save the stdout consumer's position");
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(out: &mut W, buf: &mut Vec<u8>) -> Result<(), SinkError> {
    let r = out.write_all(buf).await;
    buf.clear();
    r.map_err(classify)
}

fn classify(e: std::io::Error) -> SinkError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => SinkError::Closed,
        _ => SinkError::Io(e),
    }
}
