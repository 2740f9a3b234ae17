//! A Sentinel-monitored primary with one replica and three sentinels
//! ([`SentinelGroup`]).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::TestkitError;
use crate::options::{RedisOptions, ServerKind};
use crate::process::{info_field, poll_until, quote};
use crate::resp::{RespConnection, RespValue};
use crate::server::{Mode, RedisServer};
use crate::tls::{CertKeyPaths, TestPki, TlsOptions};

/// How many sentinels a group runs.
const SENTINELS: usize = 3;
/// How many of them must agree that the primary is down (`quorum`).
const QUORUM: usize = 2;
/// Timeout of one question to a sentinel or a node while polling.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepted range of [`SentinelOptions::down_after`].
const DOWN_AFTER_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));
/// Accepted range of [`SentinelOptions::failover_timeout`].
const FAILOVER_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// Accepted range of [`SentinelOptions::startup_timeout`].
const STARTUP_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// Longest accepted [`SentinelOptions::master_name`].
const MAX_MASTER_NAME: usize = 64;
/// Longest accepted [`SentinelOptions::sentinel_password`], in bytes.
const MAX_SENTINEL_PASSWORD: usize = 512;

/// Options for [`SentinelGroup::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelOptions {
    /// The name the sentinels monitor the primary under (`sentinel monitor
    /// <name> ...`; default `"switchyard"`). 1 to 64 characters out of
    /// `A-Z a-z 0-9 . _ -`.
    pub master_name: String,
    /// Which server to start; `None` (the default) reads
    /// [`ServerKind::ENV_VAR`].
    pub kind: Option<ServerKind>,
    /// Password of the two data nodes (`requirepass`, and `masterauth` so
    /// that either can replicate from the other), given to the sentinels as
    /// `sentinel auth-pass` (default `None`). The sentinels themselves take
    /// no password unless [`sentinel_password`](Self::sentinel_password) is
    /// set.
    pub password: Option<String>,
    /// An ACL user `(name, password)` with full permissions on the two data
    /// nodes (as [`RedisOptions::acl_user`]); when set, the nodes replicate
    /// from each other (`masteruser`/`masterauth`) and the sentinels log in
    /// (`sentinel auth-user`/`auth-pass`) as this user, and
    /// [`RedisServer::cmd`] on a node uses it (default `None`).
    pub acl_user: Option<(String, String)>,
    /// Password of the three sentinels (default `None`: they take none).
    /// When set, each sentinel has `requirepass` (clients must `AUTH` with
    /// it, as the default user) and `sentinel sentinel-pass` (what it sends
    /// to the other sentinels); the testkit's own questions to the
    /// sentinels authenticate with it. It may differ from the nodes'
    /// [`password`](Self::password). 1 to 512 bytes, any of them (the
    /// config file quotes it).
    pub sentinel_password: Option<String>,
    /// TLS everywhere (default `false`): the two nodes and the three
    /// sentinels listen with TLS only (`port 0`, `tls-port` on a free
    /// loopback port, which [`RedisServer::addr`] and
    /// [`SentinelGroup::sentinel_addrs`] return), replicate and talk to each
    /// other over TLS (`tls-replication yes`), and require a client
    /// certificate (`tls-auth-clients yes`). All five use one [`TestPki`]
    /// generated for the group ([`SentinelGroup::pki`],
    /// [`SentinelGroup::tls_files`]): a client trusting its CA and
    /// presenting its client certificate reaches every process. The
    /// testkit's probes ([`SentinelGroup::failover`],
    /// [`SentinelGroup::current_primary_addr`], [`RedisServer::cmd`], ...)
    /// then speak TLS themselves.
    pub tls: bool,
    /// `sentinel down-after-milliseconds`: how long the primary must be
    /// unreachable before a sentinel considers it down (default 2 s; range
    /// 100 ms to 60 s, whole milliseconds).
    ///
    /// Sentinels ping every second (or every `down_after` when shorter). At
    /// 1 s, one late reply on a loaded machine is enough for a sentinel to
    /// mark the freshly promoted primary down and fail over again (seen
    /// here: the primary flipped back to a restarted, empty node); 2 s
    /// leaves room for one missed ping and costs a second per failover.
    pub down_after: Duration,
    /// `sentinel failover-timeout` (default 5 s; range 1 s to 10 min, whole
    /// milliseconds). A failed leader election is retried after twice this.
    pub failover_timeout: Duration,
    /// How long [`SentinelGroup::start`] waits, once the nodes run, until
    /// the replica is in sync and every sentinel knows the primary, the
    /// replica and the other sentinels (default 30 s; range 1 s to 10 min).
    /// Each process also gets this long to answer `PING`.
    pub startup_timeout: Duration,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            master_name: "switchyard".into(),
            kind: None,
            password: None,
            acl_user: None,
            sentinel_password: None,
            tls: false,
            down_after: Duration::from_secs(2),
            failover_timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl SentinelOptions {
    /// Sets [`master_name`](Self::master_name).
    #[must_use]
    pub fn master_name(mut self, name: impl Into<String>) -> Self {
        self.master_name = name.into();
        self
    }

    /// Sets [`kind`](Self::kind).
    #[must_use]
    pub fn kind(mut self, kind: ServerKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Sets [`password`](Self::password).
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

    /// Sets [`sentinel_password`](Self::sentinel_password).
    #[must_use]
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// Sets [`tls`](Self::tls).
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The credentials the nodes, their replication and the sentinels use:
    /// the ACL user, else the default user's password.
    fn credentials(&self) -> Option<(Option<&str>, &str)> {
        match (&self.acl_user, &self.password) {
            (Some((user, pass)), _) => Some((Some(user.as_str()), pass.as_str())),
            (None, Some(pass)) => Some((None, pass.as_str())),
            (None, None) => None,
        }
    }

    /// Sets [`down_after`](Self::down_after).
    #[must_use]
    pub fn down_after(mut self, after: Duration) -> Self {
        self.down_after = after;
        self
    }

    /// Sets [`failover_timeout`](Self::failover_timeout).
    #[must_use]
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Sets [`startup_timeout`](Self::startup_timeout).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Checks every setting against its documented range.
    fn validate(&self) -> Result<(), TestkitError> {
        let name = &self.master_name;
        if name.is_empty()
            || name.len() > MAX_MASTER_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(TestkitError::InvalidSetting(format!(
                "SentinelOptions::master_name {name:?}: use 1 to {MAX_MASTER_NAME} characters \
                 out of A-Z a-z 0-9 . _ -"
            )));
        }
        if let Some(password) = &self.sentinel_password
            && (password.is_empty() || password.len() > MAX_SENTINEL_PASSWORD)
        {
            return Err(TestkitError::InvalidSetting(format!(
                "SentinelOptions::sentinel_password is {} bytes long: use 1 to \
                 {MAX_SENTINEL_PASSWORD} bytes",
                password.len()
            )));
        }
        check_range("down_after", self.down_after, DOWN_AFTER_RANGE)?;
        check_range(
            "failover_timeout",
            self.failover_timeout,
            FAILOVER_TIMEOUT_RANGE,
        )?;
        check_range(
            "startup_timeout",
            self.startup_timeout,
            STARTUP_TIMEOUT_RANGE,
        )
    }
}

