//! Reading the journal in order: from a position (or from now), first what the
//! database holds, then live from the journal's broadcast of committed entries. A
//! reader that falls behind the broadcast goes back to the database, so a slow reader
//! lags but never misses or repeats an entry, and never slows a chat.

use crate::journal::{Journal, JournalEntry, Seq};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Entries read from the database at a time.
const PAGE: usize = 512;
/// Entries waiting for the reader of a feed.
const QUEUE: usize = 256;

/// Where a feed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Everything the journal holds.
    Start,
    /// Right after this entry.
    After(Seq),
    /// What is committed from now on.
    Now,
}

/// Follows the journal (one session's entries, or all) from `from`, until the receiver
/// is dropped or the journal closes.
pub fn follow(journal: Journal, session: Option<String>, from: Start) -> mpsc::Receiver<Arc<JournalEntry>> {
    follow_tracked(journal, session, from, None)
}

/// [`follow`], moving `position` past the journal's entries of other sessions while
/// the reader has taken everything sent (so that an idle one-session stream does not
/// look behind); the reader moves it past what it has handled.
pub fn follow_tracked(
    journal: Journal,
    session: Option<String>,
    from: Start,
    position: Option<Arc<AtomicI64>>,
) -> mpsc::Receiver<Arc<JournalEntry>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    // Subscribed before the first read: whatever commits from here on is in the
    // broadcast, whatever committed before is in the database.
    let live = journal.subscribe();
    tokio::spawn(async move {
        let feed = Feed { tx, position };
        if let Err(e) = run(journal, session, from, live, feed).await {
            tracing::warn!(error = %e, "a journal reader stopped");
        }
    });
    rx
}

struct Feed {
    tx: mpsc::Sender<Arc<JournalEntry>>,
    position: Option<Arc<AtomicI64>>,
}

impl Feed {
    /// Nothing this feed sent is waiting: the reader is at `seq`.
    fn passed(&self, seq: Seq) {
        if let Some(p) = &self.position {
            if self.tx.capacity() == self.tx.max_capacity() {
                p.fetch_max(seq, Ordering::Relaxed);
            }
        }
    }
}

async fn run(
    journal: Journal,
    session: Option<String>,
    from: Start,
    mut live: broadcast::Receiver<Arc<JournalEntry>>,
    feed: Feed,
) -> Result<(), crate::journal::JournalError> {
    let tx = &feed.tx;
    let mut last: Option<Seq> = match from {
        Start::Start => None,
        Start::After(seq) => Some(seq),
        Start::Now => {
            let j = journal.clone();
            tokio::task::spawn_blocking(move || j.last_seq())
                .await
                .expect("the journal read does not panic")?
        }
    };
    loop {
        // Catch up from the database.
        loop {
            let (j, s) = (journal.clone(), session.clone());
            // Everything committed before the read is in it or not this feed's.
            let head = crate::metrics::global().journal_head();
            let page = tokio::task::spawn_blocking(move || j.entries_after(last, s.as_deref(), PAGE))
                .await
                .expect("the journal read does not panic")?;
            let done = page.len() < PAGE;
            for entry in page {
                last = Some(entry.seq);
                if tx.send(Arc::new(entry)).await.is_err() {
                    return Ok(());
                }
            }
            if done {
                feed.passed(head);
                break;
            }
        }
        // Then live, until the broadcast leaves this reader behind.
        loop {
            match live.recv().await {
                Ok(entry) => {
                    if last.is_some_and(|l| entry.seq <= l) {
                        continue;
                    }
                    if session.as_deref().is_some_and(|s| s != entry.session) {
                        last = Some(entry.seq);
                        feed.passed(entry.seq);
                        continue;
                    }
                    last = Some(entry.seq);
                    if tx.send(entry).await.is_err() {
                        return Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "a journal reader fell behind; reading the database");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}
