//! [`Router`]: the cluster's slot map, as `CLUSTER SLOTS` reports it,
//! refreshed when a node answers `MOVED`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use redis::Value;
use switchyard_core::{Error, Result};

use super::{ClusterConfig, SLOTS, key_slot};
use crate::config::RedisConfig;
use crate::connect::RedisClient;

/// One range of slots and the nodes that serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot (inclusive).
    pub start: u16,
    /// Last slot (inclusive).
    pub end: u16,
    /// The master: host and port.
    pub master: (String, u16),
    /// Its replicas.
    pub replicas: Vec<(String, u16)>,
}

/// The slot map of a cluster: which master serves which slot.
///
/// Built from `CLUSTER SLOTS` of the first node that answers (known
/// masters first, then the seeds); refreshed by [`refresh`](Self::refresh)
/// (a caller saw `MOVED`, or a node went away). [`epoch`](Self::epoch)
/// counts the changes of the map, so a connection opened under an older
/// map can tell that it may be on the wrong node.
pub struct Router {
    /// The settings every node connection uses (credentials, TLS,
    /// timeouts); host and port are set per node.
    base: RedisConfig,
    seeds: ClusterConfig,
    map: RwLock<Arc<Vec<SlotRange>>>,
    epoch: AtomicU64,
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("seeds", &self.seeds.addrs())
            .field("ranges", &self.map.read().len())
            .field("epoch", &self.epoch())
            .finish()
    }
}

