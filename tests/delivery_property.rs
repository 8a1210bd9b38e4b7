//! The delivery invariant as a property: whatever the interleaving of live frames,
//! backfill pages (overlapping, repeated, stale and out of order, with and without a
//! NextToken, an endless NextToken, truncated by the page limit), socket drops and
//! make-before-break renewals, with an Id memory far smaller than the overlap, the
//! consumer gets the transcript's Items each exactly once, in transcript order, live-only
//! Items (typing) at most once, and the cursor never moves back.
//!
//! It drives the pure state machines the supervisor drives — [`Delivery`] (dedup, the
//! cursor) and [`Paging`] (when a backfill stops) — against a simulated service and
//! sockets, in the order the supervisor keeps: a backfill runs to its end before a
//! socket's queued frames are read; on a renewal the old socket is drained, then the
//! backfill, then the new socket.
//!
//! The one precondition, as documented: the Id memory covers the Items (persisted and
//! live-only) that share one millisecond.

use connect_chatd::api::model::{ChatItemType, Item};
use connect_chatd::session::delivery::{Delivery, Offered, SessionStats, Source, TimeKey};
use connect_chatd::session::{AfterPage, Paging};
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One thing the service publishes: a persisted Item (in the transcript) or a typing
/// indicator (live only).
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    ms: u64,
    ephemeral: bool,
}

impl Entry {
    fn item(&self) -> Item {
        let mut item = Item::default();
        item.id = Some(self.id.clone());
        item.item_type = Some(if self.ephemeral {
            ChatItemType::Typing
        } else {
            ChatItemType::Message
        });
        item.absolute_time = Some(format!(
            "2026-11-25T{:02}:{:02}:{:02}.{:03}Z",
            self.ms / 3_600_000,
            self.ms / 60_000 % 60,
            self.ms / 1000 % 60,
            self.ms % 1000
        ));
        item
    }
}

/// How the service answers one backfill's GetTranscript calls.
#[derive(Debug, Clone)]
struct Pages {
    /// Items per page.
    size: usize,
    /// The first page starts this many Items before the one after the cursor (a service
    /// that resumes by time, or includes the start Item); fewer than `size`.
    back: usize,
    /// Each next page starts this many Items before where the last one ended.
    overlap: usize,
    /// Bit i: the i-th answer is the previous one again (same Items, same NextToken).
    repeat: u16,
    /// Bit i: one more Entry is published before the i-th call.
    publish: u16,
    /// A NextToken even at the end of the transcript.
    endless: bool,
    /// Calls one backfill may make (`max_backfill_pages`).
    max_pages: u32,
}

#[derive(Debug, Clone)]
enum Action {
    /// The service publishes the next `n` Entries.
    Publish(usize),
    /// The supervisor reads `n` frames of the current socket.
    Read(usize),
    /// The socket dies (its unread frames are lost): reconnect, then backfill.
    Drop(Pages),
    /// Make-before-break: a new socket subscribes, `both` Entries are published while
    /// both are subscribed, the old one's first `kept` unread frames are drained (the
    /// server drops the rest when it answers the close), then a backfill, then the new
    /// socket is read.
    Renew { both: usize, kept: usize, pages: Pages },
    /// A stale page: Items `from..from+len` of those delivered, offered again in
    /// reverse order.
    Stale { from: usize, len: usize },
}

