//! What stops an example: Ctrl-C, or SIGTERM (what `kill`, systemd, Docker and Kubernetes
//! send). Either one stops accepting and drains the server for at most [`DRAIN`] (a client
//! that never finishes its request cannot hold the process), then the last-use batch is
//! written.

use std::future::Future;
use std::time::Duration;

/// How long a stopping server waits for requests in flight before it drops their
/// connections. Well inside Kubernetes' default 30 s grace period.
pub(crate) const DRAIN: Duration = Duration::from_secs(5);

/// A stop signal to hand the server's graceful shutdown, and the drain deadline: [`DRAIN`]
/// after the signal, when whatever is still open is dropped.
pub(crate) fn signal_and_deadline() -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (stopped, stopping) = tokio::sync::oneshot::channel();
    let stop = async move {
        signal().await;
        let _ = stopped.send(());
    };
    let deadline = async move {
        match stopping.await {
            Ok(()) => tokio::time::sleep(DRAIN).await,
            // The server ended on its own: no deadline.
            Err(_) => std::future::pending().await,
        }
    };
    (stop, deadline)
}

/// Logs that the drain ran out.
pub(crate) fn drain_ran_out() {
    tracing::warn!(
        drain_secs = DRAIN.as_secs(),
        "connections still open after the drain time; closing them"
    );
}

/// Resolves at the first Ctrl-C or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            // No SIGTERM handler to be had: Ctrl-C still stops it.
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
