//! The control API's Item streams: `GET /v1/sessions/{name}/items` and `GET /v1/items`
//! as Server-Sent Events, resumed after the Item a `Last-Event-ID` (or `?after=`) names,
//! also across a restart, or replayed with `?from=start`; at most `limits.max_streams`
//! open at once.

use super::control::ApiFailure;
use super::{Daemon, DaemonError};
use crate::sink::feed::{self, Start};
use crate::sink::sse;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

type AppState = Arc<Daemon>;

/// `Retry-After` when `limits.max_streams` is reached, in seconds.
const RETRY_STREAMS: u32 = 5;

#[derive(Deserialize)]
pub(crate) struct StreamQuery {
    pub(crate) after: Option<String>,
    from: Option<String>,
}

/// Where an SSE stream starts, as the request names it (before the journal is asked).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// With what is committed from now on.
    Now,
    /// `?from=start`: everything.
    Start,
    /// Right after an Item: of `session` (`None`: the stream's own session).
    After { session: Option<String>, at: Position },
}

/// An Item named in a resume position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// `#N`: an Item without an Id, by its journal position.
    Seq(crate::journal::Seq),
    Id(String),
}

/// The resume position: `Last-Event-ID` wins over `?after=`; `?from=start` replays
/// everything; otherwise the stream starts with what is committed from now on. On
/// `GET /v1/items` (`all`) the position is `NAME/ID`.
pub(crate) fn resume(headers: &HeaderMap, q: &StreamQuery, all: bool) -> Result<Resume, ApiFailure> {
    let id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiFailure::bad_request("Last-Event-ID is not text"))?
                .to_string(),
        ),
        None => q.after.clone(),
    };
    let Some(id) = id else {
        return match q.from.as_deref() {
            Some("start") => Ok(Resume::Start),
            None => Ok(Resume::Now),
            Some(other) => Err(ApiFailure::bad_request(format!(
                "from must be \"start\", not {other:?}"
            ))),
        };
    };
    let (session, item) = if all {
        let (session, item) = id
            .split_once('/')
            .ok_or_else(|| ApiFailure::bad_request(format!("after: {id:?} is not NAME/ID")))?;
        (Some(session.to_string()), item.to_string())
    } else {
        (None, id)
    };
    // `#N` as the streams write it: digits only (no sign: `#-5` is no position).
    let seq = item
        .strip_prefix('#')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok());
    let at = match seq {
        Some(seq) => Position::Seq(seq),
        None => Position::Id(item),
    };
    Ok(Resume::After { session, at })
}

/// The feed's start for `resume`, asking the journal where an Item is.
async fn start_of(daemon: &Daemon, own: Option<&str>, resume: Resume) -> Result<Start, ApiFailure> {
    Ok(match resume {
        Resume::Now => Start::Now,
        Resume::Start => Start::Start,
        Resume::After { session, at } => {
            let session = session.as_deref().or(own).unwrap_or_default();
            Start::After(seq_of(daemon, session, at).await?)
        }
    })
}

/// The journal position of Item `at` of `session`, for a resume.
async fn seq_of(daemon: &Daemon, session: &str, at: Position) -> Result<crate::journal::Seq, ApiFailure> {
    let id = match at {
        Position::Seq(seq) => return Ok(seq),
        Position::Id(id) => id,
    };
    let (j, s, i) = (daemon.journal().clone(), session.to_string(), id.clone());
    let seq = tokio::task::spawn_blocking(move || j.seq_of(&s, &i))
        .await
        .map_err(|_| {
            ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "journal read failed",
            )
        })?
        .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    seq.ok_or_else(|| ApiFailure::bad_request(format!("after: no Item {id:?} in session {session:?}")))
}

pub(crate) async fn session_items(
    State(daemon): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) = query.map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    if !daemon.knows(&name) {
        return Err(DaemonError::NotFound(name).into());
    }
    let start = start_of(&daemon, Some(&name), resume(&headers, &q, false)?).await?;
    let place = stream_place(&daemon)?;
    let position = stream_position(start);
    let entries = feed::follow_tracked(
        daemon.journal().clone(),
        Some(name),
        start,
        Some(position.clone()),
    );
    Ok(super::server::hold(sse::session_stream(entries, position), place))
}

pub(crate) async fn all_items(
    State(daemon): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) = query.map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    let start = start_of(&daemon, None, resume(&headers, &q, true)?).await?;
    let place = stream_place(&daemon)?;
    let position = stream_position(start);
    let entries = feed::follow_tracked(daemon.journal().clone(), None, start, Some(position.clone()));
    Ok(super::server::hold(sse::all_stream(entries, position), place))
}

/// A stream's position for the consumer-lag metric, from where it starts.
fn stream_position(start: Start) -> Arc<std::sync::atomic::AtomicI64> {
    let metrics = crate::metrics::global();
    metrics.stream_position(match start {
        Start::Start => 0,
        Start::After(seq) => seq,
        Start::Now => metrics.journal_head(),
    })
}

/// A place for one more SSE stream, or `429 too_many_streams`.
fn stream_place(daemon: &Daemon) -> Result<tokio::sync::OwnedSemaphorePermit, ApiFailure> {
    daemon.stream_permit().ok_or_else(|| {
        ApiFailure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "{} streams are open, as many as limits.max_streams allows",
                daemon.capacity().max_streams
            ),
        )
        .retry_after(RETRY_STREAMS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume_of(last_event_id: &str, all: bool) -> Resume {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", last_event_id.parse().unwrap());
        let q = StreamQuery {
            after: None,
            from: None,
        };
        resume(&h, &q, all).unwrap()
    }

    /// Found by the `sse_resume` fuzz target (reproducer `#-042\n/2`): a signed journal
    /// position was taken for one (`#-42`: everything again), and `#+7` for `#7`.
    #[test]
    fn only_digits_name_a_journal_position() {
        let after = |at| Resume::After { session: None, at };
        assert_eq!(resume_of("#42", false), after(Position::Seq(42)));
        for id in ["#-042", "#+7", "#", "# 1", "#1e3"] {
            assert_eq!(resume_of(id, false), after(Position::Id(id.into())), "{id}");
        }
        assert_eq!(
            resume_of("chat-1/#-1", true),
            Resume::After {
                session: Some("chat-1".into()),
                at: Position::Id("#-1".into())
            }
        );
        assert_eq!(
            crate::fuzzing::sse_resume(false, Some(b"#-042"), "/2"),
            Some(Ok("None #-042".into()))
        );
    }
}
