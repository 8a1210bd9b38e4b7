//! Making a connection: CreateParticipantConnection (websocket and ConnectionCredentials
//! together), dialling the presigned URL inside its connect window, and when to renew.

use super::{Credentials, SupervisorConfig};
use crate::api::model::*;
use crate::api::{ApiClient, ApiError};
use crate::clock::until;
use crate::secret::{PresignedUrl, Secret};
use crate::socket::{self, SocketError, SocketHandle};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// A CreateParticipantConnection answer, not dialled yet.
pub(super) struct Created {
    pub(super) url: PresignedUrl,
    pub(super) ws_expiry: OffsetDateTime,
    pub(super) creds: Credentials,
    pub(super) received_at: Instant,
    pub(super) server_now: OffsetDateTime,
}

/// A subscribed socket and what it was created with.
pub(super) struct Connection {
    pub(super) socket: SocketHandle,
    pub(super) creds: Credentials,
    pub(super) renew_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectFailure {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("CreateParticipantConnection's answer has no {0}")]
    Missing(&'static str),
    #[error("the presigned URL's connect window passed before it could be dialled")]
    WindowPassed,
}

/// Makes connections; cheap to clone into a renewal future.
#[derive(Clone)]
pub(super) struct Connector {
    pub(super) api: ApiClient,
    pub(super) participant_token: Secret,
    pub(super) cfg: Arc<SupervisorConfig>,
}

impl Connector {
    pub(super) async fn create(&self) -> Result<Created, ConnectFailure> {
        let request = CreateParticipantConnectionRequest {
            connection_types: Some(vec![
                ConnectionType::Websocket,
                ConnectionType::ConnectionCredentials,
            ]),
            connect_participant: self.cfg.connect_participant.then_some(true),
        };
        let resp = self
            .api
            .create_participant_connection(&self.participant_token, &request)
            .await?;
        let received_at = Instant::now();
        let ws = resp.websocket.ok_or(ConnectFailure::Missing("Websocket"))?;
        let creds = resp
            .connection_credentials
            .ok_or(ConnectFailure::Missing("ConnectionCredentials"))?;
        Ok(Created {
            url: ws.url,
            ws_expiry: ws.connection_expiry.0,
            creds: Credentials {
                token: creds.connection_token,
                expiry: creds.expiry.0,
            },
            received_at,
            server_now: self.api.server_now(),
        })
    }

    pub(super) async fn dial(&self, created: Created) -> Result<Connection, ConnectFailure> {
        let usable_for = self.cfg.connect_window.saturating_sub(self.cfg.connect_margin);
        if created.received_at.elapsed() > usable_for {
            return Err(ConnectFailure::WindowPassed);
        }
        let socket = socket::open_via(&created.url, &self.cfg.socket, self.api.egress()).await?;
        let renew_at = self.renew_at(&created);
        Ok(Connection {
            socket,
            creds: created.creds,
            renew_at,
        })
    }

    pub(super) async fn connect(self) -> Result<Connection, ConnectFailure> {
        let created = self.create().await?;
        self.dial(created).await
    }

    /// When to renew: before the websocket or the token expires (by the server's
    /// clock, so local skew does not matter), with a lead and a jitter scaled to the
    /// lifetime, and no later than `max_socket_age`.
    pub(super) fn renew_at(&self, c: &Created) -> Instant {
        let ttl = until(c.server_now, c.ws_expiry).min(until(c.server_now, c.creds.expiry));
        let lead = self.cfg.renew_lead.min(ttl / 4);
        let jitter_cap = self.cfg.renew_jitter.min(ttl / 10);
        let jitter = jitter_cap.mul_f64(fastrand::f64());
        let by_expiry = ttl.saturating_sub(lead + jitter);
        let by_age = self.cfg.max_socket_age.saturating_sub(jitter);
        c.received_at + by_expiry.min(by_age).max(Duration::from_secs(1))
    }
}

/// How a failed step is handled.
pub(super) enum Verdict {
    /// Back off and try again (the failure, for the log).
    Retry(ConnectFailure),
    Denied(ApiError),
    Fatal(ApiError),
}

pub(super) fn verdict(e: ConnectFailure) -> Verdict {
    match e {
        ConnectFailure::Api(e) if e.is_access_denied() => Verdict::Denied(e),
        ConnectFailure::Api(e) if !e.is_retryable() => Verdict::Fatal(e),
        other => Verdict::Retry(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;

    fn created(now: OffsetDateTime, ws_ttl: i64, token_ttl: i64) -> Created {
        Created {
            url: PresignedUrl::new("ws://127.0.0.1:1/x"),
            ws_expiry: now + time::Duration::seconds(ws_ttl),
            creds: Credentials {
                token: Secret::new("t"),
                expiry: now + time::Duration::seconds(token_ttl),
            },
            received_at: Instant::now(),
            server_now: now,
        }
    }

    fn connector() -> Connector {
        Connector {
            api: ApiClient::builder(Endpoint::from_url("http://127.0.0.1:1").unwrap())
                .build()
                .unwrap(),
            participant_token: Secret::new("p"),
            cfg: Arc::new(SupervisorConfig::default()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_is_early_enough_and_jittered() {
        let c = connector();
        let now = OffsetDateTime::now_utc();
        let mut delays = Vec::new();
        for _ in 0..200 {
            let cr = created(now, 3600, 86400);
            delays.push((c.renew_at(&cr) - cr.received_at).as_secs_f64());
        }
        let (min, max) = delays
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), d| (a.min(*d), b.max(*d)));
        // One hour of ConnectionExpiry: the 55-minute cap, minus up to 30 s of jitter.
        assert!(min >= 3300.0 - 30.0 && max <= 3300.0, "{min}..{max}");
        assert!(
            max - min > 15.0,
            "renewals are spread, not in lockstep: {min}..{max}"
        );
        // A short expiry scales lead and jitter down but still renews before it.
        for _ in 0..50 {
            let cr = created(now, 15, 86400);
            let d = (c.renew_at(&cr) - cr.received_at).as_secs_f64();
            assert!((9.75..=11.25).contains(&d), "{d}");
        }
        // A token expiring before the socket wins.
        let cr = created(now, 3600, 600);
        let d = (c.renew_at(&cr) - cr.received_at).as_secs_f64();
        assert!((600.0 - 60.0 - 30.0..=540.0).contains(&d), "{d}");
    }
}