fn check_range(
    name: &str,
    value: Duration,
    (min, max): (Duration, Duration),
) -> Result<(), TestkitError> {
    if value < min || value > max {
        return Err(TestkitError::InvalidSetting(format!(
            "SentinelOptions::{name} = {value:?} is outside {min:?} ..= {max:?}"
        )));
    }
    Ok(())
}

/// A primary, one replica and three sentinels, all on free loopback ports:
/// the topology Sentinel-aware clients are tested against. The sentinels
/// may require a password ([`SentinelOptions::sentinel_password`]) and all
/// five processes may speak TLS only ([`SentinelOptions::tls`]).
///
/// [`start`](Self::start) launches the primary, the replica (`replicaof` the
/// primary), then three sentinels (`redis-server --sentinel`, or
/// `valkey-server --sentinel`) with `sentinel monitor <name> 127.0.0.1
/// <primary port> 2`, and returns once the replica is in sync
/// (`master_link_status:up`) and every sentinel knows the primary, a healthy
/// replica and the two other sentinels. [`failover`](Self::failover) and
/// [`kill_primary`](Self::kill_primary) move the primary;
/// [`wait_for_new_primary`](Self::wait_for_new_primary) polls until the
/// sentinels agree on another one. Drop kills the sentinels, then the nodes.
///
/// The two data nodes are [`RedisServer`]s: [`nodes`](Self::nodes)`[0]`
/// started as the primary, `[1]` as the replica; which one is the primary
/// now is what the sentinels say ([`primary`](Self::primary)). A node
/// restarted with [`RedisServer::start_again`] comes back with the role it
/// was started with, and the sentinels reconfigure it.
#[derive(Debug)]
pub struct SentinelGroup {
    master_name: String,
    kind: ServerKind,
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    failover_timeout: Duration,
    // Declared after the processes: its directory is removed only once
    // they are gone.
    pki: Option<TestPki>,
}

