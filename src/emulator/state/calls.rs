//! Request plumbing: injected faults and the call counters (per operation, per
//! second), the stats the tests read, the bearer checks of ParticipantToken and
//! ConnectionToken, and ClientToken idempotency.

use super::{Participant, ServiceError, State, Stats, CALL_LOG};
use crate::api::ErrorCode;
use crate::emulator::FaultSpec;
use std::time::Duration;
use tokio::time::Instant;

impl State {
    pub fn add_fault(&mut self, fault: FaultSpec) {
        self.faults
            .entry(fault.operation.clone())
            .or_default()
            .push_back(fault);
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The most calls of `operation` that came within any one second (of the last
    /// [`CALL_LOG`] calls).
    pub fn max_calls_in_any_second(&self, operation: &str) -> usize {
        let Some(times) = self.call_times.get(operation) else {
            return 0;
        };
        let times: Vec<_> = times.iter().copied().collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= std::time::Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.expired_token_uses = self.expired_token_uses.get();
        stats.open_sockets.clear();
        for s in self.sockets.values() {
            *stats.open_sockets.entry(s.participant_id.clone()).or_default() += 1;
        }
        stats
    }

    /// Counts a call and takes the injected fault due for it: how long to stall first,
    /// and the error to answer with (none for a fault whose status is a success, which
    /// only slows the call down).
    pub fn begin_call(&mut self, operation: &str) -> (Duration, Result<(), ServiceError>) {
        *self.stats.calls.entry(operation.to_string()).or_default() += 1;
        let times = self.call_times.entry(operation.to_string()).or_default();
        if times.len() == CALL_LOG {
            times.pop_front();
        }
        times.push_back(tokio::time::Instant::now());
        let Some(front) = self.faults.get_mut(operation).and_then(|q| q.front_mut()) else {
            return (Duration::ZERO, Ok(()));
        };
        let (status, delay) = (front.status, Duration::from_millis(front.delay_ms));
        front.count = front.count.saturating_sub(1);
        if front.count == 0 {
            self.faults.get_mut(operation).map(|q| q.pop_front());
        }
        if status < 400 {
            return (delay, Ok(()));
        }
        let code = ErrorCode::from_status(status);
        let message = match status {
            429 => "Rate exceeded".to_string(),
            500 => "Internal server error (injected)".to_string(),
            _ => format!("Injected fault {status}"),
        };
        (delay, Err(ServiceError::new(code, message)))
    }

    pub fn participant_for_token(&self, token: &str) -> Result<&Participant, ServiceError> {
        let pid = self
            .participant_tokens
            .get(token)
            .ok_or_else(|| ServiceError::denied("Invalid participant token"))?;
        let p = &self.participants[pid];
        if p.left {
            return Err(ServiceError::denied("The participant has left the chat"));
        }
        Ok(p)
    }

    pub fn participant_for_connection(&self, token: &str) -> Result<&Participant, ServiceError> {
        let info = self
            .connection_tokens
            .get(token)
            .ok_or_else(|| ServiceError::denied("Invalid connection token"))?;
        if Instant::now() >= info.expires {
            self.expired_token_uses.set(self.expired_token_uses.get() + 1);
            return Err(ServiceError::denied("The connection token has expired"));
        }
        let p = &self.participants[&info.participant_id];
        if p.left {
            return Err(ServiceError::denied("The participant has left the chat"));
        }
        Ok(p)
    }

    pub(in crate::emulator) fn live_participant_for_connection(
        &self,
        token: &str,
    ) -> Result<(String, String), ServiceError> {
        let p = self.participant_for_connection(token)?;
        if self.chats[&p.contact_id].ended {
            return Err(ServiceError::denied("The chat has ended"));
        }
        Ok((p.id.clone(), p.contact_id.clone()))
    }

    /// Runs `act` once per participant, operation and ClientToken: a retry with the same
    /// token gets the first answer again instead of acting twice.
    pub(in crate::emulator) fn once<T: serde::Serialize + serde::de::DeserializeOwned>(
        &mut self,
        pid: &str,
        op: &'static str,
        client_token: Option<&String>,
        act: impl FnOnce(&mut Self) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let key = client_token.map(|t| (pid.to_string(), op, t.clone()));
        if let Some(previous) = key.as_ref().and_then(|k| self.idempotent.get(k)) {
            return Ok(serde_json::from_value(previous.clone()).expect("stored from the same type"));
        }
        let answer = act(self)?;
        if let Some(k) = key {
            self.idempotent
                .insert(k, serde_json::to_value(&answer).expect("answers serialise"));
        }
        Ok(answer)
    }
}