impl Router {
    /// A router for the cluster of `cfg` (its seeds, credentials and TLS);
    /// the map is fetched at the first use.
    pub(crate) fn new(cfg: &RedisConfig, seeds: ClusterConfig) -> Router {
        let mut base = cfg.clone();
        base.cluster = None;
        base.sentinel = None;
        base.db = 0;
        Router {
            base,
            seeds,
            map: RwLock::new(Arc::new(Vec::new())),
            epoch: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// How many times the map changed since this router was made.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The map as last fetched (empty before the first fetch).
    pub fn ranges(&self) -> Arc<Vec<SlotRange>> {
        self.map.read().clone()
    }

    /// The settings of a connection to the node at `host:port`.
    pub fn node_config(&self, host: &str, port: u16) -> RedisConfig {
        let mut cfg = self.base.clone();
        cfg.host = host.to_owned();
        cfg.port = port;
        cfg
    }

    /// The settings of a connection to the master serving `key`'s slot,
    /// fetching the map first when it is empty.
    pub async fn master_for_key(&self, key: &[u8]) -> Result<RedisConfig> {
        self.master_for_slot(key_slot(key)).await
    }

    /// The settings of a connection to the master serving `slot`.
    pub async fn master_for_slot(&self, slot: u16) -> Result<RedisConfig> {
        if self.map.read().is_empty() {
            self.refresh().await?;
        }
        let (host, port) = master_of(&self.map.read(), slot).ok_or_else(|| {
            Error::Transient(format!(
                "redis cluster at {}: no master serves slot {slot} (CLUSTERDOWN, or slots not assigned); retrying",
                self.seeds.addrs()
            ))
        })?;
        Ok(self.node_config(&host, port))
    }

    /// The settings of a connection to every master, fetching the map
    /// first when it is empty.
    pub async fn masters(&self) -> Result<Vec<RedisConfig>> {
        if self.map.read().is_empty() {
            self.refresh().await?;
        }
        let mut seen: Vec<(String, u16)> = Vec::new();
        for r in self.map.read().iter() {
            if !seen.contains(&r.master) {
                seen.push(r.master.clone());
            }
        }
        Ok(seen
            .into_iter()
            .map(|(h, p)| self.node_config(&h, p))
            .collect())
    }

    /// Fetches the slot map again (`CLUSTER SLOTS`), asking the masters it
    /// knows, then the seeds, until one answers. Concurrent callers share
    /// one fetch.
    pub async fn refresh(&self) -> Result<()> {
        let before = self.epoch();
        let _one = self.refreshing.lock().await;
        if self.epoch() != before {
            return Ok(()); // another caller refreshed meanwhile
        }
        let mut candidates: Vec<(String, u16)> = Vec::new();
        for r in self.map.read().iter() {
            if !candidates.contains(&r.master) {
                candidates.push(r.master.clone());
            }
        }
        for seed in &self.seeds.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut failures = Vec::new();
        for (host, port) in candidates {
            match self.fetch_from(&host, port).await {
                Ok(map) => {
                    let changed = **self.map.read() != map;
                    if changed {
                        *self.map.write() = Arc::new(map);
                        self.epoch.fetch_add(1, Ordering::AcqRel);
                        tracing::debug!(epoch = self.epoch(), from = %crate::parse::host_port(&host, port), "redis cluster: slot map updated");
                    }
                    return Ok(());
                }
                Err(e) => failures.push(format!("{}: {e}", crate::parse::host_port(&host, port))),
            }
        }
        Err(Error::Connect {
            backend: "redis",
            addr: self.seeds.addrs(),
            timeout: self.base.connect_timeout,
            reason: format!(
                "no cluster node answered CLUSTER SLOTS ({})",
                failures.join("; ")
            ),
        })
    }

    /// `CLUSTER SLOTS` from one node, parsed and sorted.
    async fn fetch_from(&self, host: &str, port: u16) -> Result<Vec<SlotRange>> {
        let client = RedisClient::new(self.node_config(host, port))?;
        let mut conn = client.dedicated(Some(self.base.response_timeout)).await?;
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .map_err(|e| crate::classify("CLUSTER SLOTS", &e))?;
        let map = parse_slots(&reply, host)?;
        if map.is_empty() {
            return Err(Error::Transient(
                "CLUSTER SLOTS is empty: no slot is assigned yet".into(),
            ));
        }
        Ok(map)
    }
}

/// The master serving `slot` in `map` (sorted by start, as
/// [`Router::ranges`] returns it).
pub fn master_of(map: &[SlotRange], slot: u16) -> Option<(String, u16)> {
    let i = map.partition_point(|r| r.end < slot);
    map.get(i)
        .filter(|r| r.start <= slot && slot <= r.end)
        .map(|r| r.master.clone())
}

/// Parses `CLUSTER SLOTS`: `[[start, end, [ip, port, id, ...], [replica
/// ip, port, ...]...]...]`. An empty ip (`""`, or `?` for an unknown
/// endpoint) means the host that was asked.
pub(crate) fn parse_slots(reply: &Value, asked: &str) -> Result<Vec<SlotRange>> {
    let bad = |what: &str| Error::Backend(format!("unexpected CLUSTER SLOTS reply: {what}"));
    let Value::Array(entries) = reply else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(fields) = entry else {
            return Err(bad("an entry is not an array"));
        };
        let (Some(start), Some(end)) = (fields.first().and_then(int), fields.get(1).and_then(int))
        else {
            return Err(bad("a range without start and end"));
        };
        let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
            return Err(bad("a slot out of range"));
        };
        if start > end || end >= SLOTS {
            return Err(bad("a slot out of range"));
        }
        let mut nodes = fields.iter().skip(2).map(|n| node(n, asked));
        let master = nodes
            .next()
            .ok_or_else(|| bad("a range without a master"))?
            .ok_or_else(|| bad("an unreadable node"))?;
        let replicas = nodes.flatten().collect();
        out.push(SlotRange {
            start,
            end,
            master,
            replicas,
        });
    }
    out.sort_by_key(|r| r.start);
    Ok(out)
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn node(v: &Value, asked: &str) -> Option<(String, u16)> {
    let Value::Array(f) = v else {
        return None;
    };
    let host = text(f.first()?)?;
    let port = u16::try_from(int(f.get(1)?)?).ok().filter(|p| *p > 0)?;
    let host = if host.is_empty() || host == "?" {
        asked.to_owned()
    } else {
        host
    };
    Some((host, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn slots_parse_and_find() {
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(5461), Value::Int(16383), n("", 7001)]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                n("10.0.0.1", 7000),
                n("10.0.0.2", 7003),
            ]),
        ]);
        let map = parse_slots(&reply, "seed").unwrap();
        assert_eq!(map[0].master, ("10.0.0.1".to_owned(), 7000));
        assert_eq!(map[0].replicas, vec![("10.0.0.2".to_owned(), 7003)]);
        assert_eq!(map[1].master, ("seed".to_owned(), 7001));
        assert_eq!(master_of(&map, 0).unwrap().1, 7000);
        assert_eq!(master_of(&map, 5460).unwrap().1, 7000);
        assert_eq!(master_of(&map, 5461).unwrap().1, 7001);
        assert_eq!(master_of(&map, 16383).unwrap().1, 7001);
        assert!(master_of(&map[..1], 9000).is_none());
        assert!(parse_slots(&Value::Int(1), "s").is_err());
        let out_of_range = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16384),
            n("h", 1),
        ])]);
        assert!(parse_slots(&out_of_range, "s").is_err());
        let no_master = Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]);
        assert!(parse_slots(&no_master, "s").is_err());
    }
}
