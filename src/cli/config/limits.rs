//! Client-side rate limits, one token bucket per operation, defaulting to the service's
//! per-instance quotas: CreateParticipantConnection 6/s burst 9, GetTranscript 8/s
//! burst 12, SendMessage + SendEvent 10/s burst 15 (one bucket for both),
//! DisconnectParticipant 3/s burst 5. The other operations have no client-side limit
//! unless `[limits.<Operation>]` gives one (then both `rate` and `burst`).
//!
//! SendMessage and SendEvent share a bucket: both keys appear in the resolved map with
//! the same [`Limit`] and the same [`Limit::bucket`] (`"SendMessage+SendEvent"`); set
//! either (or both to the same values). A missing `rate` or `burst` under an operation
//! with a default keeps the default's.
//!
//! Beside the operations, `[limits]` holds the daemon's [`Capacity`]: `max_sessions`,
//! `max_body`, `max_connections`, `max_streams` (counts, at least 1) and
//! `header_timeout`, `idle_timeout` (durations).

use super::duration::Seconds;
use super::error::{lookup, ConfigError, Problem};
use super::raw::RawLimit;
use crate::api::Operation;
use crate::daemon::Capacity;
use figment::Figment;
use std::collections::BTreeMap;

/// The `[limits]` keys that are not operations.
pub const CAPACITY_KEYS: [&str; 6] = [
    "max_sessions",
    "max_body",
    "max_connections",
    "max_streams",
    "header_timeout",
    "idle_timeout",
];

/// The daemon's capacity: each key as configured, else its default.
pub(super) fn capacity(figment: &Figment, problems: &mut Vec<Problem>) -> Capacity {
    let mut c = Capacity::default();
    let mut count =
        |key: &str, value: &mut usize| match figment.extract_inner::<u64>(&format!("limits.{key}")) {
            Ok(0) => problems.push(Problem::new(
                format!("limits.{key}"),
                lookup(figment, &format!("limits.{key}")),
                "must be at least 1",
            )),
            Ok(n) => *value = usize::try_from(n).unwrap_or(usize::MAX),
            Err(e) if e.missing() => {}
            Err(e) => problems.extend(ConfigError::from_figment_at(e, figment, &format!("limits.{key}"))),
        };
    count("max_sessions", &mut c.max_sessions);
    count("max_body", &mut c.max_body);
    count("max_connections", &mut c.max_connections);
    count("max_streams", &mut c.max_streams);
    let mut duration = |key: &str, value: &mut std::time::Duration| match figment
        .extract_inner::<Seconds>(&format!("limits.{key}"))
    {
        Ok(s) => *value = s.0,
        Err(e) if e.missing() => {}
        Err(e) => problems.extend(ConfigError::from_figment_at(e, figment, &format!("limits.{key}"))),
    };
    duration("header_timeout", &mut c.header_timeout);
    duration("idle_timeout", &mut c.idle_timeout);
    c
}

/// The bucket name of SendMessage and SendEvent.
pub const SEND_BUCKET: &str = "SendMessage+SendEvent";

/// The service quotas: (operation, requests per second, burst).
pub const DEFAULT_LIMITS: [(Operation, f64, u32); 5] = [
    (Operation::CreateParticipantConnection, 6.0, 9),
    (Operation::GetTranscript, 8.0, 12),
    (Operation::SendMessage, 10.0, 15),
    (Operation::SendEvent, 10.0, 15),
    (Operation::DisconnectParticipant, 3.0, 5),
];

/// A token bucket: `rate` requests per second on average, up to `burst` at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: u32,
    /// Operations with the same bucket draw from one bucket: the operation's own name,
    /// or [`SEND_BUCKET`] for SendMessage and SendEvent.
    pub bucket: String,
}

/// The bucket an operation draws from.
pub fn bucket_of(op: Operation) -> &'static str {
    match op {
        Operation::SendMessage | Operation::SendEvent => SEND_BUCKET,
        other => other.name(),
    }
}

