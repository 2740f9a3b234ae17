//! Real `redis-server` processes on free loopback ports.

use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::TestkitError;
use crate::resp::{RespConnection, RespValue};

/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
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

/// How the server persists its data across [`RedisServer::restart`].
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

/// Options for [`RedisServer::start_with`].
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
    /// (`on >password ~* &* +@all`). When set, [`RedisServer::cmd`],
    /// [`RedisServer::url`] and readiness probes authenticate as this user.
    pub acl_user: Option<(String, String)>,
    /// `maxmemory-policy` (e.g. `"noeviction"`, `"allkeys-lru"`).
    pub maxmemory_policy: Option<String>,
    /// Further configuration directives, written as `name "value"` lines of
    /// the generated config file (the same as `--name value` on the command
    /// line; multi-argument directives such as `save` accept one
    /// space-separated value).
    pub extra_args: Vec<(String, String)>,
    /// How long to wait for the server to answer `PING` (default 10 s).
    pub startup_timeout: Duration,
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

    /// The credentials clients must use: `(Some(user), password)` for the
    /// ACL user, `(None, password)` for `requirepass`.
    fn credentials(&self) -> Option<(Option<&str>, &str)> {
        if let Some((user, pass)) = &self.acl_user {
            Some((Some(user.as_str()), pass.as_str()))
        } else {
            self.password.as_deref().map(|p| (None, p))
        }
    }
}

/// Whether `redis-server` can be found on `PATH`.
pub fn redis_server_available() -> bool {
    find_on_path("redis-server").is_some()
}

/// Looks up an executable on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(name, &env::var_os("PATH")?)
}

/// Looks up an executable in a `PATH`-style list of directories.
fn find_in(name: &str, path: &OsStr) -> Option<PathBuf> {
    env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Picks a free loopback port by binding port 0 and releasing it.
fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to pick a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the picked port", e))?
        .port();
    Ok(port)
}

/// Quotes a config value the way `sdssplitargs` (Redis' config parser) reads
/// it back.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for byte in value.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            other => {
                let _ = write!(out, "\\x{other:02x}");
            }
        }
    }
    out.push('"');
    out
}

/// The outcome of one attempt to spawn the server.
enum Attempt {
    Ready(Child),
    PortTaken(String),
}

