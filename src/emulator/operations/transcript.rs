//! GetTranscript: its validation rules, StartPosition (Id, AbsoluteTime, MostRecent),
//! both scan directions and sort orders, and the NextToken that pages through it.

use crate::api::model::*;
use crate::emulator::state::{ServiceError, State};

impl State {
    pub fn get_transcript(
        &mut self,
        token: &str,
        req: GetTranscriptRequest,
    ) -> Result<GetTranscriptResponse, ServiceError> {
        let p = self.participant_for_connection(token)?;
        let contact_id = p.contact_id.clone();
        if let Some(c) = &req.contact_id {
            if c != &contact_id {
                return Err(ServiceError::validation(format!(
                    "ContactId {c} is not this participant's contact"
                )));
            }
        }
        let max = match req.max_results {
            None | Some(0) => 10,
            Some(n @ 1..=100) => n as usize,
            Some(n) => {
                return Err(ServiceError::validation(format!(
                    "MaxResults {n} is not within 0..=100"
                )))
            }
        };
        let forward = match req.scan_direction {
            None | Some(ScanDirection::Backward) => false,
            Some(ScanDirection::Forward) => true,
            Some(ScanDirection::Unknown(s)) => {
                return Err(ServiceError::validation(format!("Unknown ScanDirection {s}")))
            }
        };
        let descending = match req.sort_order {
            None | Some(SortKey::Ascending) => false,
            Some(SortKey::Descending) => true,
            Some(SortKey::Unknown(s)) => {
                return Err(ServiceError::validation(format!("Unknown SortOrder {s}")))
            }
        };
        let items = &self.chats[&contact_id].items;
        let len = items.len();
        // `start` is the first index to return (forward), or the last one (backward).
        let start: Option<usize> = if let Some(tok) = &req.next_token {
            Some(decode_next_token(tok, &contact_id, forward)?)
        } else if let Some(sp) = &req.start_position {
            let set = [
                sp.id.is_some(),
                sp.absolute_time.is_some(),
                sp.most_recent.is_some(),
            ];
            if set.iter().filter(|b| **b).count() > 1 {
                return Err(ServiceError::validation(
                    "StartPosition takes only one of Id, AbsoluteTime, MostRecent",
                ));
            }
            if let Some(id) = &sp.id {
                let i = items
                    .iter()
                    .position(|it| it.id.as_deref() == Some(id))
                    .ok_or_else(|| {
                        ServiceError::validation(format!("StartPosition Id {id} is not in this transcript"))
                    })?;
                Some(i)
            } else if let Some(t) = &sp.absolute_time {
                let t = crate::clock::parse_timestamp(t).map_err(|_| {
                    ServiceError::validation(format!("StartPosition AbsoluteTime {t:?} is not ISO 8601"))
                })?;
                let after = items.partition_point(|it| it.absolute_time().is_some_and(|a| a < t));
                if forward {
                    Some(after)
                } else {
                    let upto = items.partition_point(|it| it.absolute_time().is_some_and(|a| a <= t));
                    upto.checked_sub(1).or(Some(usize::MAX))
                }
            } else if let Some(n) = sp.most_recent {
                if !(0..=100).contains(&n) {
                    return Err(ServiceError::validation(format!(
                        "MostRecent {n} is not within 0..=100"
                    )));
                }
                if forward {
                    Some(len.saturating_sub(n as usize))
                } else {
                    len.checked_sub(1)
                }
            } else {
                None
            }
        } else {
            None
        };
        let (mut page, next): (Vec<Item>, Option<usize>) = if forward {
            let from = start.unwrap_or(0).min(len);
            let to = (from + max).min(len);
            let more = to < len || self.quirks.endless_next_token;
            (items[from..to].to_vec(), more.then_some(to))
        } else {
            match start.or(len.checked_sub(1)) {
                Some(last) if last != usize::MAX && len > 0 => {
                    let last = last.min(len - 1);
                    let first = (last + 1).saturating_sub(max);
                    (items[first..=last].to_vec(), first.checked_sub(1))
                }
                _ => (Vec::new(), None),
            }
        };
        if descending {
            page.reverse();
        }
        Ok(GetTranscriptResponse {
            initial_contact_id: Some(contact_id.clone()),
            transcript: page,
            next_token: next.map(|i| encode_next_token(&contact_id, forward, i)),
        })
    }
}

fn encode_next_token(contact_id: &str, forward: bool, index: usize) -> String {
    use base64::Engine;
    let dir = if forward { "F" } else { "B" };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1|{contact_id}|{dir}|{index}"))
}

fn decode_next_token(token: &str, contact_id: &str, forward: bool) -> Result<usize, ServiceError> {
    use base64::Engine;
    let bad = || ServiceError::validation("Invalid NextToken");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('|').collect();
    let dir = if forward { "F" } else { "B" };
    match parts.as_slice() {
        ["v1", c, d, i] if *c == contact_id && *d == dir => i.parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}
