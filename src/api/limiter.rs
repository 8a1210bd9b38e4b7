//! A process-wide rate limiter per API operation: the service's quotas are per Amazon
//! Connect instance, so a thousand sessions reconnecting after an outage must queue
//! instead of stampeding into 429s.
//!
//! Each operation has a token bucket (`rate` per second, at most `burst` at once) and,
//! on top of it, a sliding one-second window that never admits more than `burst` calls
//! (a bucket alone admits `burst + rate` in its first second). Calls are admitted in the
//! order they asked (each reserves the earliest slot both rules allow, then sleeps until
//! it), on tokio's clock, so paused-time tests see exact schedules. SendMessage and
//! SendEvent share one bucket, as they share one quota.

use super::Operation;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A rate: `rate` calls per second on average, at most `burst` in any one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: u32,
}

impl Limit {
    /// The service's default quota for `op`, where it has one.
    pub fn service_default(op: Operation) -> Option<Limit> {
        let (rate, burst) = match op {
            Operation::CreateParticipantConnection => (6.0, 9),
            Operation::GetTranscript => (8.0, 12),
            Operation::SendMessage | Operation::SendEvent => (10.0, 15),
            Operation::DisconnectParticipant => (3.0, 5),
            _ => return None,
        };
        Some(Limit { rate, burst })
    }
}

const WINDOW: Duration = Duration::from_secs(1);

struct Bucket {
    limit: Limit,
    /// Tokens available at `at`.
    tokens: f64,
    at: Instant,
    /// The admission times of the last `burst` calls (reserved, possibly in the future).
    recent: VecDeque<Instant>,
}

impl Bucket {
    fn new(limit: Limit, now: Instant) -> Bucket {
        let limit = Limit {
            rate: if limit.rate.is_finite() && limit.rate > 0.0 {
                limit.rate
            } else {
                1.0
            },
            burst: limit.burst.max(1),
        };
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            at: now,
            recent: VecDeque::with_capacity(limit.burst as usize),
        }
    }

    /// Reserves the earliest admission at or after `now` and returns it.
    fn reserve(&mut self, now: Instant) -> Instant {
        // The bucket: refill up to `burst`, and if no whole token is there, wait for one.
        let start = now.max(self.at);
        let refilled = self.tokens + (start - self.at).as_secs_f64() * self.limit.rate;
        self.tokens = refilled.min(f64::from(self.limit.burst));
        self.at = start;
        let mut admit = start;
        if self.tokens < 1.0 {
            admit += Duration::from_secs_f64((1.0 - self.tokens) / self.limit.rate);
        }
        // The window: the call `burst` places back must be a whole second earlier.
        if self.recent.len() == self.limit.burst as usize {
            if let Some(&oldest) = self.recent.front() {
                admit = admit.max(oldest + WINDOW);
            }
            self.recent.pop_front();
        }
        // Take the token at `admit`.
        self.tokens += (admit - self.at).as_secs_f64() * self.limit.rate;
        self.tokens = self.tokens.min(f64::from(self.limit.burst)) - 1.0;
        self.at = admit;
        self.recent.push_back(admit);
        admit
    }
}

/// The limits of one process, shared by every `ApiClient` clone built with it.
#[derive(Clone, Default)]
pub struct RateLimiter {
    buckets: Arc<HashMap<&'static str, Arc<Mutex<Bucket>>>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.buckets.keys().collect();
        names.sort();
        f.debug_struct("RateLimiter").field("operations", &names).finish()
    }
}

/// The bucket an operation draws from: SendMessage and SendEvent share one.
fn bucket_key(op: Operation) -> &'static str {
    match op {
        Operation::SendEvent => Operation::SendMessage.name(),
        other => other.name(),
    }
}

impl RateLimiter {
    /// No limits at all.
    pub fn unlimited() -> RateLimiter {
        RateLimiter::default()
    }

    /// The service's default quotas.
    pub fn service_defaults() -> RateLimiter {
        RateLimiter::with_limits(
            Operation::ALL
                .iter()
                .filter_map(|op| Limit::service_default(*op).map(|l| (*op, l))),
        )
    }

