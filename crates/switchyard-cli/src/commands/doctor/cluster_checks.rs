//! `switchyard doctor` on a Redis Cluster (`redis+…+cluster://`): the
//! cluster as a whole (`cluster_state`, every slot served, masters and
//! their replicas), then every master checked as one server would be —
//! reachability, version, persistence, eviction, role and, on a scratch
//! key in that master's own slots, every command the adapter uses (ACLs
//! are per node on a cluster) — each detail prefixed with the master's
//! address; then TLS and the ACL line once.

use switchyard_redis::cluster::{Router, SLOTS, SlotRange};

use switchyard_redis::{RedisClient, RedisConfig};

use super::redis_checks::{node_checks, tls};
use super::{Check, Status};

/// The commands a cluster client adds to the ACL line: the slot map, the
/// cluster's health, and `ASKING` when redis-rs follows an `ASK`.
pub(crate) const CLUSTER_ACL: &str = " +cluster|slots +cluster|info +asking";

pub(super) async fn run(cfg: &RedisConfig, streams: bool, globs: &[String]) -> Vec<Check> {
    let seeds = cfg.cluster.as_ref().map(|c| c.addrs()).unwrap_or_default();
    let router = match RedisClient::new(cfg.clone()) {
        Ok(client) => client.router().cloned(),
        Err(e) => {
            return vec![
                Check::new("reachable", Status::Fail, e.to_string()),
                tls(cfg),
            ];
        }
    };
    let Some(router) = router else {
        return vec![tls(cfg)];
    };
    if let Err(e) = router.refresh().await {
        return vec![
            Check::new(
                "reachable",
                Status::Fail,
                format!("cluster at {seeds}: {e}"),
            ),
            tls(cfg),
        ];
    }
    let ranges = router.ranges();
    let mut checks = vec![overview(&router, &ranges).await];
    let mut acl = None;
    for (master, slots) in masters(&ranges) {
        let node = router.node_config(&master.0, master.1);
        let addr = node.addr();
        for mut c in node_checks(&node, streams, globs, Some(&slots)).await {
            if c.name == "acl" {
                // What the cluster client sends besides (docs/cluster.md).
                c.detail.push_str(CLUSTER_ACL);
                acl.get_or_insert(c);
                continue;
            }
            if !c.detail.starts_with(&addr) {
                c.detail = format!("{addr}: {}", c.detail);
            }
            checks.push(c);
        }
    }
    checks.push(tls(cfg));
    checks.extend(acl);
    checks
}

/// A master (`host`, `port`) and the slot ranges it serves.
type Master = ((String, u16), Vec<(u16, u16)>);

/// Every master with its slot ranges, in slot order.
fn masters(ranges: &[SlotRange]) -> Vec<Master> {
    let mut out: Vec<Master> = Vec::new();
    for r in ranges {
        match out.iter_mut().find(|(m, _)| *m == r.master) {
            Some((_, slots)) => slots.push((r.start, r.end)),
            None => out.push((r.master.clone(), vec![(r.start, r.end)])),
        }
    }
    out
}

/// `cluster_state`, slot coverage, masters and replicas.
async fn overview(router: &Router, ranges: &[SlotRange]) -> Check {
    let covered: u32 = ranges.iter().map(|r| u32::from(r.end - r.start) + 1).sum();
    let masters = masters(ranges);
    let (state, nodes) = match masters.first() {
        Some(((host, port), _)) => cluster_info(&router.node_config(host, *port)).await,
        None => (None, String::new()),
    };
    // CLUSTER SLOTS leaves out replicas that have not replicated anything
    // yet; CLUSTER NODES lists them all.
    let replicas: Vec<usize> = masters
        .iter()
        .map(|((host, port), _)| replicas_of(&nodes, host, *port))
        .collect();
    let summary = format!(
        "{} masters, {covered} of {SLOTS} slots served, replicas per master {:?}, cluster_state:{}",
        masters.len(),
        replicas,
        state.as_deref().unwrap_or("unknown")
    );
    if state.as_deref() != Some("ok") || covered != u32::from(SLOTS) {
        return Check::new(
            "cluster",
            Status::Fail,
            format!(
                "{summary}: slots without a master cannot be written; fix the cluster (redis-cli --cluster check)"
            ),
        );
    }
    if replicas.contains(&0) {
        return Check::new(
            "cluster",
            Status::Warn,
            format!("{summary}: a master without a replica loses its slots' data when it fails"),
        );
    }
    Check::new("cluster", Status::Ok, summary)
}

/// `cluster_state` and the text of `CLUSTER NODES` as one node reports
/// them.
async fn cluster_info(node: &RedisConfig) -> (Option<String>, String) {
    let Ok(client) = RedisClient::new(node.clone()) else {
        return (None, String::new());
    };
    let Ok(mut conn) = client.dedicated(Some(node.response_timeout)).await else {
        return (None, String::new());
    };
    let info: String = switchyard_redis::redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let nodes: String = switchyard_redis::redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let state = info
        .lines()
        .find_map(|l| l.strip_prefix("cluster_state:"))
        .map(|s| s.trim().to_owned());
    (state, nodes)
}

/// How many healthy replicas `CLUSTER NODES` (`<id> <ip:port@bus> <flags>
/// <master id> ...`) lists for the master at `host:port`.
fn replicas_of(nodes: &str, host: &str, port: u16) -> usize {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let addr = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    let Some(id) = lines.iter().find_map(|f| {
        let at = f.get(1)?.split(['@', ',']).next()?;
        (at == addr).then(|| f.first().copied()).flatten()
    }) else {
        return 0;
    };
    lines
        .iter()
        .filter(|f| {
            f.get(3) == Some(&id)
                && f.get(2)
                    .is_some_and(|flags| flags.split(',').all(|x| x != "fail" && x != "fail?"))
        })
        .count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replicas_are_counted_from_cluster_nodes() {
        let nodes = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-100\n\
                     b 127.0.0.1:7001@17001 slave a 0 0 1 connected\n\
                     c 127.0.0.1:7002@17002 slave,fail a 0 0 1 connected\n";
        assert_eq!(super::replicas_of(nodes, "127.0.0.1", 7000), 1);
        assert_eq!(super::replicas_of(nodes, "127.0.0.1", 7001), 0);
        assert_eq!(super::replicas_of(nodes, "10.0.0.1", 7000), 0);
    }
}
