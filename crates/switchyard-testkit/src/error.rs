//! The error type of the testkit.

use std::fmt;
use std::io;

/// The message used when `redis-server` cannot be found on `PATH`.
pub(crate) const NOT_FOUND_MESSAGE: &str = "redis-server not found on PATH: install it with \
     'apt-get install -y redis-server' (Debian/Ubuntu) or run scripts/test, which installs it";

/// Everything that can go wrong while starting, stopping or talking to a
/// test Redis server.
///
/// `Debug` prints the same text as `Display`, so a failed `unwrap()` in a
/// test shows the full message (install hint, server log tail, ...).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// `redis-server` is not installed (not found on `PATH`).
    #[error("{}", NOT_FOUND_MESSAGE)]
    RedisServerNotFound,

    /// An I/O operation failed; `context` says which one.
    #[error("{context}: {source}")]
    Io {
        /// What the testkit was doing when the error happened.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// `redis-server` exited or did not become ready during startup.
    #[error("redis-server failed to start: {message}\n--- redis-server log (tail) ---\n{log_tail}")]
    Startup {
        /// Why the startup is considered failed.
        message: String,
        /// The last lines of the server's log file.
        log_tail: String,
    },

    /// The server did not stop cleanly (for example `SHUTDOWN SAVE` failed);
    /// the process has been killed.
    #[error("redis-server did not shut down cleanly: {0}")]
    Shutdown(String),

    /// The server answered a command with an error reply (`-ERR ...`,
    /// `-NOAUTH ...`, `-WRONGPASS ...`, ...). The string is the reply
    /// without the leading `-`.
    #[error("redis replied with an error: {0}")]
    Reply(String),

    /// The bytes received are not valid RESP2.
    #[error("RESP protocol error: {0}")]
    Protocol(String),

    /// The operation needs a running server but it is stopped.
    #[error("the redis-server process is not running")]
    NotRunning,

    /// `start_again` was called while the server is still running.
    #[error("the redis-server process is already running")]
    AlreadyRunning,

    /// A server binary other than `redis-server` (for example
    /// `valkey-server`) is not installed (not found on `PATH`).
    #[error("{binary} not found on PATH: {hint}")]
    ServerNotFound {
        /// The executable that was looked for (`"valkey-server"`).
        binary: String,
        /// How to install it.
        hint: String,
    },

    /// A testkit setting is invalid: an option out of its documented range,
    /// or an unknown value of an environment variable such as
    /// `SWITCHYARD_TEST_SERVER`. The message names the setting, the value
    /// and the accepted values.
    #[error("invalid testkit setting: {0}")]
    InvalidSetting(String),

    /// Generating or writing the test certificates failed.
    #[error("test certificates: {0}")]
    Tls(String),

    /// A condition awaited with a deadline (a replica in sync, sentinels
    /// agreeing on a new primary, ...) was not reached in time. The message
    /// says what was awaited and what the last check saw.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl fmt::Debug for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        if let TestkitError::Io { source, .. } = self {
            write!(f, " ({:?})", source.kind())?;
        }
        Ok(())
    }
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }

    /// The error reply text when this is [`TestkitError::Reply`].
    pub fn reply(&self) -> Option<&str> {
        match self {
            TestkitError::Reply(msg) => Some(msg),
            _ => None,
        }
    }

    /// Whether this is an error reply whose first word is `code`
    /// (for example `"NOAUTH"`, `"WRONGPASS"`, `"LOADING"`).
    pub fn is_reply_code(&self, code: &str) -> bool {
        self.reply()
            .and_then(|msg| msg.split_whitespace().next())
            .is_some_and(|first| first.eq_ignore_ascii_case(code))
    }

    /// The underlying I/O error kind, if this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TestkitError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// Whether this is an I/O timeout (a socket read or write timed out).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.io_kind(),
            Some(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
        )
    }

    /// Whether the peer closed or reset the connection (EOF, reset, broken
    /// pipe, aborted).
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self.io_kind(),
            Some(
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotConnected
            )
        )
    }
}
