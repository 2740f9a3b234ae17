//! Redis Cluster: the settings ([`ClusterConfig`]), the URL form, the hash
//! slot of a key ([`key_slot`]) and the slot map ([`Router`]) that decides
//! which node a command goes to.
//!
//! The URL form (both adapters; `rediss+…` for TLS to every node):
//!
//! ```text
//! redis+streams+cluster://[user:password@]h1:7000[,h2:7001...][/0][?param=value&...]
//! redis+pubsub+cluster://...
//! ```
//!
//! The hosts are seeds: any reachable one tells the client the whole
//! cluster (`CLUSTER SLOTS`); nodes added later are found when the slot
//! map is refreshed. A cluster has only database 0. User, password and the
//! TLS settings apply to every node.
//!
//! Where a command goes: ordinary commands on the shared connection go
//! through redis-rs' cluster connection (routing by the key's slot,
//! following `MOVED` and `ASK`, retrying `TRYAGAIN` and `CLUSTERDOWN` a
//! bounded number of times). Dedicated connections (blocking reads,
//! subscriptions) and the hand-written hot paths ask the [`Router`] for the
//! master serving a key's slot and connect there; a `MOVED` reply refreshes
//! the router's map, and the connection is opened again on the new owner.

mod router;

use switchyard_core::{Error, Result};

pub use router::{Router, SlotRange, master_of};

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// Where the cluster's seed nodes are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Seed nodes, asked in this order for the slot map: 1 to
    /// [`MAX_SEEDS`](Self::MAX_SEEDS) of them, each a non-empty host and a
    /// port 1 to 65535 (default port 6379).
    pub seeds: Vec<(String, u16)>,
}

impl ClusterConfig {
    /// Most seed nodes accepted.
    pub const MAX_SEEDS: usize = 64;

    /// A cluster reached through `seeds`.
    pub fn new(seeds: Vec<(String, u16)>) -> Self {
        ClusterConfig { seeds }
    }

    /// The seeds as `h1:p1,h2:p2` (for messages).
    pub fn addrs(&self) -> String {
        self.seeds
            .iter()
            .map(|(h, p)| crate::parse::host_port(h, *p))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks the seed list.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.seeds.is_empty() || self.seeds.len() > Self::MAX_SEEDS {
            return Err(Error::InvalidConfig(format!(
                "a cluster needs 1 to {} seed nodes, got {}",
                Self::MAX_SEEDS,
                self.seeds.len()
            )));
        }
        for (host, port) in &self.seeds {
            if host.is_empty() || *port == 0 {
                return Err(Error::InvalidConfig(format!(
                    "cluster seed {:?}: give a host and a port 1 to 65535",
                    crate::parse::host_port(host, *port)
                )));
            }
        }
        Ok(())
    }
}

/// The hash slot of `key` (CRC16-XMODEM of the key, or of its hash tag —
/// the text between the first `{` and the next `}` when not empty — modulo
/// 16,384), as Redis Cluster computes it.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
}

