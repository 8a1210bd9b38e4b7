//! Entry points for the fuzz targets in `fuzz/`: each takes the bytes an input arrives
//! as and runs on them the parsing the daemon runs, reaching parsers that are private
//! to their modules. Not an API: hidden from the docs, no stability promised.
//!
//! The other targets call public functions directly: [`crate::socket::frame::decode`],
//! [`crate::api::client::decode_response`], [`crate::api::error::decode_error`],
//! [`crate::cli::config::load`] and [`crate::emulator::Offline`].

use crate::daemon::control::{self, AddBody, JsonBody, Position, Resume, StreamQuery};
use crate::daemon::outbound::{self, AttachmentBody, AttachmentQuery, EventBody, MessageBody};
use axum::body::Body;
use axum::extract::{FromRequest, Query};
use axum::http::{header, HeaderMap, HeaderValue, Request, Uri};
use futures_util::FutureExt;

/// The control API's routes that read a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRoute {
    /// `POST /v1/sessions`
    AddSession,
    /// `POST /v1/sessions/{name}/messages`
    Message,
    /// `POST /v1/sessions/{name}/events`
    Event,
    /// `POST /v1/sessions/{name}/attachments` with `{"path": …}`
    Attachment,
}

impl BodyRoute {
    pub const ALL: [BodyRoute; 4] = [
        BodyRoute::AddSession,
        BodyRoute::Message,
        BodyRoute::Event,
        BodyRoute::Attachment,
    ];
}

/// What the control API answers a request of `route` with this `Content-Type` and
/// body, up to the point where the daemon would act on it: `Ok` with a summary of the
/// checked request, or `Err` with the error's HTTP status.
pub fn control_body(route: BodyRoute, content_type: Option<&[u8]>, body: &[u8]) -> Result<String, u16> {
    let mut req = Request::new(Body::from(body.to_vec()));
    if let Some(ct) = content_type {
        // A value hyper would not have parsed never reaches the route.
        let Ok(v) = HeaderValue::from_bytes(ct) else {
            return Err(0);
        };
        req.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    fn read<T: serde::de::DeserializeOwned>(req: Request<Body>) -> Result<T, u16> {
        // The body is in memory: reading it never waits.
        JsonBody::<T>::from_request(req, &())
            .now_or_never()
            .expect("an in-memory body is ready at once")
            .map(|JsonBody(t)| t)
            .map_err(|e| e.status().as_u16())
    }
    let bad = |e: crate::api::outbound::InvalidOutbound| control::ApiFailure::from(e).status().as_u16();
    match route {
        BodyRoute::AddSession => {
            let s = control::new_session(read::<AddBody>(req)?).map_err(|e| e.status().as_u16())?;
            if s.participant_token.expose().trim() != s.participant_token.expose()
                || s.participant_token.expose().is_empty()
            {
                panic!("an accepted ParticipantToken is trimmed and not empty");
            }
            Ok(format!("{:?} {:?} {}", s.name, s.history, s.labels.len()))
        }
        BodyRoute::Message => {
            let r = outbound::message_request(&read::<MessageBody>(req)?).map_err(bad)?;
            Ok(format!("{} {}", r.content_type, r.content.len()))
        }
        BodyRoute::Event => {
            let (kind, r, receipt) = outbound::event_request(&read::<EventBody>(req)?).map_err(bad)?;
            Ok(format!("{kind:?} {} {receipt:?}", r.content_type))
        }
        BodyRoute::Attachment => {
            let (name, ct) =
                outbound::attachment_name(&read::<AttachmentBody>(req)?).map_err(|e| e.status().as_u16())?;
            Ok(format!("{name} {ct}"))
        }
    }
}

/// The `Idempotency-Key` header as the talking-back routes read it.
pub fn idempotency_key(value: &[u8]) -> Result<Option<String>, u16> {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert("idempotency-key", v);
    }
    outbound::idempotency_key(&headers).map_err(|e| e.status().as_u16())
}

/// The query strings of `DELETE /v1/sessions/{name}` (`?disconnect=`) and of a raw
/// attachment upload (`?name=`), as their routes read them.
pub fn control_queries(path_and_query: &str) -> (Option<Option<bool>>, Option<Option<String>>) {
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return (None, None);
    };
    let remove = Query::<control::RemoveQuery>::try_from_uri(&uri)
        .ok()
        .map(|Query(q)| q.disconnect);
    let attach = Query::<AttachmentQuery>::try_from_uri(&uri)
        .ok()
        .map(|Query(q)| q.name);
    (remove, attach)
}

/// Where an SSE stream of `GET /v1/sessions/{name}/items` (or `GET /v1/items` when
/// `all`) resumes, from a `Last-Event-ID` header and the URI's `?after=`/`?from=`:
/// `None` if hyper would not have let the request through, else the route's answer
/// (the position, or the error's status).
pub fn sse_resume(
    all: bool,
    last_event_id: Option<&[u8]>,
    path_and_query: &str,
) -> Option<Result<String, u16>> {
    let uri = path_and_query.parse::<Uri>().ok()?;
    let mut headers = HeaderMap::new();
    if let Some(v) = last_event_id {
        headers.insert("last-event-id", HeaderValue::from_bytes(v).ok()?);
    }
    let q = match Query::<StreamQuery>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(_) => return Some(Err(400)),
    };
    let r = match control::resume(&headers, &q, all) {
        Ok(r) => r,
        Err(e) => return Some(Err(e.status().as_u16())),
    };
    // The position names exactly what was given: joined again, it is the given text.
    let given = match last_event_id {
        Some(v) => std::str::from_utf8(v).ok().map(str::to_string),
        None => q.after.clone(),
    };
    Some(Ok(match r {
        Resume::Now | Resume::Start => {
            assert!(given.is_none(), "a resume position was ignored");
            format!("{r:?}")
        }
        Resume::After { session, at } => {
            assert_eq!(session.is_some(), all, "NAME/ID is for /v1/items only");
            let item = match &at {
                Position::Seq(n) => {
                    // `#` and digits only, of that value.
                    let g = given.as_deref().unwrap_or("");
                    let digits = g.rsplit_once("/#").map_or(g.strip_prefix('#'), |(_, d)| Some(d));
                    let digits = digits.expect("a journal position is written #N");
                    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{g:?}");
                    assert_eq!(digits.parse::<i64>().ok(), Some(*n), "{g:?}");
                    format!("{at:?}")
                }
                Position::Id(id) => id.clone(),
            };
            if let (Some(s), Position::Id(id), Some(g)) = (&session, &at, &given) {
                assert_eq!(&format!("{s}/{id}"), g);
            }
            if let (None, Position::Id(id), Some(g)) = (&session, &at, &given) {
                assert_eq!(id, g);
            }
            format!("{session:?} {item}")
        }
    }))
}
