//! Exactly-once, in-order delivery: Items from live sockets and from transcript
//! backfills meet here, duplicates are dropped by `Id` (a bounded memory of recent Ids),
//! the transcript cursor (the last persisted Item delivered) advances, and Items go to
//! the consumer through a bounded channel, so a slow consumer slows the session down
//! instead of growing memory.

use crate::api::model::Item;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many recent Ids are remembered for de-duplication. A backfill starts at the
/// cursor, so duplicates come from the last few hundred Items at most.
pub const RECENT_IDS: usize = 4096;

/// The position of the last persisted Item delivered: where a backfill starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub id: String,
    pub absolute_time: Option<String>,
}

/// Counters of one session, shared with whoever wants to watch.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub backfilled: AtomicU64,
    pub reconnects: AtomicU64,
    pub renewals: AtomicU64,
    pub connections: AtomicU64,
}

/// A plain copy of [`SessionStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub delivered: u64,
    pub duplicates: u64,
    pub backfilled: u64,
    pub reconnects: u64,
    pub renewals: u64,
    pub connections: u64,
}

impl SessionStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            delivered: l(&self.delivered),
            duplicates: l(&self.duplicates),
            backfilled: l(&self.backfilled),
            reconnects: l(&self.reconnects),
            renewals: l(&self.renewals),
            connections: l(&self.connections),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What became of an offered Item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Delivered,
    Duplicate,
    /// Delivered, and it ends the chat.
    Ended,
}

/// Where an Item came from (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Live,
    Transcript,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the consumer of Items has gone away")]
pub struct ConsumerGone;

pub struct Delivery {
    out: mpsc::Sender<Item>,
    recent: RecentIds,
    cursor: Option<Cursor>,
    stats: Arc<SessionStats>,
}

impl Delivery {
    pub fn new(out: mpsc::Sender<Item>, stats: Arc<SessionStats>) -> Self {
        Delivery {
            out,
            recent: RecentIds::new(RECENT_IDS),
            cursor: None,
            stats,
        }
    }

    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Starts after `cursor` (a resumed session): Items up to it count as delivered.
    pub fn resume_from(&mut self, cursor: Cursor) {
        self.recent.insert(cursor.id.clone());
        self.cursor = Some(cursor);
    }

    /// Counts `item` as delivered without sending it (the start of `--history none`).
    pub fn skip(&mut self, item: &Item) {
        if let Some(id) = &item.id {
            self.recent.insert(id.clone());
        }
        self.advance(item);
    }

    /// Delivers `item` unless its Id was seen; waits while the consumer is busy.
    pub async fn offer(&mut self, item: Item, source: Source) -> Result<Offered, ConsumerGone> {
        match &item.id {
            Some(id) if self.recent.contains(id) => {
                SessionStats::bump(&self.stats.duplicates);
                tracing::trace!(id = %id, "dropping a duplicate Item");
                return Ok(Offered::Duplicate);
            }
            Some(id) => self.recent.insert(id.clone()),
            None => {
                tracing::debug!("delivering an Item without an Id (it cannot be de-duplicated)")
            }
        }
        self.advance(&item);
        let ended = item.is_chat_ended();
        self.out.send(item).await.map_err(|_| ConsumerGone)?;
        SessionStats::bump(&self.stats.delivered);
        if source == Source::Transcript {
            SessionStats::bump(&self.stats.backfilled);
        }
        Ok(if ended { Offered::Ended } else { Offered::Delivered })
    }

    /// Moves the cursor to `item` if it is one the transcript keeps.
    fn advance(&mut self, item: &Item) {
        if let (Some(id), false) = (&item.id, item.is_ephemeral()) {
            self.cursor = Some(Cursor {
                id: id.clone(),
                absolute_time: item.absolute_time.clone(),
            });
        }
    }
}

/// A set of the last `cap` Ids, forgetting the oldest first.
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        // Grows with use: an idle session should cost little.
        RecentIds {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.contains(&id) {
            return;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::ChatItemType;

    fn item(id: &str, t: ChatItemType) -> Item {
        Item {
            id: Some(id.into()),
            item_type: Some(t),
            absolute_time: Some("2026-11-25T12:00:00.000Z".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn duplicates_are_dropped_and_the_cursor_skips_ephemeral_items() {
        let (tx, mut rx) = mpsc::channel(10);
        let stats = Arc::new(SessionStats::default());
        let mut d = Delivery::new(tx, stats.clone());
        assert_eq!(
            d.offer(item("a", ChatItemType::Message), Source::Live).await,
            Ok(Offered::Delivered)
        );
        assert_eq!(
            d.offer(item("a", ChatItemType::Message), Source::Transcript)
                .await,
            Ok(Offered::Duplicate)
        );
        assert_eq!(
            d.offer(item("t", ChatItemType::Typing), Source::Live).await,
            Ok(Offered::Delivered)
        );
        assert_eq!(d.cursor().unwrap().id, "a");
        assert_eq!(
            d.offer(item("e", ChatItemType::ChatEnded), Source::Transcript)
                .await,
            Ok(Offered::Ended)
        );
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|i| i.id.unwrap())
            .collect();
        assert_eq!(got, ["a", "t", "e"]);
        let s = stats.snapshot();
        assert_eq!((s.delivered, s.duplicates, s.backfilled), (3, 1, 1));
        drop(rx);
        assert_eq!(
            d.offer(item("z", ChatItemType::Message), Source::Live).await,
            Err(ConsumerGone)
        );
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = RecentIds::new(3);
        for id in ["a", "b", "c", "d"] {
            r.insert(id.into());
        }
        assert!(!r.contains("a") && r.contains("b") && r.contains("d"));
        assert_eq!(r.set.len(), 3);
    }
}