fn pages() -> impl Strategy<Value = Pages> {
    (
        1usize..6,
        0usize..4,
        0usize..5,
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
        1u32..5,
    )
        .prop_map(
            |(size, back, overlap, repeat, publish, endless, max_pages)| Pages {
                size,
                // A page from the cursor brings something after it, if there is anything.
                back: back.min(size - 1),
                overlap: overlap.min(size - 1),
                repeat,
                publish,
                endless,
                max_pages,
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (1usize..8).prop_map(Action::Publish),
        3 => (1usize..10).prop_map(Action::Read),
        1 => pages().prop_map(Action::Drop),
        1 => (0usize..4, 0usize..6, pages()).prop_map(|(both, kept, pages)| Action::Renew { both, kept, pages }),
        1 => (0usize..40, 1usize..12).prop_map(|(from, len)| Action::Stale { from, len }),
    ]
}

/// The Entries: ids in publication order, times not decreasing, at most `memory`
/// Entries on one millisecond.
fn entries(memory: usize, steps: Vec<(u8, bool)>) -> Vec<Entry> {
    let (mut ms, mut run) = (1_000u64, 0usize);
    let mut out = Vec::new();
    for (i, (gap, ephemeral)) in steps.into_iter().enumerate() {
        let gap = if run >= memory { gap.max(1) } else { gap };
        if gap > 0 {
            ms += u64::from(gap);
            run = 0;
        }
        run += 1;
        out.push(Entry {
            id: format!("{}{i}", if ephemeral { "t" } else { "m" }),
            ms,
            ephemeral,
        });
    }
    out
}

struct Sim {
    entries: Vec<Entry>,
    /// Entries published so far.
    published: usize,
    /// Indices (into `entries`) of the persisted ones published: the transcript.
    transcript: Vec<usize>,
    /// The current socket's unread frames (indices into `entries`).
    socket: VecDeque<usize>,
    /// A socket being renewed away from (subscribed until it is drained).
    old: Option<VecDeque<usize>>,
    delivery: Delivery,
    rx: mpsc::Receiver<Box<Item>>,
    got: Vec<String>,
    /// The cursor's (time, transcript index) after each offer.
    cursor_at: Option<(TimeKey, usize)>,
    index_of: HashMap<String, usize>,
}

impl Sim {
    fn new(entries: Vec<Entry>, memory: usize) -> Sim {
        let (tx, rx) = mpsc::channel(1 << 16);
        let index_of = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Sim {
            entries,
            published: 0,
            transcript: Vec::new(),
            socket: VecDeque::new(),
            old: None,
            delivery: Delivery::with_memory(tx, Arc::new(SessionStats::default()), memory),
            rx,
            got: Vec::new(),
            cursor_at: None,
            index_of,
        }
    }

    fn publish(&mut self, n: usize) {
        for _ in 0..n {
            if self.published == self.entries.len() {
                return;
            }
            let i = self.published;
            self.published += 1;
            if !self.entries[i].ephemeral {
                self.transcript.push(i);
            }
            self.socket.push_back(i);
            if let Some(old) = &mut self.old {
                old.push_back(i);
            }
        }
    }

    /// Offers Entry `i`, then checks that the cursor did not move back.
    async fn offer(&mut self, i: usize, source: Source) -> Offered {
        let r = self
            .delivery
            .offer(self.entries[i].item(), source)
            .await
            .expect("the consumer is there");
        while let Ok(item) = self.rx.try_recv() {
            self.got.push(item.id.clone().unwrap());
        }
        if let Some(c) = self.delivery.cursor() {
            let at = TimeKey::parse(c.absolute_time.as_deref().unwrap()).unwrap();
            let index = self.index_of[&c.id];
            assert!(
                !self.entries[index].ephemeral,
                "the cursor is on a typing indicator"
            );
            if let Some(prev) = self.cursor_at {
                assert!(
                    (at, index) >= prev,
                    "the cursor moved back: {prev:?} to {:?}",
                    (at, index)
                );
            }
            self.cursor_at = Some((at, index));
        }
        r
    }

    async fn read(&mut self, n: usize) {
        for _ in 0..n {
            let Some(i) = self.socket.pop_front() else {
                return;
            };
            self.offer(i, Source::Live).await;
        }
    }

    /// The position in the transcript right after the cursor.
    fn after_cursor(&self) -> usize {
        match self.delivery.cursor() {
            None => 0,
            Some(c) => {
                let i = self.index_of[&c.id];
                self.transcript.iter().position(|&t| t == i).map_or(0, |p| p + 1)
            }
        }
    }

    /// One backfill, as `Supervisor::backfill` pages: true if it reached the end.
    async fn backfill(&mut self, p: &Pages) -> bool {
        let mut paging = Paging::new(p.max_pages);
        let mut from = self.after_cursor().saturating_sub(p.back);
        let mut last: Option<(Vec<usize>, Option<String>)> = None;
        for call in 0.. {
            if p.publish >> (call % 16) & 1 == 1 {
                self.publish(1);
            }
            let answer = match last.take() {
                Some(prev) if p.repeat >> (call % 16) & 1 == 1 => prev,
                _ => {
                    let to = (from + p.size).min(self.transcript.len());
                    let page = self.transcript[from.min(to)..to].to_vec();
                    let more = to < self.transcript.len() || p.endless;
                    let next = to.saturating_sub(p.overlap).max(from + 1).min(to.max(from));
                    (page, more.then(|| format!("tok-{next}")))
                }
            };
            last = Some(answer.clone());
            let (page, next_token) = answer;
            let mut fresh = 0;
            for i in page {
                match self.offer(i, Source::Transcript).await {
                    Offered::Delivered => fresh += 1,
                    Offered::Duplicate => {}
                    Offered::Ended => unreachable!("no chat-ended Item here"),
                }
            }
            match paging.after_page(fresh, next_token) {
                AfterPage::Next(t) => from = t["tok-".len()..].parse().unwrap(),
                AfterPage::FromCursor => {
                    from = self.after_cursor().saturating_sub(p.back);
                    last = None;
                }
                AfterPage::Complete => return true,
                AfterPage::Truncated => return false,
            }
        }
        unreachable!()
    }

    /// A socket lost: reconnect (a new socket subscribes) and backfill, again after
    /// every truncated backfill (the supervisor recycles the socket).
    async fn reconnect(&mut self, p: &Pages) {
        for _ in 0..10_000 {
            self.socket.clear();
            if self.backfill(p).await {
                return;
            }
        }
        panic!("the backfills never end: the session would never go live");
    }

    async fn renew(&mut self, both: usize, kept: usize, p: &Pages) {
        // The new socket subscribes; the old one still is.
        let old = std::mem::take(&mut self.socket);
        self.old = Some(old);
        self.publish(both);
        let mut old = self.old.take().unwrap();
        old.truncate(kept);
        for i in old {
            self.offer(i, Source::Live).await;
        }
        if !self.backfill(p).await {
            self.reconnect(p).await;
        }
    }

    async fn stale(&mut self, from: usize, len: usize) {
        let delivered = self.after_cursor();
        if delivered == 0 {
            return;
        }
        let from = from % delivered;
        let to = (from + len).min(delivered);
        let page: Vec<usize> = self.transcript[from..to].iter().rev().copied().collect();
        for i in page {
            let r = self.offer(i, Source::Transcript).await;
            assert_eq!(
                r,
                Offered::Duplicate,
                "{} was delivered again",
                self.entries[i].id
            );
        }
    }
}

fn run(memory: usize, steps: Vec<(u8, bool)>, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut sim = Sim::new(entries(memory, steps), memory);
        // The session starts: subscribe, then the first backfill.
        let first = Pages {
            size: 3,
            back: 0,
            overlap: 0,
            repeat: 0,
            publish: 0,
            endless: false,
            max_pages: 1000,
        };
        sim.reconnect(&first).await;
        for a in &actions {
            match a {
                Action::Publish(n) => sim.publish(*n),
                Action::Read(n) => sim.read(*n).await,
                Action::Drop(p) => sim.reconnect(p).await,
                Action::Renew { both, kept, pages } => sim.renew(*both, *kept, pages).await,
                Action::Stale { from, len } => sim.stale(*from, *len).await,
            }
        }
        // Everything is published; a last drop and backfill, and the socket read out.
        let n = sim.entries.len();
        sim.publish(n);
        sim.reconnect(&first).await;
        let queued = sim.socket.len();
        sim.read(queued).await;
        let want: Vec<&str> = sim
            .transcript
            .iter()
            .map(|&i| sim.entries[i].id.as_str())
            .collect();
        let persisted: Vec<&str> = sim
            .got
            .iter()
            .filter(|id| id.starts_with('m'))
            .map(String::as_str)
            .collect();
        prop_assert_eq!(persisted, want, "the transcript's Items, each once, in order");
        let mut typing: Vec<&String> = sim.got.iter().filter(|id| id.starts_with('t')).collect();
        let all = typing.len();
        typing.sort();
        typing.dedup();
        prop_assert_eq!(typing.len(), all, "a typing indicator was delivered twice");
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Memory of 1 to 4 Ids against overlaps of dozens of Items.
    #[test]
    fn every_item_exactly_once_in_order_and_the_cursor_never_moves_back(
        memory in 1usize..5,
        steps in proptest::collection::vec((prop_oneof![2 => Just(0u8), 3 => Just(1u8), 1 => Just(7u8)], proptest::bool::weighted(0.2)), 1..80),
        actions in proptest::collection::vec(action(), 0..40),
    ) {
        run(memory, steps, actions)?;
    }
}

// The shrunk failures proptest found, by name.

fn pages_of(size: usize, back: usize, repeat: u16, publish: u16, endless: bool, max_pages: u32) -> Pages {
    Pages {
        size,
        back,
        overlap: 0,
        repeat,
        publish,
        endless,
        max_pages,
    }
}

/// A page served twice (same Items, same NextToken) in the middle of the transcript
/// brought nothing new, and the backfill took it for the end: the live Item after the
/// gap then moved the cursor past four Items never delivered. Paging now asks again
/// from the cursor before it calls a backfill complete.
#[test]
fn a_page_served_twice_is_not_taken_for_the_transcripts_end() {
    run(
        1,
        vec![(0, false); 12],
        vec![
            Action::Publish(5),
            Action::Drop(pages_of(1, 0, 2578, 1457, false, 2)),
            Action::Read(1),
        ],
    )
    .unwrap();
}

/// With a one-call page limit and an endless NextToken, a backfill ending on a page that
/// brings nothing new must not count as truncated, or the session reconnects forever.
#[test]
fn an_endless_next_token_with_a_one_page_limit_still_goes_live() {
    run(
        2,
        vec![(1, false); 6],
        vec![
            Action::Publish(3),
            Action::Drop(pages_of(1, 0, 0, 0, true, 1)),
            Action::Read(9),
        ],
    )
    .unwrap();
}

/// A typing indicator after the cursor's Item pushed its Id out of a 1-Id memory; a
/// backfill from the cursor's time then delivered the cursor's Item again. Live-only
/// Items now have an Id memory of their own.
#[test]
fn typing_indicators_never_push_the_cursors_id_out_of_the_memory() {
    run(
        1,
        [vec![(0, false); 5], vec![(0, true)]].concat(),
        vec![
            Action::Publish(6),
            Action::Read(6),
            Action::Drop(pages_of(2, 1, 0, 0, false, 1)),
        ],
    )
    .unwrap();
}

/// Two typing indicators published during a renewal reach both sockets; the old one is
/// drained, and the new one's copy of the first was delivered again once the memory
/// (1 Id) had forgotten it. Live-only Items older than the newest one delivered are now
/// duplicates (they come from the sockets only, in order).
#[test]
fn typing_indicators_in_a_renewals_overlap_are_delivered_once() {
    run(
        1,
        [vec![(0, false); 8], vec![(0, true); 2]].concat(),
        vec![
            Action::Publish(7),
            Action::Read(5),
            Action::Renew {
                both: 3,
                kept: 5,
                pages: pages_of(1, 0, 0, 0, false, 1),
            },
            Action::Read(1),
            Action::Read(1),
        ],
    )
    .unwrap();
}
