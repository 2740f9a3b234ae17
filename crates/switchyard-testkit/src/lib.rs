//! Test-only helpers for switchyard: real `redis-server` processes and a
//! fault-injecting TCP proxy. Nothing here mocks Redis.
//!
//! * [`RedisServer`] spawns `redis-server` on a free `127.0.0.1` port with
//!   its data, config and log in a fresh temporary directory, waits until it
//!   answers `PING`, and kills it (and removes the directory) on drop. It can
//!   be stopped, killed, started again and restarted on the same port, with
//!   or without persistence ([`Persistence`]), password or ACL user
//!   ([`RedisOptions`]). Its API is blocking (`std::process`), so it works in
//!   plain `#[test]`s, async tests and `Drop`.
//! * [`RedisServer::cmd`] runs one command over a tiny RESP2 client
//!   ([`RespConnection`], [`RespValue`]) — handy for `CONFIG SET`,
//!   `CLIENT KILL`, `XADD` of foreign entries or `INFO` from a test.
//! * [`FaultProxy`] sits between a client and a server and can
//!   [`cut`](FaultProxy::cut) every connection, [`stall`](FaultProxy::stall)
//!   all traffic, or [`refuse`](FaultProxy::set_refuse) new connections.
//!
//! `redis-server` must be on `PATH` (Debian/Ubuntu:
//! `apt-get install -y redis-server`); otherwise starting fails with
//! [`TestkitError::RedisServerNotFound`]. [`redis_server_available`] tells
//! whether it is there.
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

mod error;
mod options;
mod process;
mod proxy;
mod resp;
mod sentinel;
mod server;
mod tls;
mod tls_client;

pub use error::TestkitError;
pub use options::{Persistence, RedisOptions, ServerKind};
pub use proxy::FaultProxy;
pub use resp::{DEFAULT_IO_TIMEOUT, RespConnection, RespValue};
pub use sentinel::{SentinelGroup, SentinelOptions};
pub use server::{RedisServer, redis_server_available};
pub use tls::{CertKeyPaths, ServerCertificate, TestPki, TlsClientAuth, TlsOptions};
pub use tls_client::TlsConnect;