/// The files a TLS client of a [`SentinelGroup`] needs
/// ([`SentinelGroup::tls_files`]): they belong to the group's one CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTlsFiles {
    /// The CA certificate every node and sentinel certificate is signed by
    /// (`tls_ca=`).
    pub ca_cert: PathBuf,
    /// A client certificate and key signed by that CA (`tls_cert=`,
    /// `tls_key=`); the processes require one.
    pub client: CertKeyPaths,
    /// An unrelated CA: a client trusting only it must refuse every
    /// process of the group.
    pub other_ca_cert: PathBuf,
}

impl SentinelGroup {
    /// Starts the group and waits until it is ready (see the type's docs).
    ///
    /// Fails with [`TestkitError::InvalidSetting`] for an option out of its
    /// range, and with [`TestkitError::Timeout`] (naming what was not ready)
    /// after [`SentinelOptions::startup_timeout`].
    pub fn start(opts: SentinelOptions) -> Result<SentinelGroup, TestkitError> {
        opts.validate()?;
        let kind = match opts.kind {
            Some(kind) => kind,
            None => ServerKind::from_env()?,
        };
        // One CA for all five processes, so that they trust each other and
        // a client trusting it reaches each of them.
        let pki = if opts.tls {
            Some(TestPki::generate()?)
        } else {
            None
        };
        let tls = pki.as_ref().map(|pki| {
            TlsOptions::default()
                .tls_only(true)
                .pki_dir(pki.dir().to_path_buf())
        });
        // Either node may be the primary a replica syncs from: start the
        // (diskless) full sync at once instead of after the default 5 s.
        let mut node_opts = RedisOptions::default()
            .kind(kind)
            .startup_timeout(opts.startup_timeout)
            .arg("repl-diskless-sync-delay", "0");
        if let Some(tls) = &tls {
            node_opts = node_opts.tls(tls.clone()).arg("tls-replication", "yes");
        }
        if let Some(password) = &opts.password {
            node_opts = node_opts.password(password.clone());
        }
        if let Some((user, password)) = &opts.acl_user {
            node_opts = node_opts.acl_user(user.clone(), password.clone());
        }
        let mut primary_opts = node_opts.clone();
        // So that it can follow the new primary after a failover (the
        // replica gets these from `replica_of`).
        if let Some((user, password)) = opts.credentials() {
            if let Some(user) = user {
                primary_opts = primary_opts.arg("masteruser", user);
            }
            primary_opts = primary_opts.arg("masterauth", password);
        }
        let primary = RedisServer::start_with(primary_opts)?;
        let replica = RedisServer::start_with(node_opts.replica_of(primary.addr()))?;
        let mut group = SentinelGroup {
            master_name: opts.master_name.clone(),
            kind,
            nodes: vec![primary, replica],
            sentinels: Vec::with_capacity(SENTINELS),
            failover_timeout: opts.failover_timeout,
            pki,
        };
        // One deadline for the whole readiness wait (each process' own
        // start is bounded by the same timeout).
        let ready_by = Instant::now() + opts.startup_timeout;
        let left = || ready_by.saturating_duration_since(Instant::now());
        poll_until(left(), "the replica in sync", || {
            group.nodes[1]
                .info("replication")
                .map(|info| (info_field(&info, "master_link_status") == Some("up")).then_some(()))
        })?;

        let conf = sentinel_config(&opts, group.nodes[0].port());
        for _ in 0..SENTINELS {
            let mut sentinel_opts = RedisOptions::default()
                .kind(kind)
                .startup_timeout(opts.startup_timeout);
            if let Some(password) = &opts.sentinel_password {
                sentinel_opts = sentinel_opts.password(password.clone());
            }
            if let Some(tls) = &tls {
                sentinel_opts = sentinel_opts.tls(tls.clone()).arg("tls-replication", "yes");
            }
            let sentinel =
                RedisServer::start_mode(sentinel_opts, Mode::Sentinel { conf: conf.clone() })?;
            group.sentinels.push(sentinel);
        }
        let replica_addr = group.nodes[1].addr();
        for index in 0..SENTINELS {
            let what = format!(
                "sentinel {index} knowing the primary, its replica and {} other sentinels",
                SENTINELS - 1
            );
            poll_until(left(), &what, || {
                group.sentinel_is_ready(index, replica_addr)
            })?;
        }
        tracing::debug!(
            master = %group.master_name,
            primary = %group.nodes[0].addr(),
            replica = %replica_addr,
            sentinels = ?group.sentinel_addrs(),
            "sentinel group ready"
        );
        Ok(group)
    }

