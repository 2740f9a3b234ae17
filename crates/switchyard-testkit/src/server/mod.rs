//! Real `redis-server` (or `valkey-server`) processes on free loopback ports.
//!
//! This module holds the handle and its accessors; `config` writes the
//! configuration file, `spawn` starts the process and waits until it is ready.

mod config;
mod spawn;

use self::spawn::Attempt;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::TestkitError;
use crate::options::{Persistence, RedisOptions, ServerKind};
use crate::process::{
    find_on_path, free_port, info_field, kill_child, log_tail, percent_encode, wait_for_exit,
};
use crate::resp::{DEFAULT_IO_TIMEOUT, RespConnection, RespValue};
use crate::tls::{CertKeyPaths, TestPki};
use crate::tls_client::TlsConnect;

/// How long a graceful `SHUTDOWN` may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports are tried when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// Timeout of one readiness probe (connect, and each read/write).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Name of the log file (stdout + stderr of the server) inside the data dir.
const LOG_FILE: &str = "redis-server.log";
/// Name of the generated configuration file inside the data dir.
const CONF_FILE: &str = "redis.conf";
/// Subdirectory of the data dir that holds a TLS server's [`TestPki`].
const TLS_DIR: &str = "tls";

/// Whether `redis-server` can be found on `PATH`.
pub fn redis_server_available() -> bool {
    find_on_path("redis-server").is_some()
}

/// What the process is: a data server, or a sentinel with its own config.
#[derive(Debug)]
pub(crate) enum Mode {
    /// A data server; its config is regenerated from the options at every
    /// start.
    Server,
    /// `--sentinel`; `conf` holds the `sentinel ...` directives. The config
    /// file is written once: the sentinel rewrites it with what it learns,
    /// and a restarted sentinel must find that state again.
    Sentinel { conf: String },
}