/// The health of a cluster through its shared connection: `Down` when no
/// master answers or the cluster says `cluster_state:fail`; `Degraded`
/// naming the masters that do not answer `PING` (or `ROLE` as master)
/// within `timeout`; else `Ok`. The slot map is fetched again first.
pub async fn cluster_health(
    conn: &crate::SharedConnection,
    timeout: std::time::Duration,
) -> switchyard_core::Health {
    use switchyard_core::Health;
    let Some(router) = conn.client().router().cloned() else {
        return Health::Ok;
    };
    let seeds = conn
        .client()
        .config()
        .cluster
        .as_ref()
        .map(ClusterConfig::addrs)
        .unwrap_or_default();
    if let Err(e) = tokio::time::timeout(timeout, router.refresh())
        .await
        .unwrap_or_else(|_| {
            Err(Error::Transient(format!(
                "no CLUSTER SLOTS reply within {timeout:?}"
            )))
        })
    {
        return Health::Down(format!("redis cluster at {seeds}: {e}"));
    }
    let masters = match router.masters().await {
        Ok(m) => m,
        Err(e) => return Health::Down(format!("redis cluster at {seeds}: {e}")),
    };
    let mut failing = Vec::new();
    let mut state = None;
    for m in &masters {
        let Some(mut node) = conn.to_node(&m.host, m.port) else {
            continue;
        };
        let addr = m.addr();
        match crate::sentinel::role_health(&mut node, &addr, timeout).await {
            Health::Ok => {}
            other => {
                failing.push(format!("{other:?}"));
                continue;
            }
        }
        if state.is_none() {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("INFO");
            let info = cmd.query_async::<String>(&mut node);
            if let Ok(Ok(text)) = tokio::time::timeout(timeout, info).await {
                state = text
                    .lines()
                    .find_map(|l| l.strip_prefix("cluster_state:"))
                    .map(|v| v.trim().to_owned());
            }
        }
    }
    if failing.len() == masters.len() {
        return Health::Down(format!(
            "redis cluster at {seeds}: no master answers ({})",
            failing.join("; ")
        ));
    }
    if let Some(s) = state.filter(|s| s != "ok") {
        return Health::Down(format!(
            "redis cluster at {seeds}: cluster_state:{s} (slots without a reachable master; writes to them fail until a replica takes over)"
        ));
    }
    if !failing.is_empty() {
        return Health::Degraded(format!(
            "redis cluster at {seeds}: {} of {} masters do not answer ({})",
            failing.len(),
            masters.len(),
            failing.join("; ")
        ));
    }
    Health::Ok
}

/// Splits a cluster URL (`redis+streams+cluster://[userinfo@]h1:7000,h2[/0][?query]`)
/// into the plain URL of its first seed (`redis+streams://[userinfo@]h1:7000[/0][?query]`,
/// parsed as usual for credentials and parameters) and the cluster
/// settings. `Ok(None)` when `input` is not a cluster URL.
pub(crate) fn split_url(input: &str) -> Result<Option<(String, ClusterConfig)>> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok(None);
    };
    let lower = scheme.to_ascii_lowercase();
    let Some(base) = lower.strip_suffix("+cluster") else {
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
    let mut seeds = Vec::new();
    for part in hosts.split(',') {
        seeds.push(crate::parse::parse_host_port(
            input,
            "cluster node",
            part,
            crate::RedisConfig::DEFAULT_PORT,
        )?);
    }
    if seeds.len() > ClusterConfig::MAX_SEEDS {
        return Err(Error::invalid_url(
            input,
            format!(
                "at most {} cluster nodes, got {}",
                ClusterConfig::MAX_SEEDS,
                seeds.len()
            ),
        ));
    }
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (after, String::new()),
    };
    let path = path.trim_start_matches('/');
    if !path.is_empty() && path != "0" {
        return Err(Error::invalid_url(
            input,
            format!(
                "a Redis Cluster has only database 0; remove the path /{path} (redis+streams+cluster://h1:7000,h2:7001)"
            ),
        ));
    }
    let (first_host, first_port) = &seeds[0];
    let plain = format!(
        "{base}://{userinfo}{}{query}",
        crate::parse::host_port(first_host, *first_port)
    );
    Ok(Some((plain, ClusterConfig::new(seeds))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
        // An empty tag hashes the whole key.
        assert_eq!(
            key_slot(b"{}x"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}x") % SLOTS
        );
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn urls_split() {
        let (plain, c) =
            split_url("redis+streams+cluster://u:p%40w@h1:7000,[::1]:7001,h3?namespace=n")
                .unwrap()
                .unwrap();
        assert_eq!(plain, "redis+streams://u:p%40w@h1:7000?namespace=n");
        assert_eq!(
            c.seeds,
            vec![
                ("h1".to_owned(), 7000),
                ("::1".to_owned(), 7001),
                ("h3".to_owned(), 6379)
            ]
        );
        assert!(split_url("redis+streams://h").unwrap().is_none());
        assert!(split_url("rediss+pubsub+cluster://h/0").unwrap().is_some());
        let e = split_url("redis+streams+cluster://u:hunter2@h1/3").unwrap_err();
        assert!(e.to_string().contains("only database 0"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = split_url("redis+streams+cluster://u:hunter2@h1,:7000").unwrap_err();
        assert!(e.to_string().contains("cluster node"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
