//! [`SharedConnection`]: the shared multiplexed connection, which follows
//! the primary after a Sentinel failover.
//!
//! redis-rs's `ConnectionManager` reconnects by itself, but always to the
//! address it was built with: after a failover that is the old primary,
//! now a replica, and every write there fails with `READONLY`. This wrapper
//! keeps one `ConnectionManager` at a time; with Sentinel settings, an
//! error that means "rediscover" ([`RetryMethod::Rediscover`]: a dropped
//! connection, I/O errors, `READONLY`, `LOADING`, `MASTERDOWN`) replaces it
//! with one opened on the primary the sentinels name now. The command that
//! failed is not re-sent (it may have been executed); its caller sees a
//! transient error and retries as usual, on the new primary. Without
//! Sentinel settings it is the `ConnectionManager` itself. On a Redis
//! Cluster it is redis-rs' cluster connection (routing by slot, following
//! `MOVED`/`ASK`, reconnecting to nodes by itself).

use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use switchyard_core::Result;

use crate::connect::RedisClient;
use crate::error::{RetryMethod, retry_method, retry_method_code};

/// The shared connection of an adapter: cheap to clone, every clone uses
/// the same connection. With Sentinel settings it follows the primary: an
/// error that means "rediscover" (a dropped connection, I/O errors,
/// `READONLY`, `LOADING`, `MASTERDOWN`) replaces the connection with one to
/// the primary the sentinels name now; the failed command is not re-sent
/// (its caller sees a transient error). Without Sentinel settings it is a
/// redis-rs `ConnectionManager`.
#[derive(Clone)]
pub struct SharedConnection {
    state: Arc<State>,
}

struct State {
    client: RedisClient,
    /// The connection in use, its generation (bumped by each replacement)
    /// and the client's primary epoch it was opened under.
    current: Mutex<(u64, u64, Conn)>,
    /// One replacement at a time.
    replacing: tokio::sync::Mutex<()>,
}

/// A single server's reconnecting connection, or a cluster's.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConnection")
            .field("config", self.state.client.config())
            .field("generation", &self.snapshot().0)
            .finish()
    }
}

impl SharedConnection {
    /// Opens the shared connection ([`RedisClient::shared`], or
    /// [`RedisClient::cluster_connection`] on a cluster).
    pub async fn open(client: RedisClient) -> Result<Self> {
        let epoch = client.primary_epoch();
        let conn = if client.is_cluster() {
            Conn::Cluster(client.cluster_connection().await?)
        } else {
            Conn::Single(client.shared().await?)
        };
        Ok(SharedConnection {
            state: Arc::new(State {
                client,
                current: Mutex::new((0, epoch, conn)),
                replacing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The client this connection was opened with.
    pub fn client(&self) -> &RedisClient {
        &self.state.client
    }

    /// How many times the connection was replaced to follow the primary.
    pub fn generation(&self) -> u64 {
        self.snapshot().0
    }

    fn snapshot(&self) -> (u64, Conn) {
        let guard = self
            .state
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (guard.0, guard.2.clone())
    }

    /// How many times the sentinels named a new primary (0 without
    /// Sentinel): a connection opened under an older value should be
    /// replaced.
    pub fn primary_epoch(&self) -> u64 {
        self.state.client.primary_epoch()
    }

    /// The connection to use now: replaced first when the sentinels named
    /// a new primary since it was opened.
    async fn current(&self) -> (u64, Conn) {
        if self.follows_sentinel() {
            let (generation, epoch) = {
                let guard = self
                    .state
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                (guard.0, guard.1)
            };
            if epoch != self.primary_epoch() {
                self.rediscover(generation).await;
            }
        }
        self.snapshot()
    }

    fn follows_sentinel(&self) -> bool {
        self.state.client.config().sentinel.is_some()
    }

    /// With Sentinel settings: opens a connection to the primary the
    /// sentinels name now and uses it from here on, unless another caller
    /// replaced the connection of `generation` already. A failure is
    /// logged; the next error tries again.
    pub async fn rediscover(&self, generation: u64) {
        if !self.follows_sentinel() {
            return;
        }
        let _one = self.state.replacing.lock().await;
        if self.snapshot().0 != generation {
            return;
        }
        let epoch = self.primary_epoch();
        match self.state.client.shared().await {
            Ok(conn) => {
                let mut guard = self
                    .state
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *guard = (generation + 1, epoch, Conn::Single(conn));
                tracing::info!(
                    generation = generation + 1,
                    "redis: the shared connection follows the primary named by the sentinels"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis: finding the primary through the sentinels failed; the next error tries again");
            }
        }
    }

    /// After `e` on the connection of `generation`: rediscovers when `e`
    /// asks for it, and turns `READONLY` into a transient error when the
    /// primary is followed (the retry goes to the new primary).
    async fn after_error(&self, generation: u64, e: RedisError) -> RedisError {
        if !self.follows_sentinel() || retry_method(&e) != RetryMethod::Rediscover {
            return e;
        }
        self.rediscover(generation).await;
        if e.code().is_some() {
            // READONLY / LOADING / MASTERDOWN: the node is no primary (now).
            return RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!(
                    "the server stopped being the primary ({e}); reconnected to the primary the sentinels name"
                ),
            ));
        }
        e
    }

    /// Whether a reply value asks for rediscovery (an error reply inside a
    /// pipeline's values).
    fn value_asks(v: &Value) -> bool {
        matches!(v, Value::ServerError(e) if retry_method_code(e.code()) == RetryMethod::Rediscover)
    }
}

impl SharedConnection {
    /// On a cluster: a handle that sends every command to the node at
    /// `host:port` (for commands that concern one node, such as `SCAN`,
    /// `INFO` or `CLIENT UNBLOCK`), over the shared cluster connection.
    /// `None` on a single server.
    pub fn to_node(&self, host: &str, port: u16) -> Option<NodeConnection> {
        match self.snapshot().1 {
            Conn::Cluster(conn) => Some(NodeConnection {
                conn,
                host: host.to_owned(),
                port,
            }),
            Conn::Single(_) => None,
        }
    }
}

/// A cluster connection that sends every command to one node (see
/// [`SharedConnection::to_node`]).
#[derive(Clone)]
pub struct NodeConnection {
    conn: ClusterConnection,
    host: String,
    port: u16,
}

impl NodeConnection {
    fn route(&self) -> redis::cluster_routing::RoutingInfo {
        redis::cluster_routing::RoutingInfo::SingleNode(
            redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                host: self.host.clone(),
                port: self.port,
            },
        )
    }
}

impl ConnectionLike for NodeConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let route = self.route();
        Box::pin(async move { self.conn.route_command(cmd.clone(), route).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        };
        Box::pin(async move {
            self.conn
                .route_pipeline(pipeline.clone(), offset, count, route)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.current().await;
            match conn.req_packed_command(cmd).await {
                Ok(v) => {
                    if self.follows_sentinel() && Self::value_asks(&v) {
                        self.rediscover(generation).await;
                    }
                    Ok(v)
                }
                Err(e) => Err(self.after_error(generation, e).await),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.current().await;
            match conn.req_packed_commands(pipeline, offset, count).await {
                Ok(values) => {
                    if self.follows_sentinel() && values.iter().any(Self::value_asks) {
                        self.rediscover(generation).await;
                    }
                    Ok(values)
                }
                Err(e) => Err(self.after_error(generation, e).await),
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.state.client.config().db
    }
}
