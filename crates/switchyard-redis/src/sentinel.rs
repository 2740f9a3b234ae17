//! Redis Sentinel: the settings ([`SentinelConfig`]), the URL form, finding
//! the current primary ([`resolve`]) and checking the role of a server
//! ([`role_health`]).
//!
//! Every connection the adapters open with a Sentinel config — the shared
//! one, the dedicated blocking readers, the subscribing connections and the
//! hand-written hot-path connections — first asks the sentinels, in the
//! order given, `SENTINEL GET-MASTER-ADDR-BY-NAME <master>`, then checks
//! with `ROLE` that the server named is a primary, and only then connects.
//! So every reconnect after a failover (Sentinel closes the clients of a
//! demoted primary) lands on the new primary by itself.
//!
//! The URL form (both adapters, `rediss+…` for TLS to sentinels and nodes):
//!
//! ```text
//! redis+streams+sentinel://[user:password@]s1:26379[,s2:26379...]/master-name[/db][?sentinel_auth=same&...]
//! redis+pubsub+sentinel://...
//! ```
//!
//! The user and password are those of the Redis nodes. Sentinels are asked
//! without credentials unless `sentinel_auth=same` (send the same user and
//! password to the sentinels) or credentials set in code
//! ([`SentinelConfig::with_credentials`]).

use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, Value};
use switchyard_core::{Error, Health, Result};

use crate::config::{RedisConfig, Secret};
use crate::parse::{host_port, parse_host_port};

/// Where the sentinels are and which primary to ask them for.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelConfig {
    /// Sentinel addresses, asked in this order: 1 to
    /// [`MAX_SENTINELS`](Self::MAX_SENTINELS) of them, each a non-empty host
    /// and a port 1 to 65535 (default port 26379).
    pub sentinels: Vec<(String, u16)>,
    /// The master name the sentinels monitor (`sentinel monitor <name> ...`):
    /// 1 to 255 characters, no whitespace or control characters.
    pub master_name: String,
    /// ACL user for the sentinels (none by default).
    pub username: Option<String>,
    /// Password for the sentinels (never shown).
    pub password: Option<Secret>,
    /// How often a client asks the sentinels whether the primary changed:
    /// 10 ms to 1 min (default 250 ms; URL `sentinel_poll`). A change makes
    /// every connection of the client reconnect to the new primary, even
    /// when the old one still accepts writes (a `SENTINEL FAILOVER` leaves
    /// it a primary for several seconds: what is written there is lost).
    pub poll_interval: Duration,
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.addrs())
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl SentinelConfig {
    /// Default sentinel port.
    pub const DEFAULT_PORT: u16 = 26379;
    /// Most sentinel addresses accepted.
    pub const MAX_SENTINELS: usize = 16;
    /// Default [`poll_interval`](Self::poll_interval).
    pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

    /// Sentinels at `sentinels` monitoring `master_name`, asked without
    /// credentials.
    pub fn new(sentinels: Vec<(String, u16)>, master_name: impl Into<String>) -> Self {
        SentinelConfig {
            sentinels,
            master_name: master_name.into(),
            username: None,
            password: None,
            poll_interval: Self::DEFAULT_POLL,
        }
    }

    /// Sets how often the sentinels are asked whether the primary changed.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Sets the credentials sent to the sentinels.
    pub fn with_credentials(mut self, username: Option<String>, password: Option<String>) -> Self {
        self.username = username;
        self.password = password.map(Secret::new);
        self
    }

    /// `s1:26379,s2:26379`, for messages.
    pub fn addrs(&self) -> String {
        self.sentinels
            .iter()
            .map(|(h, p)| host_port(h, *p))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks the documented ranges.
    pub fn validate(&self) -> Result<()> {
        if self.sentinels.is_empty() || self.sentinels.len() > Self::MAX_SENTINELS {
            return Err(Error::InvalidConfig(format!(
                "sentinel: give 1 to {} sentinel addresses, got {}",
                Self::MAX_SENTINELS,
                self.sentinels.len()
            )));
        }
        for (host, port) in &self.sentinels {
            if host.is_empty() || *port == 0 {
                return Err(Error::InvalidConfig(format!(
                    "sentinel address {:?}: give host:port with a port 1 to 65535",
                    host_port(host, *port)
                )));
            }
        }
        if self.poll_interval < Duration::from_millis(10)
            || self.poll_interval > Duration::from_secs(60)
        {
            return Err(Error::InvalidConfig(format!(
                "sentinel_poll must be 10ms to 1m, got {:?}",
                self.poll_interval
            )));
        }
        let name = &self.master_name;
        if name.is_empty()
            || name.len() > 255
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::InvalidConfig(format!(
                "sentinel master name {name:?}: must be 1 to 255 characters without whitespace"
            )));
        }
        Ok(())
    }
}

