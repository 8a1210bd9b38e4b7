//! The stdout consumer (`stdout = true`): one JSON line per journalled Item,
//! `{"session": NAME, "item": {…}}`, for `journalctl`, `docker logs` and log shippers.
//!
//! Its position in the journal is durable (consumer `stdout`): a restarted daemon goes
//! on after the last line it wrote. Lines are written in batches — everything ready, at
//! most 64 KiB (plus one line), in one `write` — and the position is saved after each
//! batch is flushed. A SIGKILL between the write and the save leaves a batch on stdout
//! that the journal does not know was written:
//!
//! * **stdout is a pipe or a socket** (systemd's `StandardOutput=journal`, `docker logs`,
//!   `| jq`): what was written cannot be read back, so the restarted daemon writes that
//!   batch again — at most one batch (64 KiB of lines and one line more) repeated per
//!   kill; nothing is ever lost. The journal itself never repeats an Item.
//! * **stdout is a regular file** the daemon's writes go to the end of (`>> file`,
//!   systemd's `StandardOutput=append:…`, or a file whose write offset is at its end),
//!   on Linux: exactly once. At start the daemon reads the file's last 256 KiB and
//!   [`reconcile`]s it with the journal's entries after the saved position: entries whose
//!   lines already end the file are counted as written (the position moves past them),
//!   and a torn last line (a kill in the middle of a write) that begins the next
//!   expected line is completed with the rest of it. Bytes at the end that are not its
//!   own lines (another writer, a rotated or truncated file) leave the position where
//!   it was — the pipe's at-least-once — and a torn foreign line is ended with `\n` so
//!   the next line stays a line of its own. The file should hold stdout alone: a log
//!   line written after the last batch defeats the match (with systemd set
//!   `StandardError=journal`; `inherit` sends the logs to the same file).
//!
//! `tests/crash.rs` SIGKILLs the daemon at 30 random moments with stdout appended to a
//! file and finds every Item there exactly once.
//!
//! `file.rs` holds what is particular to a regular file: reading its end back and
//! [`reconcile`], the pure comparison of that end with the expected lines.

mod file;

pub use file::{end_of_stdout, reconcile, Reconciled};

use super::feed::{self, Start};
use crate::journal::{Journal, JournalEntry, Seq};
use crate::sink::SinkError;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The consumer's name in the journal.
pub const CONSUMER: &str = "stdout";

/// Bytes gathered before a batch is written (and the position saved) without waiting
/// for more: bounds what a kill can leave unsaved.
const WRITE_AT: usize = 64 * 1024;

/// Entries after the saved position compared with that tail, at most.
const RECONCILE_ENTRIES: usize = 4096;

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

/// Writes every journalled Item after the consumer's position to the process's stdout
/// (reconciled with its end first when it is a regular file), then follows the journal
/// until stdout is closed or `stop` is set; see [`run_to`].
pub async fn run(
    journal: Journal,
    out: tokio::io::Stdout,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let end = tokio::task::spawn_blocking(end_of_stdout)
        .await
        .unwrap_or_default();
    run_to(journal, out, end, stop).await
}

fn journal_error(e: crate::journal::JournalError) -> SinkError {
    SinkError::Io(std::io::Error::other(e.to_string()))
}

/// Writes every journalled Item after the consumer's position to `out`, then follows
/// the journal until `out` is closed or `stop` is set; then it writes what is
/// committed by that moment and returns. With `end` (the last bytes `out` holds, from
/// a line boundary), the lines after the position that `out` already holds are not
/// written again.
pub async fn run_to<W: AsyncWrite + Unpin>(
    journal: Journal,
    mut out: W,
    end: Option<Vec<u8>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SinkError> {
    let position = {
        let j = journal.clone();
        tokio::task::spawn_blocking(move || j.position(CONSUMER))
            .await
            .expect("the journal read does not panic")
            .map_err(journal_error)?
    };
    let position = match end {
        Some(end) => settle(&journal, &mut out, position, end).await?,
        None => position,
    };
    let from = position.map_or(Start::Start, Start::After);
    let mut entries = feed::follow(journal.clone(), None, from);
    let mut buf = Vec::with_capacity(WRITE_AT + 16 * 1024);
    // Once stopping: the last committed entry, where this consumer ends.
    let mut until: Option<Option<Seq>> = None;
    let mut written: Option<Seq> = position;
    let lag = crate::metrics::global().consumer_position(CONSUMER);
    lag.store(position.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
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
                    .map_err(journal_error)?;
                until = Some(last);
                continue;
            }
        };
        // One batch: everything ready, up to WRITE_AT, in one write; then its position.
        let mut last: Arc<JournalEntry> = first;
        line(&last, &mut buf);
        while buf.len() < WRITE_AT {
            let Ok(next) = entries.try_recv() else { break };
            line(&next, &mut buf);
            last = next;
        }
        write(&mut out, &mut buf).await?;
        out.flush().await.map_err(classify)?;
        written = Some(last.seq);
        lag.store(last.seq, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = journal.set_position(CONSUMER, last.seq).await {
            tracing::warn!(error = %e, "cannot save the stdout consumer's position");
        }
    }
}