/// A `redis-server` (or `valkey-server`, see [`ServerKind`]) process that
/// this test owns.
///
/// It listens on `127.0.0.1` on a port that was free when it started, keeps
/// its data, config and log in a fresh temporary directory, and is killed
/// (and the directory removed) on drop. All methods are blocking, so it can be
/// used from plain `#[test]`s as well as from async tests.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    kind: ServerKind,
    opts: RedisOptions,
    mode: Mode,
    port: u16,
    tls_port: Option<u16>,
    pki: Option<TestPki>,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with default options (no persistence, no password).
    pub fn start() -> Result<RedisServer, TestkitError> {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server with `opts`.
    ///
    /// The binary is `redis-server` or `valkey-server` after
    /// [`RedisOptions::kind`] (default: [`ServerKind::from_env`]). Returns
    /// once the server answers `PING` with `PONG` (not `-LOADING`), or fails
    /// after [`RedisOptions::startup_timeout`] with the tail of the server's
    /// log in the error.
    pub fn start_with(opts: RedisOptions) -> Result<RedisServer, TestkitError> {
        Self::start_mode(opts, Mode::Server)
    }

    /// Starts a server or a sentinel.
    pub(crate) fn start_mode(opts: RedisOptions, mode: Mode) -> Result<RedisServer, TestkitError> {
        opts.validate()?;
        let kind = opts.resolve_kind()?;
        let binary = kind.find_server()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("switchyard-{}-", kind.name()))
            .tempdir()
            .map_err(|e| TestkitError::io("creating the temporary data directory", e))?;
        let pki = match &opts.tls {
            Some(tls) => Some(match &tls.pki_dir {
                Some(shared) => TestPki::open(shared)?,
                None => TestPki::generate_in(&dir.path().join(TLS_DIR))?,
            }),
            None => None,
        };
        let mut server = RedisServer {
            binary,
            kind,
            opts,
            mode,
            port: 0,
            tls_port: None,
            pki,
            dir,
            child: None,
        };
        let mut last_reason = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port()?;
            if server.opts.tls_only() {
                server.tls_port = Some(server.port);
            } else if server.pki.is_some() {
                server.tls_port = Some(server.second_free_port()?);
            }
            match server.spawn_and_wait()? {
                Attempt::Ready(child) => {
                    server.child = Some(child);
                    tracing::debug!(
                        kind = %server.kind,
                        port = server.port,
                        tls_port = ?server.tls_port,
                        dir = %server.dir().display(),
                        "server started"
                    );
                    return Ok(server);
                }
                Attempt::PortTaken(reason) => {
                    tracing::debug!(port = server.port, attempt, %reason, "port taken, retrying with a fresh one");
                    // A sentinel's config is written once; the next port
                    // needs a fresh one.
                    server.remove_sentinel_config()?;
                    last_reason = reason;
                }
            }
        }
        Err(TestkitError::Startup {
            message: format!("no free port after {PORT_ATTEMPTS} attempts: {last_reason}"),
            log_tail: server.log_tail(0),
        })
    }

    /// A free port other than the plain one.
    fn second_free_port(&self) -> Result<u16, TestkitError> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            if port != self.port {
                return Ok(port);
            }
        }
        Err(TestkitError::io(
            "picking a second free port for TLS",
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "the system kept handing out the same port",
            ),
        ))
    }

    /// The server binary used (`redis-server` or `valkey-server`).
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Path of `redis-cli`, if it is on `PATH`.
    pub fn cli_path() -> Option<PathBuf> {
        find_on_path("redis-cli")
    }

    /// Path of the command-line client of `kind` (`redis-cli` or
    /// `valkey-cli`), if it is on `PATH`.
    pub fn cli_path_for(kind: ServerKind) -> Option<PathBuf> {
        find_on_path(kind.cli_binary())
    }

    /// Path of `redis-benchmark`, if it is on `PATH`.
    pub fn benchmark_path() -> Option<PathBuf> {
        find_on_path("redis-benchmark")
    }

    /// The options the server was started with.
    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// The TCP port (stays the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host, always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The socket address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The connection URL, `redis://127.0.0.1:PORT`, with credentials when
    /// set: `redis://:PASSWORD@...` or `redis://USER:PASSWORD@...`
    /// (percent-encoded).
    pub fn url(&self) -> String {
        self.url_for(self.addr())
    }

    /// Like [`url`](Self::url) but pointing at another address with the same
    /// credentials, e.g. a [`FaultProxy`](crate::FaultProxy) in front of this
    /// server.
    ///
    /// With [`TlsOptions::tls_only`](crate::TlsOptions::tls_only) the scheme
    /// is `rediss`.
    pub fn url_for(&self, addr: SocketAddr) -> String {
        let scheme = if self.opts.tls_only() {
            "rediss"
        } else {
            "redis"
        };
        self.url_with_scheme(scheme, addr)
    }

    fn url_with_scheme(&self, scheme: &str, addr: SocketAddr) -> String {
        match self.opts.credentials() {
            Some((Some(user), pass)) => {
                format!(
                    "{scheme}://{}:{}@{addr}",
                    percent_encode(user),
                    percent_encode(pass)
                )
            }
            Some((None, pass)) => format!("{scheme}://:{}@{addr}", percent_encode(pass)),
            None => format!("{scheme}://{addr}"),
        }
    }

    /// The TLS port, when started with [`RedisOptions::tls`] (stays the same
    /// across restarts).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The TLS socket address, `127.0.0.1:TLS_PORT`.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_port.map(loopback)
    }

    /// The TLS connection URL, `rediss://127.0.0.1:TLS_PORT`, with the same
    /// credentials as [`url`](Self::url).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr()
            .map(|addr| self.url_with_scheme("rediss", addr))
    }

    /// The PKI of a TLS server (CA, server and client certificates, and the
    /// "wrong CA", expired and wrong-name variants); the files live in
    /// `dir()/tls` (or in [`TlsOptions::pki_dir`](crate::TlsOptions::pki_dir)
    /// when given) and stay the same across restarts.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// The CA certificate clients of a TLS server trust.
    pub fn tls_ca_cert_path(&self) -> Option<&Path> {
        self.pki.as_ref().map(TestPki::ca_cert)
    }

    /// The client certificate and key (signed by the CA) of a TLS server.
    pub fn tls_client_paths(&self) -> Option<&CertKeyPaths> {
        self.pki.as_ref().map(TestPki::client)
    }

    /// The certificate and key the TLS server presents (after
    /// [`TlsOptions::server_certificate`](crate::TlsOptions::server_certificate)).
    pub fn tls_server_paths(&self) -> Option<&CertKeyPaths> {
        let choice = self.opts.tls.as_ref()?.server_certificate;
        self.pki.as_ref().map(|pki| pki.server_certificate(choice))
    }

    /// The data directory (also holds `redis.conf` and `redis-server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (its stdout and stderr, across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join(LOG_FILE)
    }

    /// The process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Opens a new connection to the server, authenticated if the server has
    /// a password or ACL user. Connect, read and write are bounded by 5 s.
    ///
    /// With [`TlsOptions::tls_only`](crate::TlsOptions::tls_only) this is a
    /// TLS connection, as [`connect_tls`](Self::connect_tls).
    pub fn connect(&self) -> Result<RespConnection, TestkitError> {
        self.open(DEFAULT_IO_TIMEOUT)
    }

    /// Opens a new TLS connection to the TLS port, trusting the CA and
    /// presenting the client certificate of [`pki`](Self::pki),
    /// authenticated like [`connect`](Self::connect).
    ///
    /// Fails with [`TestkitError::InvalidSetting`] when the server was
    /// started without [`RedisOptions::tls`].
    pub fn connect_tls(&self) -> Result<RespConnection, TestkitError> {
        let mut conn = RespConnection::connect_tls(self.require_tls_addr()?, &self.tls_connect()?)?;
        if let Some((user, pass)) = self.opts.credentials() {
            conn.auth(user, pass)?;
        }
        Ok(conn)
    }

    /// What [`connect_tls`](Self::connect_tls) trusts and presents: the CA
    /// and client certificate of [`pki`](Self::pki), server name
    /// `127.0.0.1`. Change it to try other certificates.
    pub fn tls_connect(&self) -> Result<TlsConnect, TestkitError> {
        self.pki
            .as_ref()
            .map(TlsConnect::from_pki)
            .ok_or_else(not_tls)
    }

    fn require_tls_addr(&self) -> Result<SocketAddr, TestkitError> {
        self.tls_addr().ok_or_else(not_tls)
    }

    /// An authenticated connection whose I/O is bounded by `timeout`: TLS in
    /// TLS-only mode, plain TCP otherwise.
    pub(crate) fn open(&self, timeout: Duration) -> Result<RespConnection, TestkitError> {
        let mut conn = if self.opts.tls_only() {
            RespConnection::connect_tls_timeout(self.addr(), &self.tls_connect()?, timeout)?
        } else {
            RespConnection::connect_timeout(self.addr(), timeout)?
        };
        if let Some((user, pass)) = self.opts.credentials() {
            conn.auth(user, pass)?;
        }
        Ok(conn)
    }

    /// Runs one command on a short-lived (authenticated) connection and
    /// returns its reply. An error reply becomes [`TestkitError::Reply`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), switchyard_testkit::TestkitError> {
    /// let redis = switchyard_testkit::RedisServer::start()?;
    /// redis.cmd(&["CONFIG", "SET", "maxmemory", "10mb"])?;
    /// assert_eq!(redis.cmd(&["PING"])?.as_str(), Some("PONG"));
    /// # Ok(()) }
    /// ```
    pub fn cmd(&self, args: &[&str]) -> Result<RespValue, TestkitError> {
        self.connect()?.command(args)
    }

    /// The text of `INFO <section>`.
    pub fn info(&self, section: &str) -> Result<String, TestkitError> {
        let reply = self.cmd(&["INFO", section])?;
        reply
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TestkitError::Protocol(format!("unexpected INFO reply {reply:?}")))
    }

    /// The server version, `redis_version` of `INFO server` (e.g. `"7.0.15"`;
    /// Valkey reports the Redis version it is compatible with, `"7.2.4"`, and
    /// its own in `valkey_version`).
    pub fn redis_version(&self) -> Result<String, TestkitError> {
        let info = self.info("server")?;
        info_field(&info, "redis_version")
            .map(str::to_owned)
            .ok_or_else(|| TestkitError::Protocol("INFO server has no redis_version".into()))
    }

    /// Stops the server gracefully: `SHUTDOWN NOSAVE` without persistence,
    /// plain `SHUTDOWN` with AOF (flushes the AOF), `SHUTDOWN SAVE` with RDB;
    /// then waits up to 10 s for the process to exit and kills it if it has
    /// not. Does nothing if the server is already stopped.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if !matches!(child.try_wait(), Ok(None)) {
            let _ = child.wait();
            return Ok(());
        }
        let shutdown: &[&str] = match self.opts.persistence {
            Persistence::None => &["SHUTDOWN", "NOSAVE"],
            Persistence::Aof => &["SHUTDOWN"],
            Persistence::Rdb => &["SHUTDOWN", "SAVE"],
        };
        let mut failure = None;
        match self
            .connect()
            .and_then(|mut conn| conn.command_raw(shutdown))
        {
            Ok(RespValue::Error(e)) => failure = Some(e),
            Ok(other) => tracing::warn!(reply = ?other, "unexpected reply to SHUTDOWN"),
            // The server closes the connection when it shuts down.
            Err(e) if e.is_disconnect() => {}
            Err(e) => tracing::warn!(error = %e, "sending SHUTDOWN failed; killing redis-server"),
        }
        let exited = failure.is_none() && wait_for_exit(&mut child, SHUTDOWN_TIMEOUT);
        if !exited {
            tracing::warn!(
                port = self.port,
                "redis-server did not exit after SHUTDOWN; killing it"
            );
            kill_child(&mut child);
        }
        match failure {
            Some(e) => Err(TestkitError::Shutdown(e)),
            None => Ok(()),
        }
    }

    /// Kills the server with SIGKILL (nothing is saved beyond what is already
    /// on disk) and waits for it to exit. Does nothing if it is stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts the stopped server again on the same port with the same data
    /// directory (so persisted data is loaded), and waits for `PING`.
    ///
    /// Fails with [`TestkitError::AlreadyRunning`] if it is running.
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        if self.is_running() {
            return Err(TestkitError::AlreadyRunning);
        }
        if let Some(mut old) = self.child.take() {
            let _ = old.wait();
        }
        // The port must stay the same, so instead of picking another one,
        // retry until the deadline if something holds it for a moment.
        let deadline = Instant::now() + self.opts.startup_timeout;
        loop {
            match self.spawn_and_wait()? {
                Attempt::Ready(child) => {
                    self.child = Some(child);
                    tracing::debug!(port = self.port, "redis-server started again");
                    return Ok(());
                }
                Attempt::PortTaken(reason) => {
                    if Instant::now() >= deadline {
                        return Err(TestkitError::Startup {
                            message: format!("port {} is taken: {reason}", self.port),
                            log_tail: self.log_tail(0),
                        });
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// [`stop`](Self::stop) followed by [`start_again`](Self::start_again):
    /// same port, same directory, persisted data kept.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.start_again()
    }

    /// The last lines of the log file written since byte `from`.
    pub(crate) fn log_tail(&self, from: u64) -> String {
        log_tail(&self.log_path(), from)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // TempDir's own drop removes the directory afterwards.
        self.kill();
    }
}

/// `127.0.0.1:port`.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// The error of TLS accessors on a server started without TLS.
fn not_tls() -> TestkitError {
    TestkitError::InvalidSetting(
        "this server was started without TLS: start it with RedisOptions::tls(..)".into(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::process::find_in;

    /// A sentinel's config is written once (the sentinel rewrites it with
    /// what it learns), but a start retried on a new port after
    /// "Address already in use" must write it again: before, the retry
    /// reused the file naming the taken port, five times over.
    #[test]
    fn sentinel_config_is_written_once_but_again_for_a_new_port() {
        let mut server = RedisServer {
            binary: PathBuf::from("/bin/false"),
            kind: ServerKind::Redis,
            opts: RedisOptions::default(),
            mode: Mode::Sentinel {
                conf: "sentinel monitor m 127.0.0.1 1 2\n".into(),
            },
            port: 1111,
            tls_port: None,
            pki: None,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        let read = |server: &RedisServer| std::fs::read_to_string(server.write_config().unwrap());
        assert!(read(&server).unwrap().starts_with("port \"1111\"\n"));
        server.port = 2222;
        assert!(read(&server).unwrap().starts_with("port \"1111\"\n"));
        server.remove_sentinel_config().unwrap();
        let conf = read(&server).unwrap();
        assert!(conf.starts_with("port \"2222\"\n"), "{conf}");
        assert!(
            conf.ends_with("sentinel monitor m 127.0.0.1 1 2\n"),
            "{conf}"
        );
    }

    #[test]
    fn missing_binary_gives_the_install_hint() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(find_in("redis-server", empty.path().as_os_str()), None);
        let err = TestkitError::RedisServerNotFound;
        let text = err.to_string();
        assert!(text.starts_with(
            "redis-server not found on PATH: install it with 'apt-get install -y redis-server'"
        ));
        assert!(text.contains("scripts/test"));
        assert_eq!(format!("{err:?}"), text);
    }
}
