//! The stop signals: Ctrl-C (SIGINT) and, on Unix, SIGTERM — the signal
//! systemd, Docker and Kubernetes send to stop a process. Commands that
//! hold work (`sub`, `pub`, `dlq replay|purge`) treat both alike: stop
//! taking more, settle or hand back what they hold, exit cleanly.

use std::future::Future;

/// A future that resolves with the signal's name once SIGINT or SIGTERM
/// arrives.
///
/// The SIGTERM handler is installed when this is called, not when the
/// future is first polled: call it before the work starts, so a SIGTERM
/// that arrives meanwhile is not lost (or fatal). If a handler cannot be
/// installed, that signal keeps its default action and a warning says so;
/// the future then never resolves for it.
pub(crate) fn stop() -> impl Future<Output = &'static str> {
    #[cfg(unix)]
    let term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "could not install a SIGTERM handler: SIGTERM stops the command at once");
            None
        }
    };
    async move {
        let interrupt = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "could not install a Ctrl-C handler");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        {
            let terminate = async {
                match term {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupt => "SIGINT",
                _ = terminate => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            interrupt.await;
            "Ctrl-C"
        }
    }
}
