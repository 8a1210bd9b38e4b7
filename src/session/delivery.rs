//! Exactly-once, in-order delivery: Items from live sockets and from transcript
//! backfills meet here, and go to the consumer through a bounded channel, so a slow
//! consumer slows the session down instead of growing memory.
//!
//! **The invariant: the cursor only moves forward in transcript order.** The
//! transcript is ordered by `AbsoluteTime`, so:
//!
//! * an Item older than the cursor (by `AbsoluteTime`) has been delivered, or its place
//!   has passed: it is dropped as a duplicate, whatever the Id memory has forgotten;
//! * an Item at the cursor's very time is told apart by the memory of recent Ids
//!   (several Items may share a millisecond);
//! * an Item without an `AbsoluteTime` can only be checked against the Id memory.
//!
//! The Id memory is bounded ([`RECENT_IDS`]), and correctness does not depend on its
//! size: it only has to cover Items that share one millisecond. Live-only Items have a
//! memory of their own, so however many typing indicators arrive after the cursor's
//! Item, they never push its Id out. The cursor (the last
//! persisted Item delivered) is where a backfill starts; its time is the newest time of
//! a persisted Item delivered, so it never moves back. Ephemeral Items (typing,
//! receipts) are held to the same rule but never move the cursor.

use crate::api::model::Item;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many recent Ids are remembered for de-duplication of Items that share the
/// cursor's time (older ones are dropped by time, however many there are).
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
    out: mpsc::Sender<Box<Item>>,
    /// Ids of Items the transcript keeps.
    recent: RecentIds,
    /// Ids of live-only Items (typing, receipts).
    recent_ephemeral: RecentIds,
    cursor: Option<Cursor>,
    /// The cursor's time (the newest `AbsoluteTime` of a persisted Item delivered):
    /// nothing older is delivered again.
    newest: Option<TimeKey>,
    /// The newest time of a live-only Item delivered: live-only Items come from the
    /// sockets only, in order, so one older than this is a socket's overlap with the
    /// one before (a renewal) whatever their Id memory has forgotten.
    newest_ephemeral: Option<TimeKey>,
    stats: Arc<SessionStats>,
}

impl Delivery {
    pub fn new(out: mpsc::Sender<Box<Item>>, stats: Arc<SessionStats>) -> Self {
        Self::with_memory(out, stats, RECENT_IDS)
    }

    /// A delivery whose Id memory holds `recent_ids` Ids.
    pub fn with_memory(out: mpsc::Sender<Box<Item>>, stats: Arc<SessionStats>, recent_ids: usize) -> Self {
        Delivery {
            out,
            recent: RecentIds::new(recent_ids.max(1)),
            recent_ephemeral: RecentIds::new(recent_ids.max(1)),
            cursor: None,
            newest: None,
            newest_ephemeral: None,
            stats,
        }
    }

    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Starts after `cursor` (a resumed session): Items up to it count as delivered.
    pub fn resume_from(&mut self, cursor: Cursor) {
        self.recent.insert(&cursor.id);
        self.note_time(cursor.absolute_time.as_deref());
        self.cursor = Some(cursor);
    }

    /// Counts `item` as delivered without sending it (the start of `--history none`).
    pub fn skip(&mut self, item: &Item) {
        let ephemeral = item.is_ephemeral();
        if let Some(id) = &item.id {
            self.memory(ephemeral).insert(id);
        }
        if !ephemeral {
            self.note_time(item.absolute_time.as_deref());
        }
        self.advance(item);
    }

    /// The Id memory for Items of this kind.
    fn memory(&mut self, ephemeral: bool) -> &mut RecentIds {
        if ephemeral {
            &mut self.recent_ephemeral
        } else {
            &mut self.recent
        }
    }