/// Splits a Sentinel URL (`redis+streams+sentinel://[userinfo@]s1:26379,s2/master[/db][?query]`)
/// into the plain URL of its first sentinel (`redis+streams://[userinfo@]s1:26379[/db][?query]`,
/// parsed as usual for credentials, db and parameters) and the sentinel settings.
/// `Ok(None)` when `input` is not a Sentinel URL.
pub(crate) fn split_url(input: &str) -> Result<Option<(String, SentinelConfig)>> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok(None);
    };
    let lower = scheme.to_ascii_lowercase();
    let Some(base) = lower.strip_suffix("+sentinel") else {
        return Ok(None);
    };
    let (authority, after) = match rest.find(['/', '?', '#']) {
        // The userinfo may not hold a raw '/', '?' or '#' (check_shape).
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut sentinels = Vec::new();
    for part in hosts.split(',') {
        sentinels.push(parse_host_port(
            input,
            "sentinel address",
            part,
            SentinelConfig::DEFAULT_PORT,
        )?);
    }
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (after, String::new()),
    };
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let master = segments.next().unwrap_or("");
    if master.is_empty() {
        return Err(Error::invalid_url(
            input,
            "a Sentinel URL needs the master name as its path: redis+streams+sentinel://s1:26379,s2:26379/mymaster[/db]",
        ));
    }
    let db = segments.next().map(|d| format!("/{d}")).unwrap_or_default();
    let (first_host, first_port) = &sentinels[0];
    let plain = format!(
        "{base}://{userinfo}{}{db}{query}",
        host_port(first_host, *first_port)
    );
    let cfg = SentinelConfig::new(sentinels, crate::parse::percent_decode(master));
    Ok(Some((plain, cfg)))
}

/// The role a server reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A primary: accepts writes.
    Primary,
    /// A replica (read-only), replicating from `host:port` when known.
    Replica(Option<String>),
    /// A sentinel, or a role this crate does not know.
    Other(String),
}

/// Asks the server behind `conn` for its role (`ROLE`). `Ok(None)` when the
/// user may not run `ROLE` (`NOPERM`): the role is then unknown.
pub async fn role<C: ConnectionLike + Send>(
    conn: &mut C,
) -> std::result::Result<Option<Role>, redis::RedisError> {
    let reply = match redis::cmd("ROLE").query_async::<Value>(conn).await {
        Ok(v) => v,
        Err(e) if e.code() == Some("NOPERM") => return Ok(None),
        Err(e) => return Err(e),
    };
    let items = match reply {
        Value::Array(items) => items,
        Value::ServerError(e) if e.code() == "NOPERM" => return Ok(None),
        Value::ServerError(e) => return Err(e.into()),
        _ => return Ok(Some(Role::Other("an unexpected ROLE reply".into()))),
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(n)) => n.to_string(),
        _ => String::new(),
    };
    Ok(Some(match text(items.first()).as_str() {
        "master" => Role::Primary,
        "slave" | "replica" => {
            let host = text(items.get(1));
            let port = text(items.get(2));
            Role::Replica((!host.is_empty()).then(|| format!("{host}:{port}")))
        }
        other => Role::Other(other.to_owned()),
    }))
}

/// The health of the server behind `conn`, from its role: `Ok` for a
/// primary (or when the user may not run `ROLE`), `Degraded` for a replica
/// with the reason "connected to a replica (read-only)", `Down` when
/// `ROLE` fails or does not answer within `timeout`.
pub async fn role_health<C: ConnectionLike + Send>(
    conn: &mut C,
    addr: &str,
    timeout: Duration,
) -> Health {
    match tokio::time::timeout(timeout, role(conn)).await {
        Ok(Ok(Some(Role::Primary) | None)) => Health::Ok,
        Ok(Ok(Some(Role::Replica(of)))) => Health::Degraded(replica_reason(addr, of.as_deref())),
        Ok(Ok(Some(Role::Other(r)))) => Health::Down(format!(
            "redis at {addr} is not a primary (ROLE says {r:?}); point the URL at the Redis primary"
        )),
        Ok(Err(e)) => Health::Down(format!("redis at {addr} did not answer ROLE: {e}")),
        Err(_) => Health::Down(format!(
            "redis at {addr} did not answer ROLE within {timeout:?}"
        )),
    }
}

