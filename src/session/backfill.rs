//! Backfill: after every (re)subscribe and renewal, GetTranscript pages FORWARD from the
//! cursor until the transcript's end, so Items published while no socket was subscribed
//! are delivered, in order, once; and `--history none`'s starting point.

use super::delivery::{ConsumerGone, Offered, Source};
use super::supervisor::Supervisor;
use crate::api::model::*;
use crate::api::ApiError;
use crate::secret::Secret;
use tracing::{debug, warn};

/// How a backfill finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backfilled {
    /// Up to the transcript's end.
    Complete,
    /// The chat-ended Item was delivered.
    Ended,
    /// `max_backfill_pages` calls made and more to read: the next backfill goes on
    /// from the cursor (after a reconnect, so the socket's Items wait on the server).
    Truncated,
}

/// What a backfill does after a page: the paging rule of [`Supervisor::backfill`],
/// apart from the calls (so it can be tested on its own: `tests/delivery_property.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPage {
    /// Ask for the next page with this NextToken.
    Next(String),
    /// Ask again from the cursor, without a NextToken: the page brought nothing new
    /// although the service gave a NextToken — the end of the transcript (a service
    /// that keeps handing out NextTokens), or a page served twice in the middle of it.
    FromCursor,
    /// Up to the transcript's end.
    Complete,
    /// The page limit is reached and there is more to read.
    Truncated,
}

/// The paging state of one backfill.
#[derive(Debug, Clone)]
pub struct Paging {
    pages: u64,
    max_pages: u64,
    /// The last page brought nothing new and paging went back to the cursor.
    restarted: bool,
}

impl Paging {
    /// A backfill that makes at most `max_pages` calls (at least one).
    pub fn new(max_pages: u32) -> Paging {
        Paging {
            pages: 0,
            max_pages: u64::from(max_pages.max(1)),
            restarted: false,
        }
    }

    /// Calls made so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Counts a call that brought no page (the cursor's Id unknown, see below).
    pub fn count_call(&mut self) {
        self.pages += 1;
    }

    /// After a page that brought `fresh` Items not delivered before and `next_token`:
    /// paging stops when NextToken is empty; when a page brings nothing new, it asks
    /// again from the cursor once, and stops if that brings nothing new either (a
    /// service that hands out a NextToken at the end of the transcript: complete; a
    /// page served twice is not taken for the end); and after `max_pages` calls
    /// (truncated: the next backfill goes on from the cursor), of which the last
    /// brought something new.
    pub fn after_page(&mut self, fresh: u32, next_token: Option<String>) -> AfterPage {
        self.pages += 1;
        let restarted = std::mem::replace(&mut self.restarted, false);
        match next_token.filter(|t| !t.is_empty()) {
            Some(_) if fresh == 0 && restarted => {
                debug!(
                    pages = self.pages,
                    "transcript pages bring nothing new; the backfill is complete"
                );
                AfterPage::Complete
            }
            // Even at the page limit (one call over it): a truncated backfill must have
            // brought something new, or a service with an endless NextToken would be
            // read again and again and never go live.
            Some(_) if fresh == 0 => {
                debug!(
                    pages = self.pages,
                    "a transcript page brought nothing new; asking again from the cursor"
                );
                self.restarted = true;
                AfterPage::FromCursor
            }
            Some(_) if self.pages >= self.max_pages => {
                warn!(
                    pages = self.pages,
                    "stopping this backfill at its page limit; the next one goes on from the cursor"
                );
                AfterPage::Truncated
            }
            Some(t) => AfterPage::Next(t),
            None => AfterPage::Complete,
        }
    }
}

pub(super) enum BackfillError {
    Api(ApiError),
    ConsumerGone,
}

impl From<ConsumerGone> for BackfillError {
    fn from(_: ConsumerGone) -> Self {
        BackfillError::ConsumerGone
    }
}

impl Supervisor {
    /// `--history none`: remembers the transcript's last Item as the starting point,
    /// before the first dial, so nothing published after it can be missed.
    pub(super) async fn anchor(&mut self, token: &Secret) -> Result<(), ApiError> {
        let req = GetTranscriptRequest {
            max_results: Some(10),
            scan_direction: Some(ScanDirection::Backward),
            sort_order: Some(SortKey::Descending),
            start_position: Some(StartPosition {
                most_recent: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = self.api.get_transcript(token, &req).await?;
        if let Some(last) = resp
            .transcript
            .iter()
            .find(|i| !i.is_ephemeral() && i.id.is_some())
        {
            debug!(id = ?last.id, "history none: starting after the transcript's last Item");
            self.delivery.skip(last);
        }
        self.anchored = true;
        Ok(())
    }

    /// Pages the transcript FORWARD from the cursor until NextToken is empty, delivering
    /// what is new. Paging also stops when a page brings nothing new (a service that
    /// hands out a NextToken at the end of the transcript: complete), and after
    /// `max_backfill_pages` calls (truncated).
    pub(super) async fn backfill(&mut self, token: &Secret) -> Result<Backfilled, BackfillError> {
        let mut start = self.delivery.cursor().map(|c| StartPosition {
            id: Some(c.id.clone()),
            ..Default::default()
        });
        let mut next_token: Option<String> = None;
        let mut paging = Paging::new(self.cfg.max_backfill_pages);
        loop {
            let req = GetTranscriptRequest {
                max_results: Some(self.cfg.page_size),
                scan_direction: Some(ScanDirection::Forward),
                sort_order: Some(SortKey::Ascending),
                start_position: start.clone(),
                next_token: next_token.take(),
                contact_id: None,
            };
            let resp = match self.api.get_transcript(token, &req).await {
                Ok(r) => r,
                Err(e)
                    if e.is_validation()
                        && paging.pages() == 0
                        && start.as_ref().is_some_and(|s| s.id.is_some()) =>
                {
                    // The cursor's Item is not in the transcript (it should be): fall back
                    // to its time, and let de-duplication drop what we already have.
                    let time = self.delivery.cursor().and_then(|c| c.absolute_time.clone());
                    let Some(time) = time else {
                        return Err(BackfillError::Api(e));
                    };
                    warn!(error = %e, "transcript does not know the cursor's Id; resuming from its time");
                    start = Some(StartPosition {
                        absolute_time: Some(time),
                        ..Default::default()
                    });
                    paging.count_call();
                    continue;
                }
                Err(e) => return Err(BackfillError::Api(e)),
            };
            let mut fresh = 0u32;
            for item in resp.transcript {
                match self.delivery.offer(item, Source::Transcript).await? {
                    Offered::Ended => return Ok(Backfilled::Ended),
                    Offered::Delivered => fresh += 1,
                    Offered::Duplicate => {}
                }
            }
            match paging.after_page(fresh, resp.next_token) {
                AfterPage::Next(t) => next_token = Some(t),
                AfterPage::FromCursor => {
                    start = self.delivery.cursor().map(|c| StartPosition {
                        id: Some(c.id.clone()),
                        ..Default::default()
                    });
                }
                AfterPage::Complete => break,
                AfterPage::Truncated => return Ok(Backfilled::Truncated),
            }
        }
        Ok(Backfilled::Complete)
    }
}
