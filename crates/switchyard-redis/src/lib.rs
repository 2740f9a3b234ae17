//! Redis plumbing shared by the switchyard Redis adapters
//! (`switchyard-redis-streams` and `switchyard-redis-pubsub`):
//!
//! - [`RedisConfig`]: host, port, db, ACL user and password (never shown in
//!   `Debug`, logs or errors), TLS with its trust and identity (`tls_ca`,
//!   `tls_cert`, `tls_key`, `tls_insecure`; see [`tls`]), namespace and
//!   timeouts, parsed from a URL or built in code;
//! - [`RedisClient`]: the shared multiplexed connection that reconnects by
//!   itself, dedicated connections for blocking reads, and subscribing
//!   connections — each connect ending with a `PING` and bounded by the
//!   connect timeout, with errors such as `could not connect to redis at
//!   127.0.0.1:6390 within 2s: connection refused` (`NOAUTH`, `WRONGPASS`
//!   and `NOPERM` are not transient and say what to fix; a refused TLS
//!   certificate is a `switchyard_core::Error::Tls` with its kind);
//! - [`classify`] and [`retry_method`]: redis-rs errors by what a retry can
//!   fix — wait and retry (BUSY, TRYAGAIN, NOREPLICAS, timeouts), rediscover
//!   (I/O, dropped connections, LOADING, MASTERDOWN, READONLY), never
//!   (MOVED, ASK, CLUSTERDOWN: a cluster node; and every other code);
//! - [`ping_health`] and [`role_health`]: bounded health probes on an
//!   existing connection (a replica is `Degraded`: "connected to a replica
//!   (read-only)");
//! - [`cluster`]: the Redis Cluster URL form
//!   (`redis+streams+cluster://h1:7000,h2:7001`), the hash slot of a key
//!   and the slot map that routes dedicated and hand-written connections;
//! - [`sentinel`]: the Sentinel URL form (`redis+streams+sentinel://s1:26379,s2:26379/master`)
//!   and finding the primary before every connect;
//! - [`denied`]: `NOPERM` recognised (also inside Lua scripts), turned into
//!   `permission denied: …` errors naming the command and the grant, and
//!   kept for `health()` (docs/security.md);
//! - [`lean`]: hand-encoded commands and flat RESP2 tokens for the hot
//!   paths, and a connect with `AUTH`/`SELECT`/`PING` returning a
//!   [`lean::RedisStream`], plain TCP or TLS: the hot paths run the same
//!   code over both.

pub mod cluster;
mod config;
mod connect;
pub mod denied;
mod error;
pub mod lean;
mod parse;
pub mod range;
mod rediscover;
pub mod sentinel;
mod stream;
pub mod tls;

pub use cluster::{ClusterConfig, cluster_health, key_slot};
pub use config::{RedisConfig, Secret, parse_duration, validate_namespace};
pub use connect::{CLUSTER_RETRIES, RedisClient, connect_with_retry, ping_health};
pub use error::{
    CLUSTER_CODES, REDISCOVER_CODES, RetryMethod, TRANSIENT_CODES, classify, classify_reply, code,
    is_transient, is_transient_code, retry_method, retry_method_code,
};
pub use parse::push_glob_escaped;
pub use rediscover::{NodeConnection, SharedConnection};
pub use sentinel::{SentinelConfig, role_health};

/// Re-export of the redis-rs version the adapters are built on.
pub use redis;
