//! Stopping on SIGINT / SIGTERM.

use std::fmt;

/// The signal that asked for a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (what `kill`, systemd and Kubernetes send).
    Terminate,
    /// No signal handler could be installed (logged); resolved at once so
    /// that a service does not run on unstoppable.
    Unavailable,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Unavailable => "no signal handler",
        })
    }
}

/// Resolves when the process gets SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// For [`Handler::run_until`](crate::Handler::run_until) (which wants a
/// `Future<Output = ()>`: `async { shutdown_signal().await; }`) or a
/// `tokio::select!` around [`HandlerHandle::shutdown`](crate::HandlerHandle::shutdown).
/// If no handler can be installed it logs why and resolves at once with
/// [`Signal::Unavailable`]. Needs a tokio runtime.
pub async fn shutdown_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not install a SIGTERM handler; waiting for SIGINT only");
                return interrupt().await;
            }
        };
        tokio::select! {
            s = interrupt() => s,
            _ = term.recv() => Signal::Terminate,
        }
    }
    #[cfg(not(unix))]
    {
        interrupt().await
    }
}

async fn interrupt() -> Signal {
    match tokio::signal::ctrl_c().await {
        Ok(()) => Signal::Interrupt,
        Err(e) => {
            tracing::error!(error = %e, "could not install a SIGINT handler; shutting down");
            Signal::Unavailable
        }
    }
}