/// "connected to a replica (read-only)", with where it replicates from and
/// what to do.
pub fn replica_reason(addr: &str, of: Option<&str>) -> String {
    let of = of.map(|p| format!(" of {p}")).unwrap_or_default();
    format!(
        "redis at {addr}: connected to a replica (read-only){of}: publishes fail with READONLY; point the URL at the primary, or use the Sentinel URL form (redis+streams+sentinel://sentinel:26379/master-name) so the primary is found again after a failover"
    )
}

/// `cfg` pointed at the primary its sentinels name now; `cfg` itself when
/// it has no Sentinel settings. Asks each sentinel in turn (each within the
/// connect timeout) and checks with `ROLE` that the server named is a
/// primary (a failover in progress may name a server not promoted yet).
///
/// Errors, each naming every sentinel and why (never a password):
/// [`Error::Backend`] when every sentinel does not know the master name (a
/// typo: not transient); [`Error::Tls`] when the TLS handshake with the
/// sentinels failed (their certificate refused, or ours) and none answered;
/// [`Error::Backend`] saying the sentinels refused authentication when they
/// refused the credentials (`NOAUTH`, `WRONGPASS`) and none answered —
/// neither is transient, a retry meets the same certificate or password;
/// [`Error::Connect`] (transient) when no sentinel could be reached, or the
/// server named is not a primary yet.
pub async fn resolve(cfg: &RedisConfig) -> Result<RedisConfig> {
    let Some(s) = &cfg.sentinel else {
        return Ok(cfg.clone());
    };
    let mut failures = Vec::new();
    let mut unknown = 0;
    // Sentinels that answered, but named no usable primary.
    let mut answered = 0;
    let mut refused_auth = 0;
    let mut tls_kind = None;
    for (host, port) in &s.sentinels {
        let at = host_port(host, *port);
        match ask(cfg, s, host, *port).await {
            Ok(Some((h, p))) => {
                let mut primary = cfg.clone();
                primary.host = h;
                primary.port = p;
                match check_primary(&primary).await {
                    Ok(()) => {
                        tracing::debug!(sentinel = %at, primary = %primary.addr(), master = %s.master_name, "sentinel named the primary");
                        return Ok(primary);
                    }
                    Err(why) => {
                        answered += 1;
                        failures.push(format!("{at} named {}, but {why}", primary.addr()));
                    }
                }
            }
            Ok(None) => {
                unknown += 1;
                answered += 1;
                failures.push(format!("{at} does not monitor {:?}", s.master_name));
            }
            Err(AskFailure::Config(e)) => return Err(e),
            Err(AskFailure::Auth(why)) => {
                refused_auth += 1;
                failures.push(format!("{at} refused authentication: {why}"));
            }
            Err(AskFailure::Tls(kind, why)) => {
                tls_kind.get_or_insert(kind);
                failures.push(format!("{at}: TLS failed ({kind}): {why}"));
            }
            Err(AskFailure::Other(why)) => failures.push(format!("{at}: {why}")),
        }
    }
    let detail = failures.join("; ");
    if unknown == s.sentinels.len() {
        return Err(Error::Backend(format!(
            "no sentinel monitors a master named {:?} ({detail}): check the master name in the URL path (SENTINEL MASTERS on a sentinel lists them)",
            s.master_name
        )));
    }
    // No sentinel answered; those reached refused our certificate settings
    // or credentials, which a retry does not change.
    if answered == 0
        && let Some(kind) = tls_kind
    {
        return Err(Error::Tls {
            backend: "redis sentinel",
            addr: s.addrs(),
            kind,
            reason: format!(
                "the TLS handshake with the sentinels failed ({detail}); the sentinels use the URL's TLS settings (tls_ca, tls_cert, tls_key), as the nodes do"
            ),
        });
    }
    if answered == 0 && refused_auth > 0 {
        let advice = if s.password.is_none() {
            "the sentinels require a password: add sentinel_auth=same to the URL when they take the nodes' user and password, else set theirs in code with SentinelConfig::with_credentials"
        } else {
            "check the sentinels' user and password: sentinel_auth=same sends the nodes' ones from the URL, SentinelConfig::with_credentials sets others in code"
        };
        return Err(Error::Backend(format!(
            "the sentinels at {} refused authentication for master {:?} ({detail}): {advice}",
            s.addrs(),
            s.master_name
        )));
    }
    Err(Error::Connect {
        backend: "redis sentinel",
        addr: s.addrs(),
        timeout: cfg.connect_timeout,
        reason: format!("no primary found for {:?}: {detail}", s.master_name),
    })
}

