//! What to start: the server kind ([`ServerKind`]) and the options of one
//! server ([`RedisOptions`], [`Persistence`]).

use std::env;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::TestkitError;
use crate::process::find_on_path;
use crate::tls::TlsOptions;

/// Which server implementation the testkit starts.
///
/// The default comes from the environment variable
/// [`SWITCHYARD_TEST_SERVER`](Self::ENV_VAR): `redis` or `valkey`
/// (ASCII case-insensitive); unset or empty means `redis`, anything else is a
/// [`TestkitError::InvalidSetting`] when a server is started. Valkey 8 speaks
/// the same protocol and reads the same configuration directives, so every
/// testkit feature works with both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerKind {
    /// `redis-server` / `redis-cli` (Debian package `redis-server`).
    Redis,
    /// `valkey-server` / `valkey-cli` (Debian package `valkey-server`, in
    /// bookworm-backports).
    Valkey,
}

impl ServerKind {
    /// The environment variable that chooses the default kind.
    pub const ENV_VAR: &'static str = "SWITCHYARD_TEST_SERVER";

    /// The kind chosen by [`ENV_VAR`](Self::ENV_VAR): `Redis` when it is
    /// unset or empty.
    ///
    /// Fails with [`TestkitError::InvalidSetting`] on any other value than
    /// `redis` or `valkey` (or when it is not valid UTF-8).
    pub fn from_env() -> Result<ServerKind, TestkitError> {
        match env::var(Self::ENV_VAR) {
            Ok(value) if value.trim().is_empty() => Ok(ServerKind::Redis),
            Ok(value) => value.parse(),
            Err(env::VarError::NotPresent) => Ok(ServerKind::Redis),
            Err(env::VarError::NotUnicode(raw)) => Err(TestkitError::InvalidSetting(format!(
                "{}={raw:?} is not valid UTF-8: set it to 'redis' or 'valkey', or unset it",
                Self::ENV_VAR
            ))),
        }
    }

    /// The short name: `"redis"` or `"valkey"` (what
    /// [`ENV_VAR`](Self::ENV_VAR) accepts).
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis",
            ServerKind::Valkey => "valkey",
        }
    }

    /// The server executable: `"redis-server"` or `"valkey-server"`.
    pub fn server_binary(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis-server",
            ServerKind::Valkey => "valkey-server",
        }
    }

    /// The command-line client: `"redis-cli"` or `"valkey-cli"`.
    pub fn cli_binary(self) -> &'static str {
        match self {
            ServerKind::Redis => "redis-cli",
            ServerKind::Valkey => "valkey-cli",
        }
    }

    /// Whether [`server_binary`](Self::server_binary) is on `PATH`.
    pub fn is_available(self) -> bool {
        find_on_path(self.server_binary()).is_some()
    }

    /// Path of [`server_binary`](Self::server_binary) on `PATH`, or the
    /// "not found" error with the install hint.
    pub(crate) fn find_server(self) -> Result<PathBuf, TestkitError> {
        find_on_path(self.server_binary()).ok_or_else(|| match self {
            ServerKind::Redis => TestkitError::RedisServerNotFound,
            ServerKind::Valkey => TestkitError::ServerNotFound {
                binary: self.server_binary().into(),
                hint: "install the Debian package valkey-server from <codename>-backports \
                       (scripts/install-deps does it), or unset SWITCHYARD_TEST_SERVER to \
                       test against redis-server"
                    .into(),
            },
        })
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServerKind {
    type Err = TestkitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.trim();
        if value.eq_ignore_ascii_case("redis") {
            Ok(ServerKind::Redis)
        } else if value.eq_ignore_ascii_case("valkey") {
            Ok(ServerKind::Valkey)
        } else {
            Err(TestkitError::InvalidSetting(format!(
                "{}={value:?} is not a known server kind: set it to 'redis' or 'valkey', \
                 or unset it (redis)",
                ServerKind::ENV_VAR
            )))
        }
    }
}

/// How the server persists its data across
/// [`RedisServer::restart`](crate::RedisServer::restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Persistence {
    /// No persistence: `save ""`, `appendonly no`. A restart loses all data.
    #[default]
    None,
    /// Append-only file (`appendonly yes`, no RDB snapshots).
    Aof,
    /// RDB snapshots with Redis' default save points; `stop`/`restart`
    /// use `SHUTDOWN SAVE`.
    Rdb,
}

