//! `connect-chatd tail`: one session, its Items written to a sink in order, until the
//! chat ends, a shutdown is asked for, or the sink's reader goes away.

use crate::api::ApiClient;
use crate::secret::Secret;
use crate::sink::{Sink, SinkError};
use crate::supervisor::{SessionError, SessionOutcome, Supervisor, SupervisorConfig};
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Sink(SinkError),
}

/// Runs until the chat ends (`ChatEnded`), `shutdown` resolves (`Shutdown`: sockets are
/// closed and Items already received are still written), or the sink is closed
/// (`ConsumerGone`).
pub async fn tail<S: Sink>(
    api: ApiClient,
    participant_token: Secret,
    cfg: SupervisorConfig,
    sink: &mut S,
    shutdown: impl Future<Output = ()>,
) -> Result<SessionOutcome, TailError> {
    let handle = Supervisor::spawn(api, participant_token, cfg);
    let (mut items, session) = handle.into_parts();
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        tokio::select! {
            item = items.recv() => {
                let Some(item) = item else { break };
                match sink.deliver(&item).await {
                    Ok(()) => {}
                    Err(SinkError::Closed) => {
                        session.shutdown();
                        drop(items);
                        let _ = session.join().await;
                        return Ok(SessionOutcome::ConsumerGone);
                    }
                    Err(e) => {
                        session.shutdown();
                        drop(items);
                        let _ = session.join().await;
                        return Err(TailError::Sink(e));
                    }
                }
            }
            _ = &mut shutdown, if !stopping => {
                tracing::info!("shutdown requested; closing the session");
                stopping = true;
                session.shutdown();
            }
        }
    }
    Ok(session.join().await?)
}
