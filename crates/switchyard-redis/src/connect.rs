//! Connections: a shared multiplexed one that reconnects by itself, and
//! dedicated ones for blocking reads and subscriptions.
//!
//! Every connect is strict: it ends with a real round trip (`PING`, after
//! `AUTH` and `SELECT`) within the connect timeout, so a port that accepts
//! and never answers, a server that is not Redis, a proxy that closes at
//! once, a frozen Redis and a missing or wrong password all fail here, with
//! an error naming the address and the cause.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError, Value};
use switchyard_core::{Error, Health, Result};

use crate::config::RedisConfig;

/// How many times redis-rs' cluster connection retries a command that met
/// `TRYAGAIN`, `CLUSTERDOWN` or a lost node (with a backoff of 10 ms to
/// 1 s) before the error reaches the caller.
pub const CLUSTER_RETRIES: u32 = 5;

/// A Redis client for one [`RedisConfig`]: opens the connections the
/// adapters need, each bounded by the connect timeout.
#[derive(Clone)]
pub struct RedisClient {
    config: RedisConfig,
    client: Client,
    /// With Sentinel settings: the changes of primary seen so far.
    watch: Option<std::sync::Arc<crate::sentinel::PrimaryWatch>>,
    /// With cluster settings: the slot map.
    router: Option<std::sync::Arc<crate::cluster::Router>>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("config", &self.config)
            .finish()
    }
}

impl RedisClient {
    /// Prepares a client; connects nothing yet. Checks `config` first
    /// ([`RedisConfig::validate`]), so a config built in code and handed
    /// here directly meets the same ranges as one parsed from a URL.
    pub fn new(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        let client = client_for(
            &config,
            &config.host,
            config.port,
            config.db,
            config.username.as_deref(),
            config.password.as_ref().map(crate::Secret::expose),
        )?;
        let watch = crate::sentinel::PrimaryWatch::spawn(&config);
        let router = config
            .cluster
            .clone()
            .map(|c| std::sync::Arc::new(crate::cluster::Router::new(&config, c)));
        Ok(RedisClient {
            config,
            client,
            watch,
            router,
        })
    }

    /// How many times the sentinels named a new primary since this client
    /// (or the one it was cloned from) was made; always 0 without Sentinel.
    /// A connection opened under an older value should be replaced.
    pub fn primary_epoch(&self) -> u64 {
        self.watch.as_ref().map_or(0, |w| w.epoch())
    }

    /// With Sentinel settings: a client for the primary the sentinels name
    /// now (see [`crate::sentinel::resolve`]); else `self`.
    async fn current(&self) -> Result<std::borrow::Cow<'_, RedisClient>> {
        if self.config.sentinel.is_none() {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let mut primary = crate::sentinel::resolve(&self.config).await?;
        primary.sentinel = None;
        Ok(std::borrow::Cow::Owned(RedisClient::new(primary)?))
    }

    /// With cluster settings: the slot map that routes dedicated and
    /// hand-written connections (see [`crate::cluster`]).
    pub fn router(&self) -> Option<&std::sync::Arc<crate::cluster::Router>> {
        self.router.as_ref()
    }

