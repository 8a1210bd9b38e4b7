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
        let mut pages = 0u64;
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
                    if e.is_validation() && pages == 0 && start.as_ref().is_some_and(|s| s.id.is_some()) =>
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
                    pages += 1;
                    continue;
                }
                Err(e) => return Err(BackfillError::Api(e)),
            };
            pages += 1;
            let mut fresh = 0u32;
            for item in resp.transcript {
                match self.delivery.offer(item, Source::Transcript).await? {
                    Offered::Ended => return Ok(Backfilled::Ended),
                    Offered::Delivered => fresh += 1,
                    Offered::Duplicate => {}
                }
            }
            match resp.next_token.filter(|t| !t.is_empty()) {
                Some(_) if fresh == 0 => {
                    debug!(
                        pages,
                        "a transcript page brought nothing new; the backfill is complete"
                    );
                    break;
                }
                Some(_) if pages >= u64::from(self.cfg.max_backfill_pages.max(1)) => {
                    warn!(
                        pages,
                        "stopping this backfill at its page limit; the next one goes on from the cursor"
                    );
                    return Ok(Backfilled::Truncated);
                }
                Some(t) => next_token = Some(t),
                None => break,
            }
        }
        Ok(Backfilled::Complete)
    }
}