/// A `redis-server` process that this test owns.
///
/// It listens on `127.0.0.1` on a port that was free when it started, keeps
/// its data, config and log in a fresh temporary directory, and is killed
/// (and the directory removed) on drop. All methods are blocking, so it can be
/// used from plain `#[test]`s as well as from async tests.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    opts: RedisOptions,
    port: u16,
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
    /// Returns once the server answers `PING` with `PONG` (not `-LOADING`),
    /// or fails after [`RedisOptions::startup_timeout`] with the tail of the
    /// server's log in the error.
    pub fn start_with(opts: RedisOptions) -> Result<RedisServer, TestkitError> {
        let binary = find_on_path("redis-server").ok_or(TestkitError::RedisServerNotFound)?;
        let dir = tempfile::Builder::new()
            .prefix("switchyard-redis-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the temporary data directory", e))?;
        let mut server = RedisServer {
            binary,
            opts,
            port: 0,
            dir,
            child: None,
        };
        let mut last_reason = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn_and_wait()? {
                Attempt::Ready(child) => {
                    server.child = Some(child);
                    tracing::debug!(port = server.port, dir = %server.dir().display(), "redis-server started");
                    return Ok(server);
                }
                Attempt::PortTaken(reason) => {
                    tracing::debug!(port = server.port, attempt, %reason, "port taken, retrying with a fresh one");
                    last_reason = reason;
                }
            }
        }
        Err(TestkitError::Startup {
            message: format!("no free port after {PORT_ATTEMPTS} attempts: {last_reason}"),
            log_tail: server.log_tail(0),
        })
    }

    /// The `redis-server` binary used.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Path of `redis-cli`, if it is on `PATH`.
    pub fn cli_path() -> Option<PathBuf> {
        find_on_path("redis-cli")
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
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
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
    pub fn url_for(&self, addr: SocketAddr) -> String {
        match self.opts.credentials() {
            Some((Some(user), pass)) => {
                format!(
                    "redis://{}:{}@{addr}",
                    percent_encode(user),
                    percent_encode(pass)
                )
            }
            Some((None, pass)) => format!("redis://:{}@{addr}", percent_encode(pass)),
            None => format!("redis://{addr}"),
        }
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
    pub fn connect(&self) -> Result<RespConnection, TestkitError> {
        let mut conn = RespConnection::connect(self.addr())?;
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

    /// The server version, `redis_version` of `INFO server` (e.g. `"7.0.15"`).
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

    /// Writes the config file for the current port.
    fn write_config(&self) -> Result<PathBuf, TestkitError> {
        let mut conf = String::new();
        let mut line = |name: &str, value: &str| {
            conf.push_str(name);
            conf.push(' ');
            conf.push_str(&quote(value));
            conf.push('\n');
        };
        line("port", &self.port.to_string());
        line("bind", "127.0.0.1");
        line("dir", &self.dir().to_string_lossy());
        line("daemonize", "no");
        line("protected-mode", "no");
        line("logfile", "");
        match self.opts.persistence {
            Persistence::None => {
                line("save", "");
                line("appendonly", "no");
            }
            Persistence::Aof => {
                line("save", "");
                line("appendonly", "yes");
            }
            Persistence::Rdb => {
                line("appendonly", "no");
            }
        }
        if let Some(password) = &self.opts.password {
            line("requirepass", password);
        }
        if let Some(policy) = &self.opts.maxmemory_policy {
            line("maxmemory-policy", policy);
        }
        for (name, value) in &self.opts.extra_args {
            line(name, value);
        }
        if let Some((user, pass)) = &self.opts.acl_user {
            let _ = writeln!(
                conf,
                "user {} on {} ~* &* +@all",
                quote(user),
                quote(&format!(">{pass}"))
            );
        }
        let path = self.dir().join(CONF_FILE);
        fs::write(&path, conf)
            .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// Spawns the process on `self.port` and waits until it is ready, it
    /// exits, or the startup deadline passes.
    fn spawn_and_wait(&self) -> Result<Attempt, TestkitError> {
        let conf = self.write_config()?;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TestkitError::io(format!("opening {}", log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating the log file handle", e))?;
        let mut child = Command::new(&self.binary)
            .arg(&conf)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {}", self.binary.display()), e))?;
        let pid = child.id();
        tracing::debug!(port = self.port, pid, "spawned redis-server");

        let deadline = Instant::now() + self.opts.startup_timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let tail = self.log_tail(log_start);
                    if tail.contains("Address already in use") {
                        return Ok(Attempt::PortTaken(format!(
                            "redis-server exited ({status})"
                        )));
                    }
                    return Err(TestkitError::Startup {
                        message: format!("redis-server exited during startup ({status})"),
                        log_tail: tail,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    kill_child(&mut child);
                    return Err(TestkitError::io("checking the redis-server process", e));
                }
            }
            let last_probe = match self.probe() {
                Ok(Some(server_pid)) if server_pid == pid => return Ok(Attempt::Ready(child)),
                Ok(Some(other)) => {
                    // Someone else's server answers on this port.
                    kill_child(&mut child);
                    return Ok(Attempt::PortTaken(format!(
                        "port {} answered by another redis-server (pid {other})",
                        self.port
                    )));
                }
                Ok(None) => String::from("server is loading"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                kill_child(&mut child);
                return Err(TestkitError::Startup {
                    message: format!(
                        "no PONG within {:?} on port {} (last probe: {last_probe})",
                        self.opts.startup_timeout, self.port
                    ),
                    log_tail: self.log_tail(log_start),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// One readiness probe: `Ok(Some(pid))` once `PING` answers `PONG`
    /// (with the `process_id` of the server that answered), `Ok(None)` while
    /// it is loading, `Err` when it is not reachable yet.
    fn probe(&self) -> Result<Option<u32>, TestkitError> {
        let mut conn = RespConnection::connect_timeout(self.addr(), PROBE_TIMEOUT)?;
        if let Some((user, pass)) = self.opts.credentials() {
            conn.auth(user, pass)?;
        }
        match conn.command_raw(&["PING"])? {
            RespValue::Simple(s) if s == "PONG" => {}
            RespValue::Error(e) if e.starts_with("LOADING") => return Ok(None),
            other => {
                return Err(TestkitError::Protocol(format!(
                    "unexpected PING reply {other:?}"
                )));
            }
        }
        let info = conn.command(&["INFO", "server"])?;
        info.as_str()
            .and_then(|text| info_field(text, "process_id"))
            .and_then(|pid| pid.parse().ok())
            .map(Some)
            .ok_or_else(|| TestkitError::Protocol("INFO server has no process_id".into()))
    }

    /// The last lines of the log file written since byte `from`.
    fn log_tail(&self, from: u64) -> String {
        const TAIL_BYTES: u64 = 4096;
        let Ok(mut file) = File::open(self.log_path()) else {
            return "(no log file)".into();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = from.max(len.saturating_sub(TAIL_BYTES));
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
            return "(log file unreadable)".into();
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end();
        if text.is_empty() {
            "(log is empty)".into()
        } else {
            text.to_owned()
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // TempDir's own drop removes the directory afterwards.
        self.kill();
    }
}

/// Kills the child (SIGKILL) and reaps it.
fn kill_child(child: &mut Child) {
    if let Err(e) = child.kill() {
        tracing::debug!(error = %e, "killing redis-server");
    }
    if let Err(e) = child.wait() {
        tracing::debug!(error = %e, "waiting for redis-server");
    }
}

/// Polls for the child's exit until `timeout`; true if it exited.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The value of `name:value` in an `INFO` reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_special_characters() {
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b\"c\\"), "\"a b\\\"c\\\\\"");
        assert_eq!(quote("x\ny"), "\"x\\x0ay\"");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        assert_eq!(percent_encode("plain-1.2_~"), "plain-1.2_~");
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "process_id"), Some("42"));
        assert_eq!(info_field(info, "redis"), None);
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

    #[test]
    fn finds_only_executables() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("redis-server");
        fs::write(&file, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_in("redis-server", dir.path().as_os_str()), None);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in("redis-server", dir.path().as_os_str()), Some(file));
    }

    #[test]
    fn free_ports_are_loopback_and_nonzero() {
        assert_ne!(free_port().unwrap(), 0);
    }
}