    /// Delivers `item` unless it was delivered already (see the module's invariant);
    /// waits while the consumer is busy.
    pub fn offer(
        &mut self,
        item: impl Into<Box<Item>>,
        source: Source,
    ) -> impl std::future::Future<Output = Result<Offered, ConsumerGone>> + Send + '_ {
        // Boxed before the future is made: a live session waits in here, and an Item
        // held inline would make every idle session's task half a kilobyte larger.
        self.offer_boxed(item.into(), source)
    }

    async fn offer_boxed(&mut self, item: Box<Item>, source: Source) -> Result<Offered, ConsumerGone> {
        let at = item.absolute_time.as_deref().and_then(TimeKey::parse);
        let ephemeral = item.is_ephemeral();
        // Older than what was delivered: its place has passed.
        let newest = if ephemeral {
            self.newest.max(self.newest_ephemeral)
        } else {
            self.newest
        };
        let stale = matches!((newest, at), (Some(newest), Some(at)) if at < newest);
        // Otherwise the Id memory decides (and learns the Id).
        let seen = !stale
            && item
                .id
                .as_deref()
                .is_some_and(|id| !self.memory(ephemeral).insert(id));
        if stale || seen {
            SessionStats::bump(&self.stats.duplicates);
            crate::metrics::global().duplicates_dropped.inc();
            tracing::trace!(id = ?item.id, stale, "dropping an Item already delivered");
            return Ok(Offered::Duplicate);
        }
        if item.id.is_none() {
            tracing::debug!("delivering an Item without an Id (it cannot be de-duplicated)")
        }
        // Only Items the transcript keeps move the cursor (and so the time rule): a
        // typing indicator is never where a backfill starts.
        match (at, ephemeral) {
            (Some(at), false) => self.newest = Some(self.newest.map_or(at, |n| n.max(at))),
            (Some(at), true) => self.newest_ephemeral = Some(self.newest_ephemeral.map_or(at, |n| n.max(at))),
            (None, _) => {}
        }
        self.advance(&item);
        let ended = item.is_chat_ended();
        match self.out.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ConsumerGone),
            // Waiting for room is the rare case: boxed, to keep this future small.
            Err(mpsc::error::TrySendError::Full(item)) => {
                Box::pin(self.out.send(item)).await.map_err(|_| ConsumerGone)?
            }
        }
        SessionStats::bump(&self.stats.delivered);
        if source == Source::Transcript {
            SessionStats::bump(&self.stats.backfilled);
            crate::metrics::global().items_backfilled.inc();
        }
        Ok(if ended { Offered::Ended } else { Offered::Delivered })
    }

    fn note_time(&mut self, at: Option<&str>) {
        if let Some(at) = at.and_then(TimeKey::parse) {
            self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        }
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

/// An `AbsoluteTime` as nanoseconds since the epoch, for ordering. The service writes
/// `2026-11-25T12:00:00.123Z`; that form is read by hand (it is on every Item's path),
/// anything else RFC 3339 allows through the `time` crate. Unparsable times are `None`
/// and leave ordering to the Id memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeKey(i128);

impl TimeKey {
    pub fn parse(s: &str) -> Option<TimeKey> {
        Self::parse_utc(s.as_bytes()).or_else(|| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| TimeKey(t.unix_timestamp_nanos()))
        })
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    fn parse_utc(b: &[u8]) -> Option<TimeKey> {
        if b.len() < 20 || b[b.len() - 1] != b'Z' || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            b[r].iter().try_fold(0i64, |acc, d| {
                d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
            })
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let frac = &b[19..b.len() - 1];
        let nanos = match frac {
            [] => 0,
            [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
                let v = num(20..20 + digits.len())?;
                v * 10i64.pow(9 - digits.len() as u32)
            }
            _ => return None,
        };
        // Days from the civil date (Howard Hinnant's algorithm).
        let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
        Some(TimeKey(i128::from(secs) * 1_000_000_000 + i128::from(nanos)))
    }
}

/// A set of the last `cap` Ids, forgetting the oldest first. Each Id is stored once
/// (shared by the set and the order) and hashed once to be learnt.
struct RecentIds {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
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

    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Learns `id`; false if it was known already.
    fn insert(&mut self, id: &str) -> bool {
        let id: Arc<str> = Arc::from(id);
        if !self.set.insert(id.clone()) {
            return false;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id);
        true
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