/// Why one sentinel could not be asked.
enum AskFailure {
    /// The settings are unusable (a TLS file missing or not PEM, ...):
    /// reported as it is, whichever sentinel.
    Config(Error),
    /// It refused the credentials, or asked for some (`NOAUTH`,
    /// `WRONGPASS`, a failed `AUTH`).
    Auth(String),
    /// The TLS handshake failed: its kind (as in [`Error::Tls`]) and why.
    Tls(&'static str, String),
    /// Unreachable, no reply in time, or another failure.
    Other(String),
}

impl AskFailure {
    /// Sorts the redis-rs error of asking the sentinel at `host:port`.
    fn of(cfg: &RedisConfig, host: &str, port: u16, e: &redis::RedisError) -> AskFailure {
        if cfg.tls && e.code().is_none() {
            let mut at = cfg.clone();
            at.host = host.to_owned();
            at.port = port;
            if let Some((kind, why)) = crate::tls::tls_failure(&at, &e.to_string()) {
                return AskFailure::Tls(kind, why);
            }
        }
        let auth = matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
            || e.kind() == redis::ErrorKind::AuthenticationFailed;
        if auth {
            // redis-rs error texts never contain the password.
            AskFailure::Auth(e.to_string())
        } else {
            AskFailure::Other(e.to_string())
        }
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel: the address, `None`
/// when it does not know the name, or why it could not be asked.
async fn ask(
    cfg: &RedisConfig,
    s: &SentinelConfig,
    host: &str,
    port: u16,
) -> std::result::Result<Option<(String, u16)>, AskFailure> {
    let client = crate::connect::client_for(
        cfg,
        host,
        port,
        0,
        s.username.as_deref(),
        s.password.as_ref().map(Secret::expose),
    )
    .map_err(AskFailure::Config)?;
    let conf = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.connect_timeout));
    let attempt = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&conf)
            .await?;
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&s.master_name)
            .query_async::<Option<(String, String)>>(&mut conn)
            .await
    };
    let reply = match tokio::time::timeout(cfg.connect_timeout, attempt).await {
        Err(_) => {
            return Err(AskFailure::Other(format!(
                "no reply within {:?}",
                cfg.connect_timeout
            )));
        }
        Ok(Err(e)) => return Err(AskFailure::of(cfg, host, port, &e)),
        Ok(Ok(r)) => r,
    };
    match reply {
        None => Ok(None),
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some((h, p))),
            _ => Err(AskFailure::Other(format!(
                "answered an address with an invalid port {p:?}"
            ))),
        },
    }
}

/// Checks with `ROLE` that `primary` (a config without Sentinel settings'
/// effect: its host and port) is a primary, within the connect timeout.
async fn check_primary(primary: &RedisConfig) -> std::result::Result<(), String> {
    let client = crate::connect::client_for(
        primary,
        &primary.host,
        primary.port,
        primary.db,
        primary.username.as_deref(),
        primary.password.as_ref().map(Secret::expose),
    )
    .map_err(|e| e.to_string())?;
    let conf = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(primary.connect_timeout))
        .set_response_timeout(Some(primary.connect_timeout));
    let attempt = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&conf)
            .await?;
        role(&mut conn).await
    };
    match tokio::time::timeout(primary.connect_timeout, attempt).await {
        Err(_) => Err(format!(
            "it did not answer ROLE within {:?}",
            primary.connect_timeout
        )),
        Ok(Err(e)) => Err(format!("asking its role failed: {e}")),
        Ok(Ok(Some(Role::Primary) | None)) => Ok(()),
        Ok(Ok(Some(Role::Replica(_)))) => {
            Err("it is a replica (a failover in progress?)".to_owned())
        }
        Ok(Ok(Some(Role::Other(r)))) => Err(format!("its role is {r:?}")),
    }
}

/// Counts the changes of primary the sentinels report, for one client:
/// connections compare [`epoch`](Self::epoch) with the value they opened
/// under and reconnect when it moved.
#[derive(Debug, Default)]
pub struct PrimaryWatch {
    epoch: std::sync::atomic::AtomicU64,
}

