//! `connect-chatd tail`: one session, its Items written to a sink in order, until the
//! chat ends, a shutdown is asked for, or the sink's reader goes away. With a state
//! store, the cursor is saved after each batch of Items is written and flushed, and a
//! restart continues after it.

use crate::api::model::Timestamp;
use crate::api::ApiClient;
use crate::secret::Secret;
use crate::session::delivery::Cursor;
use crate::session::store::{Loaded, SavedState, StateStore, StoreError};
use crate::session::{
    Credentials, History, Resume, SessionError, SessionOutcome, Supervisor, SupervisorConfig,
};
use crate::sink::{Sink, SinkError};
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Sink(SinkError),
    #[error("cannot save the session state: {0}")]
    Store(#[from] StoreError),
}

/// Items written between two flushes (and cursor saves) at most, however fast they come.
const MAX_BATCH: usize = 1024;

/// Runs until the chat ends (`ChatEnded`), `shutdown` resolves (`Shutdown`: sockets are
/// closed and Items already received are still written), or the sink is closed
/// (`ConsumerGone`).
pub async fn tail<S: Sink>(
    api: ApiClient,
    participant_token: Secret,
    mut cfg: SupervisorConfig,
    sink: &mut S,
    store: Option<&StateStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<SessionOutcome, TailError> {
    let mut saved = SavedState {
        cursor: None,
        connection_token: None,
        connection_expiry: None,
    };
    let resume = match store.map(StateStore::load) {
        None | Some(Loaded::Fresh) => None,
        Some(Loaded::Resumed(state)) => {
            tracing::info!(cursor = ?state.cursor.as_ref().map(|c| &c.id), "resuming from the state directory");
            saved = state.clone();
            Some(Resume {
                cursor: state.cursor,
                credentials: state
                    .connection_token
                    .zip(state.connection_expiry)
                    .map(|(token, expiry)| Credentials {
                        token,
                        expiry: expiry.0,
                    }),
            })
        }
        Some(Loaded::Unusable(why)) => {
            tracing::warn!(reason = %why, "ignoring the saved state; starting with a full backfill");
            cfg.history = History::All;
            None
        }
    };
    let handle = Supervisor::spawn_resumed(api, participant_token, cfg, resume);
    let (mut items, mut session) = handle.into_parts();
    tokio::pin!(shutdown);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            item = items.recv() => {
                let Some(item) = item else { break Ok(()) };
                // Everything that is ready goes out in one write; the flush (and the
                // saved cursor) follow when nothing more is ready.
                let mut cursor = None;
                let mut next = Some(item);
                let mut batch = 0;
                let mut failed = None;
                while let Some(item) = next.take() {
                    if let Err(e) = sink.push(&item).await {
                        failed = Some(e);
                        break;
                    }
                    if let (Some(id), false) = (&item.id, item.is_ephemeral()) {
                        cursor = Some(Cursor { id: id.clone(), absolute_time: item.absolute_time.clone() });
                    }
                    batch += 1;
                    if batch < MAX_BATCH {
                        next = items.try_recv().ok();
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if let Err(e) = sink.flush().await {
                    break Err(e);
                }
                if let (Some(store), Some(cursor)) = (store, cursor) {
                    saved.cursor = Some(cursor);
                    if let Err(e) = store.save(&saved) {
                        session.shutdown();
                        drop(items);
                        let _ = session.join().await;
                        return Err(e.into());
                    }
                }
            }
            Ok(()) = session.credentials.changed(), if store.is_some() => {
                let creds = session.credentials.borrow_and_update().clone();
                if let (Some(store), Some(c)) = (store, creds) {
                    saved.connection_token = Some(c.token);
                    saved.connection_expiry = Some(Timestamp(c.expiry));
                    if let Err(e) = store.save(&saved) {
                        tracing::warn!(error = %e, "cannot save the session state");
                    }
                }
            }
            _ = &mut shutdown, if !stopping => {
                tracing::info!("shutdown requested; closing the session");
                stopping = true;
                session.shutdown();
            }
        }
    };
    match result {
        Ok(()) => Ok(session.join().await?),
        Err(e) => {
            session.shutdown();
            drop(items);
            let _ = session.join().await;
            match e {
                SinkError::Closed => Ok(SessionOutcome::ConsumerGone),
                other => Err(TailError::Sink(other)),
            }
        }
    }
}
