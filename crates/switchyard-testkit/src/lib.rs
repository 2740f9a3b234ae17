//! Test-only helpers for switchyard: real `redis-server` (or
//! `valkey-server`) processes, plain, with TLS or watched by Sentinel, and a
//! fault-injecting TCP proxy. Nothing here mocks Redis.
//!
//! * [`RedisServer`] spawns a server on a free `127.0.0.1` port with its
//!   data, config and log in a fresh temporary directory, waits until it
//!   answers `PING`, and kills it (and removes the directory) on drop. It can
//!   be stopped, killed, started again and restarted on the same port(s),
//!   with or without persistence ([`Persistence`]), password or ACL user,
//!   as a replica of another server ([`RedisOptions`]). Its API is blocking
//!   (`std::process`), so it works in plain `#[test]`s, async tests and
//!   `Drop`.
//! * [`ServerKind`] picks the binary: `redis-server` or `valkey-server`
//!   ([`RedisOptions::kind`]); by default the environment variable
//!   `SWITCHYARD_TEST_SERVER` (`redis` | `valkey`, unset = `redis`) decides,
//!   so a whole test suite runs against Valkey with
//!   `SWITCHYARD_TEST_SERVER=valkey`. An unknown value is a
//!   [`TestkitError::InvalidSetting`].
//! * TLS ([`RedisOptions::tls`], [`TlsOptions`]): the server also listens
//!   with TLS on a second free port ([`RedisServer::tls_port`],
//!   [`tls_url`](RedisServer::tls_url) `rediss://...`), with a [`TestPki`]
//!   generated in-process for it: a CA, a server certificate for
//!   `127.0.0.1` and `localhost`, a client certificate, and for negative
//!   tests an unrelated CA (with a client certificate), an expired and a
//!   wrong-name server certificate ([`ServerCertificate`]). Client
//!   certificates are required, optional or not asked for
//!   ([`TlsClientAuth`]). The plain port stays open for the testkit's probes
//!   and [`RedisServer::cmd`], unless [`TlsOptions::tls_only`] closes it;
//!   then the testkit itself talks TLS.
//! * [`SentinelGroup`] starts a primary, a replica and three sentinels
//!   ([`SentinelOptions`]), waits until they know each other, and moves the
//!   primary with [`failover`](SentinelGroup::failover) (`SENTINEL
//!   FAILOVER`) or [`kill_primary`](SentinelGroup::kill_primary) (SIGKILL);
//!   [`wait_for_new_primary`](SentinelGroup::wait_for_new_primary) polls
//!   with a deadline until the sentinels agree on the new one
//!   ([`failover_and_wait`](SentinelGroup::failover_and_wait) does both,
//!   asking again when a CPU-starved sentinel dropped the request). The
//!   sentinels may require a password
//!   ([`SentinelOptions::sentinel_password`]), and all five processes may
//!   speak TLS only on one shared CA ([`SentinelOptions::tls`],
//!   [`SentinelGroup::tls_files`]).
//! * [`ClusterGroup`] starts a Redis Cluster ([`ClusterOptions`]: 3
//!   masters with a replica each by default, every port free on loopback,
//!   the cluster bus on a second port), waits for `cluster_state:ok`, and
//!   moves slots with [`failover`](ClusterGroup::failover) (`CLUSTER
//!   FAILOVER`), [`kill_master_of`](ClusterGroup::kill_master_of) (SIGKILL)
//!   and [`migrate_slot`](ClusterGroup::migrate_slot) (a live resharding of
//!   one slot).
//! * [`RedisServer::cmd`] runs one command over a tiny RESP2 client
//!   ([`RespConnection`], [`RespValue`]) — handy for `CONFIG SET`,
//!   `CLIENT KILL`, `XADD` of foreign entries or `INFO` from a test.
//!   [`RespConnection::connect_tls`] ([`TlsConnect`]) speaks TLS through
//!   rustls and verifies the server as a real client does.
//! * [`FaultProxy`] sits between a client and a server and can
//!   [`cut`](FaultProxy::cut) every connection, [`stall`](FaultProxy::stall)
//!   all traffic, or [`refuse`](FaultProxy::set_refuse) new connections.
//!
//! `redis-server` must be on `PATH` (Debian/Ubuntu:
//! `apt-get install -y redis-server`); otherwise starting fails with
//! [`TestkitError::RedisServerNotFound`]. [`redis_server_available`] tells
//! whether it is there. Valkey needs `valkey-server` (Debian 12:
//! `valkey-server` and `valkey-tools` from bookworm-backports;
//! `scripts/install-deps` installs them).
//!
//! # Example
//!
//! ```no_run
//! use switchyard_testkit::{FaultProxy, Persistence, RedisOptions, RedisServer};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut redis = RedisServer::start_with(
//!     RedisOptions::default().persistence(Persistence::Aof).password("s3cret"),
//! )?;
//! let url = redis.url(); // "redis://:s3cret@127.0.0.1:PORT"
//!
//! redis.cmd(&["SET", "greeting", "hello"])?;
//! redis.restart()?; // same port, AOF reloaded
//! assert_eq!(redis.cmd(&["GET", "greeting"])?.as_str(), Some("hello"));
//!
//! // Route a client through a proxy to inject network faults.
//! let proxy = FaultProxy::start(redis.addr()).await?;
//! let proxied_url = redis.url_for(proxy.addr());
//! // ... connect the client under test to `proxied_url` ...
//! proxy.stall(true); // black-hole traffic, connections stay open
//! proxy.stall(false);
//! proxy.cut(); // reset every proxied connection
//!
//! redis.stop()?; // Redis down for a while ...
//! redis.start_again()?; // ... and back on the same port
//! # let _ = (url, proxied_url);
//! # Ok(()) }
//! ```
//!
//! # TLS
//!
//! ```no_run
//! use switchyard_testkit::{RedisOptions, RedisServer, TlsClientAuth, TlsOptions};
//!
//! # fn example() -> Result<(), switchyard_testkit::TestkitError> {
//! let redis = RedisServer::start_with(
//!     RedisOptions::default().tls(TlsOptions::default().client_auth(TlsClientAuth::Required)),
//! )?;
//! let url = redis.tls_url(); // Some("rediss://127.0.0.1:TLS_PORT")
//! let pki = redis.pki().ok_or(switchyard_testkit::TestkitError::NotRunning)?;
//! // Give the client under test pki.ca_cert(), pki.client().cert and
//! // pki.client().key; pki.other_ca_cert() for a "wrong CA" case.
//! let mut conn = redis.connect_tls()?; // rustls, verified against the CA
//! assert_eq!(conn.command(&["PING"])?.as_str(), Some("PONG"));
//! # let _ = url;
//! # Ok(()) }
//! ```
//!
//! # Sentinel
//!
//! ```no_run
//! use std::time::Duration;
//! use switchyard_testkit::{SentinelGroup, SentinelOptions};
//!
//! # fn example() -> Result<(), switchyard_testkit::TestkitError> {
//! let mut group = SentinelGroup::start(SentinelOptions::default())?;
//! let sentinels = group.sentinel_addrs(); // give these and
//! let name = group.master_name().to_owned(); // this to the client under test
//! let old = group.kill_primary()?; // or group.failover()?
//! let new = group.wait_for_new_primary(old, Duration::from_secs(60))?;
//! # let _ = (sentinels, name, new);
//! # Ok(()) }
//! ```

mod cluster;
mod error;
mod options;
mod process;
mod proxy;
mod resp;
mod sentinel;
mod server;
mod tls;
mod tls_client;

pub use cluster::{ClusterGroup, ClusterNode, ClusterOptions, ClusterTlsFiles, SLOTS};
pub use error::TestkitError;
pub use options::{Persistence, RedisOptions, ServerKind};
pub use proxy::FaultProxy;
pub use resp::{DEFAULT_IO_TIMEOUT, RespConnection, RespValue};
pub use sentinel::{SentinelGroup, SentinelOptions, SentinelTlsFiles};
pub use server::{RedisServer, redis_server_available};
pub use tls::{CertKeyPaths, ServerCertificate, TestPki, TlsClientAuth, TlsOptions};
pub use tls_client::TlsConnect;