    /// Whether this client reaches a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.router.is_some()
    }

    /// The settings of a connection for commands on `key`: on a cluster,
    /// those of the master serving `key`'s slot now (the slot map is
    /// fetched first when empty); with Sentinel settings, those of the
    /// primary the sentinels name now; else these settings.
    pub async fn config_for_key(&self, key: &[u8]) -> Result<RedisConfig> {
        if let Some(router) = &self.router {
            return router.master_for_key(key).await;
        }
        Ok(self.current().await?.config.clone())
    }

    /// A connection of its own (see [`dedicated`](Self::dedicated)) to the
    /// node that serves `key`: on a cluster the master of its slot, else
    /// the server (or the primary the sentinels name).
    pub async fn dedicated_for(
        &self,
        key: &[u8],
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection> {
        match &self.router {
            Some(router) => {
                RedisClient::new(router.master_for_key(key).await?)?
                    .dedicated_direct(response_timeout)
                    .await
            }
            None => self.dedicated(response_timeout).await,
        }
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The underlying redis-rs client.
    pub fn inner(&self) -> &Client {
        &self.client
    }

    /// The shared, multiplexed connection for ordinary commands. It
    /// reconnects by itself after a disconnect. Connecting and a first
    /// `PING` finish within the connect timeout, or this fails.
    ///
    /// With Sentinel settings the connection goes to the primary the
    /// sentinels name at this call.
    pub async fn shared(&self) -> Result<ConnectionManager> {
        self.current().await?.shared_direct().await
    }

    async fn shared_direct(&self) -> Result<ConnectionManager> {
        let timeout = self.config.connect_timeout;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(self.config.response_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        self.strict(async {
            let mut conn = self.client.get_connection_manager_with_config(cfg).await?;
            redis::cmd("PING").query_async::<Value>(&mut conn).await?;
            Ok(conn)
        })
        .await
    }

    /// On a cluster: redis-rs' cluster connection, which routes each
    /// command by its key's slot, follows `MOVED` and `ASK`, and retries
    /// `TRYAGAIN` and `CLUSTERDOWN` up to [`CLUSTER_RETRIES`] times within
    /// the response timeout. Connecting to the seeds and a first `PING`
    /// finish within the connect timeout, or this fails.
    pub async fn cluster_connection(&self) -> Result<redis::cluster_async::ClusterConnection> {
        let cfg = &self.config;
        let Some(cluster) = &cfg.cluster else {
            return Err(Error::InvalidConfig(
                "a cluster connection needs cluster settings (redis+streams+cluster://…)".into(),
            ));
        };
        let mut nodes = Vec::with_capacity(cluster.seeds.len());
        for (host, port) in &cluster.seeds {
            nodes.push(connection_info(cfg, host, *port, 0, None, None)?);
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.response_timeout)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(1_000);
        if let Some(user) = &cfg.username {
            builder = builder.username(user);
        }
        if let Some(password) = &cfg.password {
            builder = builder.password(password.expose());
        }
        #[cfg(feature = "tls")]
        if cfg.tls {
            builder = builder.tls(if cfg.tls_insecure {
                redis::TlsMode::Insecure
            } else {
                redis::TlsMode::Secure
            });
            if let Some(certificates) = crate::tls::certificates(cfg)? {
                builder = builder.certs(certificates);
            }
        }
        let client = builder.build().map_err(|e| {
            Error::InvalidConfig(format!("redis cluster client for {}: {e}", cluster.addrs()))
        })?;
        self.strict(async {
            let mut conn = client.get_async_connection().await?;
            redis::cmd("PING").query_async::<Value>(&mut conn).await?;
            Ok(conn)
        })
        .await
    }

    /// A connection of its own, for commands that block (XREAD BLOCK,
    /// XREADGROUP BLOCK): its response timeout must exceed the block time.
    /// `None` disables the response timeout. Connecting and a first `PING`
    /// finish within the connect timeout, or this fails.
    ///
    /// With Sentinel settings the connection goes to the primary the
    /// sentinels name at this call.
    pub async fn dedicated(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection> {
        self.current()
            .await?
            .dedicated_direct(response_timeout)
            .await
    }

    async fn dedicated_direct(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection> {
        let timeout = self.config.connect_timeout;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(response_timeout);
        self.strict(async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            redis::cmd("PING").query_async::<Value>(&mut conn).await?;
            Ok(conn)
        })
        .await
    }

    /// A subscribing connection (SUBSCRIBE / PSUBSCRIBE). Connecting and a
    /// first `PING` finish within the connect timeout, or this fails.
    ///
    /// With Sentinel settings the connection goes to the primary the
    /// sentinels name at this call.
    pub async fn pubsub(&self) -> Result<PubSub> {
        self.current().await?.pubsub_direct().await
    }

    async fn pubsub_direct(&self) -> Result<PubSub> {
        self.strict(async {
            let mut conn = self.client.get_async_pubsub().await?;
            // An error reply comes back as a value here, not as an error.
            if let Value::ServerError(e) = conn.ping::<Value>().await? {
                return Err(e.into());
            }
            Ok(conn)
        })
        .await
    }

    /// Runs a connect-and-PING within the connect timeout and maps its
    /// failure onto a clear error.
    async fn strict<T>(
        &self,
        attempt: impl Future<Output = std::result::Result<T, RedisError>>,
    ) -> Result<T> {
        crate::tls::warn_if_insecure(&self.config);
        match tokio::time::timeout(self.config.connect_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(&e)),
            Err(_) => Err(no_reply(&self.config, "the connection or PING")),
        }
    }

    /// The error for a failed connection attempt, naming the address: the
    /// credentials refused (`NOAUTH`, `WRONGPASS`) or a command not
    /// permitted (`NOPERM`) are not transient and say what to do; a reply
    /// that is not RESP says the server is not Redis; the rest (refused,
    /// reset, closed) are [`Error::Connect`].
    pub fn connect_error(&self, e: &RedisError) -> Error {
        let cfg = &self.config;
        if cfg.tls
            && e.code().is_none()
            && let Some((kind, reason)) = crate::tls::tls_failure(cfg, &e.to_string())
        {
            return crate::tls::tls_error(cfg, kind, reason);
        }
        if let Some(code) = e.code() {
            let detail = e.detail().unwrap_or("");
            return refused(cfg, "the connection set-up", &format!("{code} {detail}"));
        }
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return refused(cfg, "AUTH", &format!("WRONGPASS {e}"));
        }
        if e.kind() == redis::ErrorKind::Parse {
            let text = e.to_string();
            return not_redis(cfg, "PING", text.lines().next().unwrap_or_default());
        }
        if e.is_timeout() {
            return no_reply(cfg, "the connection or PING");
        }
        let reason = if e.is_connection_refusal() {
            "connection refused".to_owned()
        } else if e.is_connection_dropped() {
            closed_early(cfg, &e.to_string())
        } else {
            e.to_string()
        };
        connect_failed(cfg, reason)
    }
}

/// A redis-rs client for `host:port` with `cfg`'s TLS setting and the
/// given database and credentials (those of `cfg`, or a sentinel's).
pub(crate) fn client_for(
    cfg: &RedisConfig,
    host: &str,
    port: u16,
    db: i64,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Client> {
    let info = connection_info(cfg, host, port, db, username, password)?;
    let shown = crate::parse::host_port(host, port);
    match crate::tls::certificates(cfg)? {
        #[cfg(feature = "tls")]
        Some(certificates) => Client::build_with_tls(info, certificates),
        _ => Client::open(info),
    }
    .map_err(|e| Error::InvalidConfig(format!("redis client for {shown}: {e}")))
}

/// The redis-rs connection info for `host:port` with `cfg`'s TLS setting
/// and the given database and credentials.
fn connection_info(
    cfg: &RedisConfig,
    host: &str,
    port: u16,
    db: i64,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<redis::ConnectionInfo> {
    let addr = if cfg.tls {
        if !cfg!(feature = "tls") {
            return Err(Error::FeatureNotEnabled("tls"));
        }
        #[cfg(feature = "tls")]
        {
            // Several crates may try to install a provider; the first wins.
            let _ = rustls::crypto::ring::default_provider().install_default();
            // The files, the certificate and its key are checked here,
            // with errors naming them, not at the first handshake.
            crate::tls::client_config(cfg)?;
        }
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: cfg.tls_insecure,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    };
    let mut redis_info = redis::RedisConnectionInfo::default().set_db(db);
    if let Some(user) = username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(pw) = password {
        redis_info = redis_info.set_password(pw);
    }
    let shown = crate::parse::host_port(host, port);
    Ok(addr
        .into_connection_info()
        .map_err(|e| Error::InvalidConfig(format!("redis address {shown}: {e}")))?
        .set_redis_settings(redis_info))
}

/// Runs `attempt` (a connect) and, while it fails with a transient error,
/// again after a backoff (100 ms doubling up to
/// [`RedisConfig::connect_retry_max_delay`]) until
/// [`RedisConfig::connect_retry`] has passed since the first try; each
/// failure is logged with the attempt number and the time left. With
/// `connect_retry` 0 it runs once. A non-transient error (credentials
/// refused, a bad certificate, a bad setting) ends it at once. The last
/// error is returned, saying how many attempts were made.
pub async fn connect_with_retry<T, F, Fut>(
    cfg: &RedisConfig,
    what: &str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(100).min(cfg.connect_retry_max_delay);
    let mut tries: u32 = 0;
    loop {
        tries = tries.saturating_add(1);
        let e = match attempt().await {
            Ok(v) => {
                if tries > 1 {
                    tracing::info!(what, tries, after = ?started.elapsed(), "redis: connected after retrying");
                }
                return Ok(v);
            }
            Err(e) => e,
        };
        let elapsed = started.elapsed();
        if cfg.connect_retry.is_zero() || !e.is_transient() || elapsed >= cfg.connect_retry {
            if tries > 1 {
                return Err(retried(e, tries, elapsed));
            }
            return Err(e);
        }
        let left = cfg.connect_retry - elapsed;
        let pause = delay.min(left);
        tracing::info!(
            what, attempt = tries, error = %e, next_in = ?pause, left = ?left,
            "redis: not reachable yet; retrying (connect_retry)"
        );
        tokio::time::sleep(pause).await;
        delay = delay.saturating_mul(2).min(cfg.connect_retry_max_delay);
    }
}

/// `e` after `tries` attempts over `elapsed`, said in its message.
fn retried(e: Error, tries: u32, elapsed: Duration) -> Error {
    match e {
        Error::Connect {
            backend,
            addr,
            timeout,
            reason,
        } => Error::Connect {
            backend,
            addr,
            timeout,
            reason: format!(
                "{reason} (gave up after {tries} attempts in {elapsed:.1?}: connect_retry)"
            ),
        },
        other => other,
    }
}

/// [`Error::Connect`] for `cfg` with `reason`.
pub(crate) fn connect_failed(cfg: &RedisConfig, reason: String) -> Error {
    Error::Connect {
        backend: "redis",
        addr: cfg.addr(),
        timeout: cfg.connect_timeout,
        reason,
    }
}

/// Nothing (or not all) came back within the connect timeout.
pub(crate) fn no_reply(cfg: &RedisConfig, waiting_for: &str) -> Error {
    let tls = if cfg.tls {
        "; with TLS: a plain (not TLS) Redis port never answers the TLS handshake, check that the port is the server's TLS port"
    } else {
        ""
    };
    connect_failed(
        cfg,
        format!(
            "timed out waiting for {waiting_for}: the port accepted but nothing answered (a frozen or overloaded Redis, or not a Redis server?){tls}"
        ),
    )
}

/// The reason for a server that closed the connection before answering:
/// with a plain client, a TLS port does exactly that.
pub(crate) fn closed_early(cfg: &RedisConfig, detail: &str) -> String {
    let hint = if cfg.tls {
        ""
    } else {
        "; if this is a TLS port, use rediss+streams:// or rediss+pubsub://"
    };
    format!("the server closed the connection before answering ({detail}){hint}")
}

/// The server answered `command` with something that is not RESP, or not
/// the reply Redis gives: probably not a Redis server.
pub(crate) fn not_redis(cfg: &RedisConfig, command: &str, what: &str) -> Error {
    Error::Backend(format!(
        "{} does not answer like a Redis server (reply to {command}: {what}); check the host and port in the URL",
        cfg.addr()
    ))
}

/// The server answered `command` with the error reply `text` (its code
/// first) during the connection set-up.
pub(crate) fn refused(cfg: &RedisConfig, command: &str, text: &str) -> Error {
    let addr = cfg.addr();
    let code = text.split_whitespace().next().unwrap_or("");
    let user = cfg
        .username
        .as_deref()
        .map(|u| format!(" of user {u:?}"))
        .unwrap_or_default();
    let for_user = cfg.username.as_deref().map_or_else(
        || " for the default user".to_owned(),
        |u| format!(" for user {u:?}"),
    );
    match code {
        "NOAUTH" => Error::Backend(format!(
            "redis at {addr} requires authentication ({text}): put the password in the URL (redis://:password@host:port, or redis://user:password@host:port for an ACL user)"
        )),
        "WRONGPASS" => Error::Backend(format!(
            "redis at {addr} refused the credentials{user} ({text}); check the user and password in the URL"
        )),
        "NOPERM" => Error::Backend(format!(
            "redis at {addr} refused {command}{for_user} ({text}): grant the user that command (ACL SETUSER <user> +<command>) or connect as another user"
        )),
        _ if command == "AUTH" => Error::Backend(format!(
            "redis at {addr} refused the credentials{user} ({text}); check the user and password in the URL"
        )),
        _ if crate::is_transient_code(code) || text.contains("max number of clients") => {
            Error::Transient(format!("redis at {addr}: {command} failed: {text}"))
        }
        _ => Error::Backend(format!("redis at {addr}: {command} failed: {text}")),
    }
}

/// PINGs over `conn` within `timeout` and reports the outcome as [`Health`].
pub async fn ping_health<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    addr: &str,
    timeout: Duration,
) -> Health {
    let started = Instant::now();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(conn);
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Health::Ok,
        Ok(Err(e)) => Health::Down(format!("redis at {addr} did not answer PING: {e}")),
        Err(_) => Health::Down(format!(
            "redis at {addr} did not answer PING within {:?}",
            started.elapsed()
        )),
    }
}

#[cfg(test)]
mod tests {
    //! Strict connects against peers that are not a working Redis.
    //! Reproduction of the defect these guard against: before connects
    //! ended with a `PING`, `lean::connect` to a listener that accepts and
    //! never answers (or answers `HTTP/1.1 400`, or closes at once, or is a
    //! SIGSTOPped redis-server, or asks for a password that the URL lacks)
    //! returned `Ok` in under a millisecond.

    use std::net::SocketAddr;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use switchyard_testkit::{RedisOptions, RedisServer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::lean;

    /// Before: `RedisClient::new` took a config built in code as it was, so
    /// a zero connect timeout or port 0 slipped past the range checks that
    /// `from_url` and the adapters' `connect` run.
    #[test]
    fn new_checks_the_config() {
        let zero = RedisConfig::new("127.0.0.1", 6379).with_connect_timeout(Duration::ZERO);
        let e = RedisClient::new(zero).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("connect_timeout")),
            "{e:?}"
        );
        assert!(RedisClient::new(RedisConfig::new("127.0.0.1", 0)).is_err());
        assert!(RedisClient::new(RedisConfig::new("127.0.0.1", 6379)).is_ok());
    }

    const CONNECT: Duration = Duration::from_millis(500);
    /// Scheduling slack on a loaded machine.
    const SLACK: Duration = Duration::from_millis(1500);

    #[derive(Clone, Copy, Debug)]
    enum Peer {
        /// Accepts and never answers.
        Silent,
        /// Answers like a web server.
        Http,
        /// Accepts and closes at once.
        Close,
    }

    /// A fake server on a free loopback port; serves at most 16 connections.
    async fn fake(peer: Peer) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..16 {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                match peer {
                    Peer::Silent => held.push(s),
                    Peer::Close => drop(s),
                    Peer::Http => {
                        let mut b = [0u8; 512];
                        let _ = s.read(&mut b).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                            .await;
                        let _ = s.shutdown().await;
                    }
                }
            }
        });
        (addr, task)
    }

    fn config(addr: SocketAddr, userinfo: &str) -> RedisConfig {
        let mut cfg =
            RedisConfig::from_url(&format!("redis://{userinfo}{addr}?connect_timeout=500ms"))
                .unwrap();
        cfg.connect_timeout = CONNECT;
        cfg
    }

    /// Every way of connecting fails on `cfg`, each within the connect
    /// timeout (plus slack); returns the errors.
    async fn every_connect_fails(cfg: &RedisConfig) -> Vec<Error> {
        let client = RedisClient::new(cfg.clone()).unwrap();
        let mut errors = Vec::new();
        let started = Instant::now();
        errors.push(lean::connect(cfg).await.map(drop).unwrap_err());
        errors.push(client.dedicated(None).await.map(drop).unwrap_err());
        errors.push(client.pubsub().await.map(drop).unwrap_err());
        errors.push(client.shared().await.map(drop).unwrap_err());
        let bound = CONNECT * 4 + SLACK;
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
        for e in &errors {
            assert!(
                e.to_string().contains(&cfg.addr()),
                "the error does not name the address: {e}"
            );
        }
        errors
    }

    fn is_timeout(e: &Error) -> bool {
        matches!(e, Error::Connect { reason, .. } if reason.contains("timed out"))
    }

    #[tokio::test]
    async fn a_silent_listener_times_out() {
        let (addr, task) = fake(Peer::Silent).await;
        for e in every_connect_fails(&config(addr, "")).await {
            assert!(is_timeout(&e), "{e}");
            assert!(e.is_transient());
        }
        task.abort();
    }

    #[tokio::test]
    async fn an_http_server_is_not_redis() {
        let (addr, task) = fake(Peer::Http).await;
        for e in every_connect_fails(&config(addr, "")).await {
            assert!(
                matches!(&e, Error::Backend(t) if t.contains("does not answer like a Redis server")),
                "{e}"
            );
            assert!(!e.is_transient());
        }
        task.abort();
    }

    #[tokio::test]
    async fn a_peer_that_closes_at_once_is_reported() {
        let (addr, task) = fake(Peer::Close).await;
        for e in every_connect_fails(&config(addr, "")).await {
            assert!(
                matches!(&e, Error::Connect { reason, .. } if reason.contains("closed the connection")),
                "{e}"
            );
        }
        task.abort();
    }

    /// SIGSTOPs a redis-server; SIGCONTs it when dropped.
    struct Frozen(u32);

    impl Frozen {
        fn new(server: &RedisServer) -> Frozen {
            let pid = server.pid().unwrap();
            let status = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            Frozen(pid)
        }
    }

    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }

    #[tokio::test]
    async fn a_frozen_redis_times_out() {
        let server = RedisServer::start().unwrap();
        let cfg = config(server.addr(), "");
        let frozen = Frozen::new(&server);
        for e in every_connect_fails(&cfg).await {
            assert!(is_timeout(&e), "{e}");
        }
        drop(frozen);
        // Thawed, the same settings connect.
        lean::connect(&cfg).await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_password_is_noauth_and_not_transient() {
        let server = RedisServer::start_with(RedisOptions::default().password("pw-1")).unwrap();
        for e in every_connect_fails(&config(server.addr(), "")).await {
            let text = e.to_string();
            assert!(matches!(e, Error::Backend(_)), "{text}");
            assert!(!e.is_transient(), "{text}");
            assert!(text.contains("NOAUTH"), "{text}");
            assert!(text.contains("put the password in the URL"), "{text}");
        }
        for e in every_connect_fails(&config(server.addr(), ":wrong-pw@")).await {
            let text = format!("{e} {e:?}");
            assert!(!e.is_transient(), "{text}");
            assert!(!text.contains("wrong-pw"), "{text}");
            assert!(text.contains("check the user and password"), "{text}");
        }
        lean::connect(&config(server.addr(), ":pw-1@"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_user_without_ping_is_noperm_and_not_transient() {
        let server = RedisServer::start().unwrap();
        server
            .cmd(&[
                "ACL", "SETUSER", "noping", "on", ">pw", "~*", "&*", "+@all", "-ping",
            ])
            .unwrap();
        for e in every_connect_fails(&config(server.addr(), "noping:pw@")).await {
            let text = e.to_string();
            assert!(!e.is_transient(), "{text}");
            assert!(text.contains("NOPERM"), "{text}");
            assert!(text.contains("grant the user"), "{text}");
        }
    }
}
