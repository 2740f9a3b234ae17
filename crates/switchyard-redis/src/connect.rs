//! Connections: a shared multiplexed one that reconnects by itself, and
//! dedicated ones for blocking reads and subscriptions.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError};
use switchyard_core::{Error, Health, Result};

use crate::config::RedisConfig;

/// A Redis client for one [`RedisConfig`]: opens the connections the
/// adapters need, each bounded by the connect timeout.
#[derive(Clone)]
pub struct RedisClient {
    config: RedisConfig,
    client: Client,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("config", &self.config)
            .finish()
    }
}

impl RedisClient {
    /// Prepares a client; connects nothing yet.
    pub fn new(config: RedisConfig) -> Result<Self> {
        let addr = if config.tls {
            if !cfg!(feature = "tls") {
                return Err(Error::FeatureNotEnabled("tls"));
            }
            #[cfg(feature = "tls")]
            {
                // Several crates may try to install a provider; the first wins.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            ConnectionAddr::TcpTls {
                host: config.host.clone(),
                port: config.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(config.host.clone(), config.port)
        };
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(config.db);
        if let Some(user) = &config.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(pw) = &config.password {
            redis_info = redis_info.set_password(pw.expose());
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| Error::InvalidConfig(format!("redis address {}: {e}", config.addr())))?
            .set_redis_settings(redis_info);
        let client = Client::open(info).map_err(|e| {
            Error::InvalidConfig(format!("redis client for {}: {e}", config.addr()))
        })?;
        Ok(RedisClient { config, client })
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
    /// reconnects by itself after a disconnect. Fails within the connect
    /// timeout when Redis is unreachable.
    pub async fn shared(&self) -> Result<ConnectionManager> {
        let timeout = self.config.connect_timeout;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(self.config.response_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let fut = self.client.get_connection_manager_with_config(cfg);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(&e)),
            Err(_) => Err(self.connect_timeout_error()),
        }
    }

    /// A connection of its own, for commands that block (XREAD BLOCK,
    /// XREADGROUP BLOCK): its response timeout must exceed the block time.
    /// `None` disables the response timeout.
    pub async fn dedicated(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection> {
        let timeout = self.config.connect_timeout;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(response_timeout);
        let fut = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(&e)),
            Err(_) => Err(self.connect_timeout_error()),
        }
    }

    /// A subscribing connection (SUBSCRIBE / PSUBSCRIBE).
    pub async fn pubsub(&self) -> Result<PubSub> {
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(&e)),
            Err(_) => Err(self.connect_timeout_error()),
        }
    }

    fn connect_timeout_error(&self) -> Error {
        Error::Connect {
            backend: "redis",
            addr: self.config.addr(),
            timeout: self.config.connect_timeout,
            reason: "timed out".into(),
        }
    }

    /// The error for a failed connection attempt, naming the address.
    pub fn connect_error(&self, e: &RedisError) -> Error {
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        {
            return Error::Backend(format!(
                "redis at {} refused the credentials{}: {e}; check the user and password in the URL",
                self.config.addr(),
                self.config
                    .username
                    .as_deref()
                    .map(|u| format!(" of user {u:?}"))
                    .unwrap_or_default()
            ));
        }
        let reason = if e.is_connection_refusal() {
            "connection refused".to_owned()
        } else {
            e.to_string()
        };
        Error::Connect {
            backend: "redis",
            addr: self.config.addr(),
            timeout: self.config.connect_timeout,
            reason,
        }
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