    /// Whether sentinel `index` sees the primary as a healthy master with
    /// `replica` as a healthy replica and knows the other sentinels.
    fn sentinel_is_ready(
        &self,
        index: usize,
        replica: SocketAddr,
    ) -> Result<Option<()>, TestkitError> {
        let mut conn = self.ask(index)?;
        let master = conn.command(&["SENTINEL", "MASTER", &self.master_name])?;
        let master = Fields::new(&master)?;
        if master.get("flags") != Some("master")
            || master.get("num-other-sentinels") != Some(&(SENTINELS - 1).to_string())
        {
            return Ok(None);
        }
        let replicas = conn.command(&["SENTINEL", "REPLICAS", &self.master_name])?;
        let healthy = replicas.as_array().unwrap_or_default().iter().any(|entry| {
            Fields::new(entry).is_ok_and(|f| {
                f.addr() == Some(replica)
                    && f.get("flags") == Some("slave")
                    && f.get("master-link-status") == Some("ok")
            })
        });
        Ok(healthy.then_some(()))
    }

    /// A connection to sentinel `index`: TLS and authenticated when the
    /// group is.
    fn ask(&self, index: usize) -> Result<RespConnection, TestkitError> {
        let sentinel = self.sentinels.get(index).ok_or(TestkitError::NotRunning)?;
        sentinel.open(ASK_TIMEOUT)
    }