    /// These limits (for SendMessage and SendEvent, the last one given wins for both);
    /// operations not named are not limited.
    pub fn with_limits(limits: impl IntoIterator<Item = (Operation, Limit)>) -> RateLimiter {
        let now = Instant::now();
        let mut buckets = HashMap::new();
        for (op, limit) in limits {
            buckets.insert(bucket_key(op), Arc::new(Mutex::new(Bucket::new(limit, now))));
        }
        RateLimiter {
            buckets: Arc::new(buckets),
        }
    }

    /// The limit in force for `op`, if any.
    pub fn limit(&self, op: Operation) -> Option<Limit> {
        self.buckets
            .get(bucket_key(op))
            .map(|b| b.lock().expect("limiter lock").limit)
    }

    /// Waits until a call of `op` may go out, and counts it.
    pub async fn acquire(&self, op: Operation) {
        let Some(bucket) = self.buckets.get(bucket_key(op)) else {
            return;
        };
        let admit = bucket.lock().expect("limiter lock").reserve(Instant::now());
        if admit > Instant::now() {
            tracing::trace!(operation = op.name(), wait = ?(admit - Instant::now()), "rate limited");
            tokio::time::sleep_until(admit).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admission times of `n` calls asked for at once.
    async fn admissions(limiter: &RateLimiter, op: Operation, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire(op).await;
                Instant::now() - start
            }));
        }
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        at.sort();
        at
    }

    fn max_in_any_window(at: &[Duration]) -> usize {
        (0..at.len())
            .map(|i| at[i..].iter().take_while(|t| **t < at[i] + WINDOW).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_burst_in_any_second_and_the_rate_on_average() {
        let limiter = RateLimiter::service_defaults();
        let at = admissions(&limiter, Operation::CreateParticipantConnection, 100).await;
        assert_eq!(max_in_any_window(&at), 9, "burst 9");
        assert_eq!(
            at.iter().filter(|t| **t == Duration::ZERO).count(),
            9,
            "the burst goes at once"
        );
        // 100 calls at 6/s after a burst of 9: about (100 - 9) / 6 s.
        let last = at.last().unwrap().as_secs_f64();
        assert!((14.0..=17.0).contains(&last), "{last}");
    }

    #[tokio::test(start_paused = true)]
    async fn send_message_and_send_event_share_a_bucket_and_others_are_free() {
        let limiter = RateLimiter::service_defaults();
        let (a, b) = tokio::join!(
            admissions(&limiter, Operation::SendMessage, 15),
            admissions(&limiter, Operation::SendEvent, 15)
        );
        let mut all: Vec<_> = a.into_iter().chain(b).collect();
        all.sort();
        assert_eq!(max_in_any_window(&all), 15);
        let free = admissions(&limiter, Operation::DescribeView, 1000).await;
        assert_eq!(*free.last().unwrap(), Duration::ZERO);
        assert_eq!(
            limiter.limit(Operation::SendEvent),
            Limit::service_default(Operation::SendMessage)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_to_its_burst_only() {
        let limiter = RateLimiter::with_limits([(Operation::GetTranscript, Limit { rate: 8.0, burst: 12 })]);
        admissions(&limiter, Operation::GetTranscript, 12).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let at = admissions(&limiter, Operation::GetTranscript, 24).await;
        assert_eq!(at.iter().filter(|t| **t == Duration::ZERO).count(), 12);
        assert_eq!(max_in_any_window(&at), 12);
    }

    #[tokio::test(start_paused = true)]
    async fn nonsense_limits_are_made_safe() {
        let limiter = RateLimiter::with_limits([(
            Operation::GetTranscript,
            Limit {
                rate: f64::NAN,
                burst: 0,
            },
        )]);
        let at = admissions(&limiter, Operation::GetTranscript, 3).await;
        assert_eq!(
            at,
            [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(2)]
        );
    }
}