/// Options for [`RedisServer::start_with`](crate::RedisServer::start_with).
///
/// Build it with struct-update syntax
/// (`RedisOptions { persistence: Persistence::Aof, ..Default::default() }`)
/// or with the chained setters.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Persistence mode (default [`Persistence::None`]).
    pub persistence: Persistence,
    /// Password of the default user (`requirepass`).
    pub password: Option<String>,
    /// An extra ACL user `(name, password)` with full permissions
    /// (`on >password ~* &* +@all`). When set,
    /// [`RedisServer::cmd`](crate::RedisServer::cmd),
    /// [`RedisServer::url`](crate::RedisServer::url) and readiness probes
    /// authenticate as this user.
    pub acl_user: Option<(String, String)>,
    /// `maxmemory-policy` (e.g. `"noeviction"`, `"allkeys-lru"`).
    pub maxmemory_policy: Option<String>,
    /// Further configuration directives, written as `name "value"` lines of
    /// the generated config file (the same as `--name value` on the command
    /// line; multi-argument directives such as `save` accept one
    /// space-separated value).
    pub extra_args: Vec<(String, String)>,
    /// How long to wait for the server to answer `PING` (default 10 s; zero
    /// is rejected with [`TestkitError::InvalidSetting`]).
    pub startup_timeout: Duration,
    /// Which server to start; `None` (the default) reads
    /// [`ServerKind::ENV_VAR`] when the server starts.
    pub kind: Option<ServerKind>,
    /// TLS: when set, the server also listens with TLS on a second free
    /// loopback port, with certificates from a [`TestPki`](crate::TestPki)
    /// generated for it (default `None`: plain TCP only).
    pub tls: Option<TlsOptions>,
    /// Starts the server as a replica of this address (`replicaof`), with
    /// `masterauth`/`masteruser` set from this server's own credentials
    /// (default `None`).
    pub replica_of: Option<SocketAddr>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            persistence: Persistence::None,
            password: None,
            acl_user: None,
            maxmemory_policy: None,
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(10),
            kind: None,
            tls: None,
            replica_of: None,
        }
    }
}

impl RedisOptions {
    /// Sets [`persistence`](Self::persistence).
    #[must_use]
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Sets [`password`](Self::password) (`requirepass`).
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets [`acl_user`](Self::acl_user).
    #[must_use]
    pub fn acl_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.acl_user = Some((user.into(), password.into()));
        self
    }

    /// Sets [`maxmemory_policy`](Self::maxmemory_policy).
    #[must_use]
    pub fn maxmemory_policy(mut self, policy: impl Into<String>) -> Self {
        self.maxmemory_policy = Some(policy.into());
        self
    }

    /// Appends one configuration directive to [`extra_args`](Self::extra_args).
    #[must_use]
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_args.push((name.into(), value.into()));
        self
    }

    /// Sets [`startup_timeout`](Self::startup_timeout).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets [`kind`](Self::kind).
    #[must_use]
    pub fn kind(mut self, kind: ServerKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Sets [`tls`](Self::tls).
    #[must_use]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`replica_of`](Self::replica_of).
    #[must_use]
    pub fn replica_of(mut self, primary: SocketAddr) -> Self {
        self.replica_of = Some(primary);
        self
    }

    /// The server kind: [`kind`](Self::kind), or [`ServerKind::from_env`].
    pub fn resolve_kind(&self) -> Result<ServerKind, TestkitError> {
        match self.kind {
            Some(kind) => Ok(kind),
            None => ServerKind::from_env(),
        }
    }

    /// Checks the settings that have a range.
    pub(crate) fn validate(&self) -> Result<(), TestkitError> {
        if self.startup_timeout.is_zero() {
            return Err(TestkitError::InvalidSetting(
                "RedisOptions::startup_timeout is zero: give the server time to start \
                 (e.g. 10 s)"
                    .into(),
            ));
        }
        match &self.tls {
            Some(tls) => tls.validate(),
            None => Ok(()),
        }
    }

    /// Whether the server listens with TLS only (no plain port).
    pub(crate) fn tls_only(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.tls_only)
    }

    /// The credentials clients must use: `(Some(user), password)` for the
    /// ACL user, `(None, password)` for `requirepass`.
    pub(crate) fn credentials(&self) -> Option<(Option<&str>, &str)> {
        if let Some((user, pass)) = &self.acl_user {
            Some((Some(user.as_str()), pass.as_str()))
        } else {
            self.password.as_deref().map(|p| (None, p))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_kinds_parse_and_reject_unknown_values() {
        assert_eq!("redis".parse::<ServerKind>().unwrap(), ServerKind::Redis);
        assert_eq!(
            " Valkey ".parse::<ServerKind>().unwrap(),
            ServerKind::Valkey
        );
        let err = "keydb".parse::<ServerKind>().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TestkitError::InvalidSetting(_)), "{text}");
        assert!(
            text.contains("SWITCHYARD_TEST_SERVER=\"keydb\"")
                && text.contains("'redis' or 'valkey'"),
            "{text}"
        );
        assert_eq!(ServerKind::Valkey.server_binary(), "valkey-server");
        assert_eq!(ServerKind::Valkey.cli_binary(), "valkey-cli");
        assert_eq!(ServerKind::Redis.to_string(), "redis");
    }

    #[test]
    fn an_explicit_kind_wins_over_the_environment() {
        let opts = RedisOptions::default().kind(ServerKind::Valkey);
        assert_eq!(opts.resolve_kind().unwrap(), ServerKind::Valkey);
    }

    #[test]
    fn zero_startup_timeout_is_rejected() {
        let err = RedisOptions::default()
            .startup_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("startup_timeout"), "{err}");
    }
}