impl PrimaryWatch {
    /// How many times the primary changed since the watch started.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts a task asking the sentinels of `cfg` for the primary every
    /// poll interval; it ends when the returned watch is dropped. `None`
    /// without Sentinel settings or outside a Tokio runtime.
    pub(crate) fn spawn(cfg: &RedisConfig) -> Option<std::sync::Arc<PrimaryWatch>> {
        let s = cfg.sentinel.clone()?;
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let watch = std::sync::Arc::new(PrimaryWatch::default());
        let weak = std::sync::Arc::downgrade(&watch);
        let cfg = cfg.clone();
        handle.spawn(async move {
            let mut known: Option<(String, u16)> = None;
            let mut first = true;
            loop {
                if !first {
                    tokio::time::sleep(s.poll_interval).await;
                }
                first = false;
                let Some(watch) = weak.upgrade() else {
                    return;
                };
                let mut named = None;
                for (host, port) in &s.sentinels {
                    if let Ok(Some(addr)) = ask(&cfg, &s, host, *port).await {
                        named = Some(addr);
                        break;
                    }
                }
                let Some(addr) = named else {
                    continue;
                };
                if known.as_ref().is_some_and(|k| *k != addr) {
                    watch
                        .epoch
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    tracing::info!(
                        master = %s.master_name,
                        primary = %host_port(&addr.0, addr.1),
                        "redis: the sentinels name a new primary; connections follow it"
                    );
                }
                known = Some(addr);
            }
        });
        Some(watch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentinel_urls() {
        let (plain, s) = split_url(
            "redis+streams+sentinel://app:p%40ss@s1:26380,[::1],s3/my%20master/2?namespace=n&sentinel_auth=same",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            plain,
            "redis+streams://app:p%40ss@s1:26380/2?namespace=n&sentinel_auth=same"
        );
        assert_eq!(
            s.sentinels,
            vec![
                ("s1".to_owned(), 26380),
                ("::1".to_owned(), 26379),
                ("s3".to_owned(), 26379)
            ]
        );
        assert_eq!(s.master_name, "my master");
        assert!(s.validate().is_err(), "whitespace in the master name");
        let (plain, s) = split_url("REDISS+PUBSUB+SENTINEL://h/m").unwrap().unwrap();
        assert_eq!(plain, "rediss+pubsub://h:26379");
        assert_eq!(s.master_name, "m");
        assert!(s.validate().is_ok());
        assert!(split_url("redis+streams://h/0").unwrap().is_none());
        for bad in [
            "redis+streams+sentinel://h:1",
            "redis+streams+sentinel://h:1/",
            "redis+streams+sentinel://h:0/m",
            "redis+streams+sentinel://h:x/m",
            "redis+streams+sentinel://a,,b/m",
            "redis+streams+sentinel://[::1/m",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    /// Before: a sentinel refusing the credentials was one more reason in
    /// a transient `Error::Connect` ("could not connect to redis sentinel
    /// ... NOAUTH"), retried forever; a failed TLS handshake likewise.
    #[test]
    fn ask_failures_are_sorted_by_cause() {
        let server_error = |text: &str| -> redis::RedisError {
            match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
                Ok(Value::ServerError(e)) => e.into(),
                other => panic!("not a server error: {other:?}"),
            }
        };
        let plain = RedisConfig::new("127.0.0.1", 1);
        let tls = RedisConfig::new("127.0.0.1", 1).with_tls(true);
        let auth = [
            server_error("NOAUTH Authentication required."),
            server_error("WRONGPASS invalid username-password pair"),
            redis::RedisError::from((
                redis::ErrorKind::AuthenticationFailed,
                "Password authentication failed",
            )),
        ];
        for e in &auth {
            for cfg in [&plain, &tls] {
                assert!(
                    matches!(AskFailure::of(cfg, "h", 2, e), AskFailure::Auth(_)),
                    "{e}"
                );
            }
        }
        let handshake = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(matches!(
            AskFailure::of(&tls, "h", 2, &handshake),
            AskFailure::Tls("unknown issuer", _)
        ));
        assert!(matches!(
            AskFailure::of(&plain, "h", 2, &handshake),
            AskFailure::Other(_)
        ));
        let refused = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(matches!(
            AskFailure::of(&tls, "h", 2, &refused),
            AskFailure::Other(_)
        ));
    }

    #[test]
    fn ranges() {
        let s = |n: usize| SentinelConfig::new(vec![("h".to_owned(), 1); n], "m");
        assert!(s(0).validate().is_err());
        assert!(s(1).validate().is_ok());
        assert!(s(SentinelConfig::MAX_SENTINELS).validate().is_ok());
        assert!(s(SentinelConfig::MAX_SENTINELS + 1).validate().is_err());
        assert!(
            SentinelConfig::new(vec![("h".into(), 0)], "m")
                .validate()
                .is_err()
        );
        assert!(
            SentinelConfig::new(vec![(String::new(), 1)], "m")
                .validate()
                .is_err()
        );
        assert!(
            SentinelConfig::new(vec![("h".into(), 1)], "m".repeat(256))
                .validate()
                .is_err()
        );
        let shown = format!(
            "{:?}",
            s(1).with_credentials(Some("u".into()), Some("hunter2".into()))
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
