//! The stop flag tasks share: a `watch` channel of `bool`, set once to ask every task
//! holding a receiver to finish (the daemon's sessions, consumers and listeners).

use tokio::sync::watch;

/// Resolves once the flag is set, or once its sender is gone (nobody can set it any
/// more, so the task should not wait on it either).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