/// Reconciles `end` (what the output ends with) with the entries after `position`:
/// completes a torn line, and returns the position past the lines already written
/// (saved, so the next start need not look again).
async fn settle<W: AsyncWrite + Unpin>(
    journal: &Journal,
    out: &mut W,
    position: Option<Seq>,
    end: Vec<u8>,
) -> Result<Option<Seq>, SinkError> {
    let j = journal.clone();
    let after = tokio::task::spawn_blocking(move || j.entries_after(position, None, RECONCILE_ENTRIES))
        .await
        .expect("the journal read does not panic")
        .map_err(journal_error)?;
    // Only lines that can be within the tail (and one more, which may be torn).
    let mut expected = Vec::new();
    let mut total = 0;
    for entry in &after {
        if total > end.len() {
            break;
        }
        let mut l = Vec::new();
        line(entry, &mut l);
        total += l.len();
        expected.push(l);
    }
    let r = reconcile(&end, &expected);
    if !r.write_first.is_empty() {
        out.write_all(&r.write_first).await.map_err(classify)?;
        out.flush().await.map_err(classify)?;
    }
    let Some(seq) = r.done.checked_sub(1).map(|i| after[i].seq) else {
        return Ok(position);
    };
    tracing::info!(
        lines = r.done,
        completed_torn_line = !r.write_first.is_empty(),
        "stdout already held the lines after its saved position; going on after them"
    );
    if let Err(e) = journal.set_position(CONSUMER, seq).await {
        tracing::warn!(error = %e, "cannot save the stdout consumer's position");
    }
    Ok(Some(seq))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{ChatItemType, Item};
    use crate::journal::JournalSettings;

    pub(super) fn lines(entries: &[JournalEntry]) -> Vec<Vec<u8>> {
        entries
            .iter()
            .map(|e| {
                let mut l = Vec::new();
                line(e, &mut l);
                l
            })
            .collect()
    }

    fn msg(id: &str, ms: u32) -> Item {
        Item {
            id: Some(id.into()),
            item_type: Some(ChatItemType::Message),
            absolute_time: Some(format!("2026-01-01T00:00:00.{ms:03}Z")),
            content: Some(format!("text of {id}")),
            ..Default::default()
        }
    }

    /// The whole consumer against a journal: a batch written before a "kill" (its
    /// position not saved), the next line torn; the restart completes it and goes on.
    #[tokio::test]
    async fn a_restart_on_a_file_repeats_and_loses_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = Journal::open(tmp.path(), JournalSettings::default()).unwrap();
        let items: Vec<Item> = (0..6).map(|i| msg(&format!("m{i}"), i)).collect();
        let seqs = journal.append("s", items).await.unwrap();
        let entries = journal.entries_after(None, None, 100).unwrap();
        let all = lines(&entries);
        journal.set_position(CONSUMER, seqs[1].unwrap()).await.unwrap();
        // m0, m1 saved; m2, m3 written; m4 torn.
        let before = [all[..4].concat(), all[4][..10].to_vec()].concat();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        stop_tx.send(true).unwrap();
        let mut out = Vec::new();
        run_to(journal.clone(), &mut out, Some(before.clone()), stop)
            .await
            .unwrap();
        assert_eq!([before, out].concat(), all.concat());
        assert_eq!(journal.position(CONSUMER).unwrap(), seqs[5]);

        // Without the file's end (a pipe), the same state repeats the unsaved lines.
        journal.set_position(CONSUMER, seqs[1].unwrap()).await.unwrap();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        stop_tx.send(true).unwrap();
        let mut out = Vec::new();
        run_to(journal.clone(), &mut out, None, stop).await.unwrap();
        assert_eq!(out, all[2..].concat());
    }

    /// Records each write.
    struct Writes(Vec<usize>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.push(buf.len());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A batch is one write of at most WRITE_AT plus a line, so a kill leaves at most
    /// that much unsaved.
    #[tokio::test]
    async fn batches_are_single_bounded_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let journal = Journal::open(tmp.path(), JournalSettings::default()).unwrap();
        let items: Vec<Item> = (0..2000).map(|i| msg(&format!("m{i:04}"), i % 1000)).collect();
        let mut total = 0;
        for chunk in items.chunks(500) {
            journal.append("s", chunk.to_vec()).await.unwrap();
        }
        for e in journal.entries_after(None, None, 10_000).unwrap() {
            let mut l = Vec::new();
            line(&e, &mut l);
            total += l.len();
        }
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        stop_tx.send(true).unwrap();
        let mut out = Writes(Vec::new());
        run_to(journal, &mut out, None, stop).await.unwrap();
        assert_eq!(out.0.iter().sum::<usize>(), total);
        assert!(out.0.len() > 1, "{:?}", out.0);
        assert!(out.0.iter().all(|n| *n < WRITE_AT + 1024), "{:?}", out.0);
    }
}