    /// The last lines of every process' log (nodes, then sentinels), each
    /// under a header naming the process and its address: for the message
    /// of a failed assertion.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let named = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("node {i}"), n))
            .chain(
                self.sentinels
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("sentinel {i}"), s)),
            );
        for (name, process) in named {
            let _ = writeln!(
                out,
                "--- {name} ({}) ---\n{}",
                process.addr(),
                process.log_tail(0)
            );
        }
        out
    }

    /// The name the sentinels monitor the primary under.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// Which server the group runs.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The addresses of the three sentinels (what a Sentinel-aware client is
    /// given).
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    /// The group's PKI with [`SentinelOptions::tls`] (`None` without): one
    /// CA for every node and sentinel, the client certificate they accept,
    /// and the negative-test material of [`TestPki`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// With [`SentinelOptions::tls`], the files a client needs to reach
    /// every process of the group (`None` without TLS).
    pub fn tls_files(&self) -> Option<SentinelTlsFiles> {
        self.pki.as_ref().map(|pki| SentinelTlsFiles {
            ca_cert: pki.ca_cert().to_path_buf(),
            client: pki.client().clone(),
            other_ca_cert: pki.other_ca_cert().to_path_buf(),
        })
    }

    /// The three sentinel processes.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// Sentinel `index` (0 to 2), e.g. to stop or kill it.
    pub fn sentinel_mut(&mut self, index: usize) -> Option<&mut RedisServer> {
        self.sentinels.get_mut(index)
    }

    /// The two data nodes: `[0]` started as the primary, `[1]` as the
    /// replica.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Data node `index` (0 or 1), e.g. to restart it.
    pub fn node_mut(&mut self, index: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(index)
    }

    /// The primary's address according to the first sentinel that answers
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`.
    pub fn current_primary_addr(&self) -> Result<SocketAddr, TestkitError> {
        let mut last = TestkitError::NotRunning;
        for index in 0..self.sentinels.len() {
            match self.primary_addr_of(index) {
                Ok(addr) => return Ok(addr),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// What sentinel `index` says the primary's address is.
    fn primary_addr_of(&self, index: usize) -> Result<SocketAddr, TestkitError> {
        let reply = self.ask(index)?.command(&[
            "SENTINEL",
            "GET-MASTER-ADDR-BY-NAME",
            &self.master_name,
        ])?;
        let parsed = match reply.as_array() {
            Some([ip, port]) => ip
                .as_str()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .zip(port.as_int().and_then(|p| u16::try_from(p).ok()))
                .map(|(ip, port)| SocketAddr::new(ip, port)),
            _ => None,
        };
        parsed.ok_or_else(|| {
            TestkitError::Protocol(format!(
                "sentinel {index}: unexpected GET-MASTER-ADDR-BY-NAME reply {reply:?}"
            ))
        })
    }

    /// The node that is the primary now (according to the sentinels).
    pub fn primary(&self) -> Result<&RedisServer, TestkitError> {
        let addr = self.current_primary_addr()?;
        self.node_at(addr)
    }

    /// The node that is not the primary now.
    pub fn replica(&self) -> Result<&RedisServer, TestkitError> {
        let addr = self.current_primary_addr()?;
        self.node_at(addr)?;
        self.nodes
            .iter()
            .find(|node| node.addr() != addr)
            .ok_or_else(|| TestkitError::Protocol("the group has no second node".into()))
    }

    fn node_index_at(&self, addr: SocketAddr) -> Result<usize, TestkitError> {
        self.nodes
            .iter()
            .position(|node| node.addr() == addr)
            .ok_or_else(|| {
                TestkitError::Protocol(format!(
                    "the sentinels name {addr} as primary, which is no node of this group"
                ))
            })
    }

    fn node_at(&self, addr: SocketAddr) -> Result<&RedisServer, TestkitError> {
        let index = self.node_index_at(addr)?;
        self.nodes
            .get(index)
            .ok_or_else(|| TestkitError::Protocol(format!("no node {index}")))
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER <name>`): the
    /// replica is promoted without the primary failing, and the old primary
    /// becomes its replica. Returns at once; follow with
    /// [`wait_for_new_primary`](Self::wait_for_new_primary).
    ///
    /// An error reply (`-NOGOODSLAVE`, `-INPROG`, ...) is returned as
    /// [`TestkitError::Reply`].
    pub fn failover(&self) -> Result<(), TestkitError> {
        let mut last = TestkitError::NotRunning;
        for index in 0..self.sentinels.len() {
            let conn = self.ask(index);
            match conn.and_then(|mut c| c.command(&["SENTINEL", "FAILOVER", &self.master_name])) {
                Ok(_) => return Ok(()),
                Err(e @ TestkitError::Reply(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// [`failover`](Self::failover), then
    /// [`wait_for_new_primary`](Self::wait_for_new_primary) with the
    /// primary of before; returns the new primary's address.
    ///
    /// A sentinel starved of CPU for over 2 s enters TILT mode, and a
    /// requested failover then runs into `failover-timeout` and is dropped:
    /// nothing retries it. So when no new primary is there after twice
    /// [`SentinelOptions::failover_timeout`] (at least 10 s), the failover
    /// is requested again, as an operator would (an `-INPROG` or
    /// `-NOGOODSLAVE` reply just means "wait"), until `timeout` passes.
    pub fn failover_and_wait(&self, timeout: Duration) -> Result<SocketAddr, TestkitError> {
        let deadline = Instant::now() + timeout;
        let old = self.current_primary_addr()?;
        let retry_after = (self.failover_timeout * 2).max(Duration::from_secs(10));
        loop {
            match self.failover() {
                Ok(()) | Err(TestkitError::Reply(_)) => {}
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_for_new_primary(old, left.min(retry_after)) {
                Ok(new) => return Ok(new),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "no new primary yet; requesting the failover again");
                }
            }
        }
    }

    /// Kills the current primary with SIGKILL and returns its address (pass
    /// it to [`wait_for_new_primary`](Self::wait_for_new_primary)). The
    /// sentinels notice after [`SentinelOptions::down_after`] and fail over.
    pub fn kill_primary(&mut self) -> Result<SocketAddr, TestkitError> {
        let addr = self.current_primary_addr()?;
        let index = self.node_index_at(addr)?;
        if let Some(node) = self.nodes.get_mut(index) {
            node.kill();
        }
        tracing::debug!(%addr, "primary killed");
        Ok(addr)
    }

    /// Polls until every running sentinel names the same primary, other
    /// than `old`, and sees it as a healthy master (`SENTINEL MASTER` flags
    /// exactly `master`: not down, no failover in progress), and that node
    /// reports `role:master`; returns its address.
    ///
    /// Fails with [`TestkitError::Timeout`] after `timeout`, saying what the
    /// sentinels reported last.
    pub fn wait_for_new_primary(
        &self,
        old: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, TestkitError> {
        let what = format!("a primary other than {old} named by every sentinel");
        poll_until(timeout, &what, || {
            let mut agreed = None;
            let mut answers = 0;
            for (index, sentinel) in self.sentinels.iter().enumerate() {
                if sentinel.pid().is_none() {
                    continue;
                }
                let addr = self.primary_addr_of(index)?;
                if addr == old || agreed.is_some_and(|a| a != addr) {
                    return Err(TestkitError::Protocol(format!(
                        "sentinel {index} names {addr}"
                    )));
                }
                let mut conn = self.ask(index)?;
                let master = conn.command(&["SENTINEL", "MASTER", &self.master_name])?;
                let flags = Fields::new(&master)?
                    .get("flags")
                    .unwrap_or_default()
                    .to_owned();
                if flags != "master" {
                    return Err(TestkitError::Protocol(format!(
                        "sentinel {index} names {addr} with flags {flags:?}"
                    )));
                }
                agreed = Some(addr);
                answers += 1;
            }
            let Some(addr) = agreed.filter(|_| answers >= QUORUM) else {
                return Err(TestkitError::Protocol(format!(
                    "only {answers} sentinels running, {QUORUM} needed"
                )));
            };
            let info = self.node_at(addr)?.info("replication")?;
            match info_field(&info, "role") {
                Some("master") => Ok(Some(addr)),
                role => Err(TestkitError::Protocol(format!(
                    "{addr} reports role {role:?}, not yet master"
                ))),
            }
        })
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        // Sentinels first, so that they do not react to the nodes going away.
        for sentinel in &mut self.sentinels {
            sentinel.kill();
        }
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// The `sentinel ...` directives of every sentinel of a group.
fn sentinel_config(opts: &SentinelOptions, primary_port: u16) -> String {
    let name = &opts.master_name;
    let mut conf = String::new();
    let _ = writeln!(
        conf,
        "sentinel monitor {name} 127.0.0.1 {primary_port} {QUORUM}"
    );
    let _ = writeln!(
        conf,
        "sentinel down-after-milliseconds {name} {}",
        opts.down_after.as_millis()
    );
    let _ = writeln!(
        conf,
        "sentinel failover-timeout {name} {}",
        opts.failover_timeout.as_millis()
    );
    let _ = writeln!(conf, "sentinel parallel-syncs {name} 1");
    if let Some((user, password)) = opts.credentials() {
        if let Some(user) = user {
            let _ = writeln!(conf, "sentinel auth-user {name} {}", quote(user));
        }
        let _ = writeln!(conf, "sentinel auth-pass {name} {}", quote(password));
    }
    // What a sentinel sends to the others (which `requirepass` the same).
    if let Some(password) = &opts.sentinel_password {
        let _ = writeln!(conf, "sentinel sentinel-pass {}", quote(password));
    }
    conf
}

/// The field/value pairs of a `SENTINEL MASTER` or `SENTINEL REPLICAS`
/// entry (a flat RESP2 array).
struct Fields<'a>(&'a [RespValue]);

impl<'a> Fields<'a> {
    fn new(value: &'a RespValue) -> Result<Fields<'a>, TestkitError> {
        value
            .as_array()
            .map(Fields)
            .ok_or_else(|| TestkitError::Protocol(format!("expected a field array, got {value:?}")))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .chunks_exact(2)
            .find(|pair| pair.first().and_then(RespValue::as_str) == Some(name))
            .and_then(|pair| pair.get(1))
            .and_then(RespValue::as_str)
    }

    fn addr(&self) -> Option<SocketAddr> {
        let ip = self.get("ip")?.parse::<IpAddr>().ok()?;
        let port = self.get("port")?.parse::<u16>().ok()?;
        Some(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_rejected() {
        let bad = [
            SentinelOptions::default().master_name(""),
            SentinelOptions::default().master_name("has space"),
            SentinelOptions::default().master_name("x".repeat(65)),
            SentinelOptions::default().down_after(Duration::from_millis(99)),
            SentinelOptions::default().down_after(Duration::from_secs(61)),
            SentinelOptions::default().failover_timeout(Duration::from_millis(999)),
            SentinelOptions::default().startup_timeout(Duration::ZERO),
            SentinelOptions::default().sentinel_password(""),
            SentinelOptions::default().sentinel_password("x".repeat(513)),
        ];
        for opts in bad {
            let err = opts.validate().unwrap_err();
            assert!(matches!(err, TestkitError::InvalidSetting(_)), "{err}");
        }
        SentinelOptions::default().validate().unwrap();
        SentinelOptions::default()
            .master_name("my-primary.1_a")
            .validate()
            .unwrap();
    }

    #[test]
    fn config_names_the_primary_and_quorum() {
        let opts = SentinelOptions::default().password("p \"w\"");
        let conf = sentinel_config(&opts, 7000);
        assert!(conf.starts_with("sentinel monitor switchyard 127.0.0.1 7000 2\n"));
        assert!(conf.contains("sentinel down-after-milliseconds switchyard 2000\n"));
        assert!(conf.contains("sentinel failover-timeout switchyard 5000\n"));
        assert!(conf.contains("sentinel auth-pass switchyard \"p \\\"w\\\"\"\n"));
        assert!(!conf.contains("auth-user"));
        assert!(!conf.contains("sentinel-pass"));
        let conf = sentinel_config(&opts.clone().sentinel_password("s pw"), 7000);
        assert!(conf.contains("sentinel sentinel-pass \"s pw\"\n"), "{conf}");
        let acl = SentinelOptions::default()
            .password("default pw")
            .acl_user("app", "app pw");
        let conf = sentinel_config(&acl, 7000);
        assert!(
            conf.contains("sentinel auth-user switchyard \"app\"\n"),
            "{conf}"
        );
        assert!(
            conf.contains("sentinel auth-pass switchyard \"app pw\"\n"),
            "{conf}"
        );
    }

    #[test]
    fn fields_are_read_from_flat_arrays() {
        let bulk = |s: &str| RespValue::Bulk(s.as_bytes().to_vec());
        let entry = RespValue::Array(vec![
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("port"),
            bulk("7001"),
            bulk("flags"),
        ]);
        let fields = Fields::new(&entry).unwrap();
        assert_eq!(fields.get("flags"), None);
        assert_eq!(fields.addr(), Some("127.0.0.1:7001".parse().unwrap()));
        assert!(Fields::new(&RespValue::Null).is_err());
    }
}