fn default_of(op: Operation) -> Option<(f64, u32)> {
    DEFAULT_LIMITS
        .iter()
        .find(|(o, _, _)| *o == op)
        .map(|&(_, r, b)| (r, b))
}

/// The limits for every operation that has a default or is configured.
pub(super) fn resolve(
    entries: &BTreeMap<String, figment::value::Value>,
    figment: &Figment,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Limit> {
    let names = Operation::ALL.map(|o| o.name()).join(", ");
    let mut raw: BTreeMap<&str, RawLimit> = BTreeMap::new();
    for key in entries.keys() {
        if CAPACITY_KEYS.contains(&key.as_str()) {
            continue;
        }
        if !Operation::ALL.iter().any(|o| o.name() == key) {
            problems.push(Problem::new(
                format!("limits.{key}"),
                lookup(figment, &format!("limits.{key}")),
                format!(
                    "unknown operation {key:?}; expected one of {names}, or one of {}",
                    CAPACITY_KEYS.join(", ")
                ),
            ));
            continue;
        }
        match figment.extract_inner::<RawLimit>(&format!("limits.{key}")) {
            Ok(limit) => {
                raw.insert(key, limit);
            }
            Err(e) => problems.extend(ConfigError::from_figment_at(e, figment, &format!("limits.{key}"))),
        }
    }
    let mut out = BTreeMap::new();
    for op in Operation::ALL {
        let name = op.name();
        let given = raw.get(name);
        let Some(limit) = one(op, given, figment, problems) else {
            continue;
        };
        out.insert(name.to_string(), limit);
    }
    // SendMessage and SendEvent: whichever was configured sets the shared bucket.
    let (msg, evt) = (raw.get("SendMessage"), raw.get("SendEvent"));
    let shared = match (msg.is_some(), evt.is_some()) {
        (true, true) if out.get("SendMessage") != out.get("SendEvent") => {
            problems.push(Problem::new(
                "limits.SendEvent",
                lookup(figment, "limits.SendEvent"),
                "SendMessage and SendEvent share one bucket: configure one of them, or both with the same rate and burst",
            ));
            None
        }
        (false, true) => out.get("SendEvent").cloned(),
        _ => out.get("SendMessage").cloned(),
    };
    if let Some(limit) = shared {
        out.insert("SendMessage".into(), limit.clone());
        out.insert("SendEvent".into(), limit);
    }
    out
}

/// One operation's limit from its configuration and default; `None` if neither.
fn one(
    op: Operation,
    given: Option<&RawLimit>,
    figment: &Figment,
    problems: &mut Vec<Problem>,
) -> Option<Limit> {
    let name = op.name();
    let default = default_of(op);
    let rate = given.and_then(|g| g.rate).or(default.map(|d| d.0));
    let burst = given.and_then(|g| g.burst).or(default.map(|d| d.1));
    let key = |field: &str| format!("limits.{name}.{field}");
    let (rate, burst) = match (rate, burst) {
        (Some(r), Some(b)) => (r, b),
        (None, None) => return None,
        (r, _) => {
            let field = if r.is_none() { "rate" } else { "burst" };
            problems.push(Problem::new(
                key(field),
                lookup(figment, &format!("limits.{name}")),
                format!("{name} has no default limit: give both rate and burst"),
            ));
            return None;
        }
    };
    let mut ok = true;
    if !(rate.is_finite() && rate > 0.0) {
        problems.push(Problem::new(
            key("rate"),
            lookup(figment, &key("rate")),
            format!("{rate} is not a positive number of requests per second"),
        ));
        ok = false;
    }
    if burst == 0 {
        problems.push(Problem::new(
            key("burst"),
            lookup(figment, &key("burst")),
            "burst must be at least 1",
        ));
        ok = false;
    }
    ok.then(|| Limit {
        rate,
        burst,
        bucket: bucket_of(op).to_string(),
    })
}
