//! A Redis Cluster on free loopback ports: [`ClusterGroup`]; its options
//! ([`ClusterOptions`]) and the `CLUSTER NODES` parser ([`ClusterNode`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod nodes;
mod options;

pub use nodes::ClusterNode;
pub use options::ClusterOptions;

use crate::error::TestkitError;
use crate::options::{RedisOptions, ServerKind};
use crate::process::{free_port, info_field, poll_until};
use crate::resp::RespValue;
use crate::server::RedisServer;
use crate::tls::{CertKeyPaths, TestPki, TlsOptions};
use nodes::parse_nodes;

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// A Redis Cluster (or Valkey in cluster mode) on free loopback ports:
/// [`ClusterOptions::masters`] masters owning equal shares of the slots,
/// each with [`ClusterOptions::replicas_per_master`] replicas.
///
/// [`start`](Self::start) launches every node with `cluster-enabled yes`
/// and a cluster bus on a second free port (`cluster-port`), introduces
/// them (`CLUSTER MEET`), assigns the slots (`CLUSTER ADDSLOTSRANGE`),
/// attaches the replicas (`CLUSTER REPLICATE`), and returns once every node
/// reports `cluster_state:ok`, knows every other node with its final role,
/// and every replica is in sync. [`failover`](Self::failover) (`CLUSTER
/// FAILOVER` on a replica), [`kill_master_of`](Self::kill_master_of)
/// (SIGKILL) and [`migrate_slot`](Self::migrate_slot) move slots around.
/// Drop kills every node.
#[derive(Debug)]
pub struct ClusterGroup {
    kind: ServerKind,
    nodes: Vec<RedisServer>,
    node_timeout: Duration,
    // Declared after the nodes: its directory is removed once they are gone.
    pki: Option<TestPki>,
}

/// The files a TLS client of a [`ClusterGroup`] needs
/// ([`ClusterGroup::tls_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// The CA every node certificate is signed by (`tls_ca=`).
    pub ca_cert: std::path::PathBuf,
    /// A client certificate and key signed by it (`tls_cert=`, `tls_key=`).
    pub client: CertKeyPaths,
    /// An unrelated CA: a client trusting only it must refuse every node.
    pub other_ca_cert: std::path::PathBuf,
}

impl ClusterGroup {
    /// Starts the cluster and waits until it is ready (see the type's docs).
    ///
    /// Fails with [`TestkitError::InvalidSetting`] for an option out of its
    /// range, and with [`TestkitError::Timeout`] (naming what was not ready)
    /// after [`ClusterOptions::startup_timeout`].
    pub fn start(opts: ClusterOptions) -> Result<ClusterGroup, TestkitError> {
        opts.validate()?;
        let kind = match opts.kind {
            Some(kind) => kind,
            None => ServerKind::from_env()?,
        };
        let count = opts.masters * (1 + opts.replicas_per_master);
        // One CA for every node, so that they trust each other on the bus
        // and a client trusting it reaches each of them.
        let pki = if opts.tls {
            Some(TestPki::generate()?)
        } else {
            None
        };
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(start_node(&opts, kind, pki.as_ref())?);
        }
        let group = ClusterGroup {
            kind,
            nodes,
            node_timeout: opts.node_timeout,
            pki,
        };
        let ready_by = Instant::now() + opts.startup_timeout;
        let left = || ready_by.saturating_duration_since(Instant::now());

        let ids = group
            .nodes
            .iter()
            .map(|n| reply_string(&n.cmd(&["CLUSTER", "MYID"])?))
            .collect::<Result<Vec<_>, _>>()?;
        // Slots first, so each master announces its share as it meets the
        // others.
        for index in 0..opts.masters {
            let (first, last) = share(index, opts.masters);
            ok(group.nodes[index].cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])?)?;
        }
        let first = &group.nodes[0];
        for node in &group.nodes[1..] {
            let bus = bus_port(node)?;
            ok(first.cmd(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &node.port().to_string(),
                &bus.to_string(),
            ])?)?;
        }
        poll_until(left(), "every node knowing every other node", || {
            for node in &group.nodes {
                let info = cluster_info(node)?;
                if info_field(&info, "cluster_known_nodes") != Some(&count.to_string()) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
        for index in opts.masters..count {
            let master = &ids[(index - opts.masters) % opts.masters];
            let node = &group.nodes[index];
            // A node learns the master's id through the bus; REPLICATE
            // fails until then.
            poll_until(
                left(),
                "a replica accepting CLUSTER REPLICATE",
                || match node.cmd(&["CLUSTER", "REPLICATE", master]) {
                    Ok(r) if r.is_ok() => Ok(Some(())),
                    Ok(r) => Err(TestkitError::Reply(format!("{r:?}"))),
                    Err(e) => Err(e),
                },
            )?;
        }
        group.wait_healthy(left())?;
        tracing::debug!(
            masters = opts.masters,
            replicas_per_master = opts.replicas_per_master,
            nodes = ?group.nodes.iter().map(RedisServer::addr).collect::<Vec<_>>(),
            "cluster ready"
        );
        Ok(group)
    }

    /// With [`ClusterOptions::tls`], the files a client needs (`None`
    /// without TLS).
    pub fn tls_files(&self) -> Option<ClusterTlsFiles> {
        self.pki.as_ref().map(|pki| ClusterTlsFiles {
            ca_cert: pki.ca_cert().to_path_buf(),
            client: pki.client().clone(),
            other_ca_cert: pki.other_ca_cert().to_path_buf(),
        })
    }

    /// The server kind of every node.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Every node, in start order: the first [`ClusterOptions::masters`]
    /// started as masters, then the replicas (roles change with failovers:
    /// ask [`topology`](Self::topology)).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `index`, mutably (to stop, kill or restart it).
    pub fn node_mut(&mut self, index: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(index)
    }

    /// The address of every node: seeds for a cluster client.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// `host:port` of every node joined with `,` (the host list of a
    /// cluster URL).
    pub fn host_list(&self) -> String {
        self.addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The cluster as a running node sees it (`CLUSTER NODES`).
    pub fn topology(&self) -> Result<Vec<ClusterNode>, TestkitError> {
        let mut last = TestkitError::NotRunning;
        for node in &self.nodes {
            match node.cmd(&["CLUSTER", "NODES"]) {
                Ok(reply) => return parse_nodes(&reply_string(&reply)?, Some(node.addr())),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, hash tags included).
    pub fn slot_of(&self, key: &str) -> Result<u16, TestkitError> {
        let mut last = TestkitError::NotRunning;
        for node in &self.nodes {
            match node.cmd(&["CLUSTER", "KEYSLOT", key]) {
                Ok(reply) => {
                    return reply
                        .as_int()
                        .and_then(|s| u16::try_from(s).ok())
                        .ok_or_else(|| {
                            TestkitError::Protocol(format!("KEYSLOT replied {reply:?}"))
                        });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The master serving `slot` now.
    pub fn master_of(&self, slot: u16) -> Result<ClusterNode, TestkitError> {
        self.topology()?
            .into_iter()
            .find(|n| {
                n.master && !n.failing && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .ok_or_else(|| TestkitError::Protocol(format!("no healthy master serves slot {slot}")))
    }

    /// The index in [`nodes`](Self::nodes) of the node at `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr() == addr)
    }

    /// A manual failover of the master serving `slot`: `CLUSTER FAILOVER`
    /// on one of its replicas, which then becomes the master (the old
    /// master its replica) without losing writes. Waits until every node
    /// agrees and the cluster is healthy; returns the new master's address.
    pub fn failover(&self, slot: u16, timeout: Duration) -> Result<SocketAddr, TestkitError> {
        let master = self.master_of(slot)?;
        let replica = self
            .topology()?
            .into_iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()) && !n.failing)
            .ok_or_else(|| {
                TestkitError::Protocol(format!("master {} has no replica", master.addr))
            })?;
        let index = self
            .index_of(replica.addr)
            .ok_or_else(|| TestkitError::Protocol(format!("{} is no node here", replica.addr)))?;
        ok(self.nodes[index].cmd(&["CLUSTER", "FAILOVER"])?)?;
        self.wait_master(slot, replica.addr, timeout)?;
        self.wait_healthy(timeout)?;
        Ok(replica.addr)
    }

    /// Kills (SIGKILL) the master serving `slot` and returns its address;
    /// its replica takes over after [`ClusterOptions::node_timeout`]
    /// (follow with [`wait_master_other_than`](Self::wait_master_other_than)).
    pub fn kill_master_of(&mut self, slot: u16) -> Result<SocketAddr, TestkitError> {
        let master = self.master_of(slot)?;
        let index = self
            .index_of(master.addr)
            .ok_or_else(|| TestkitError::Protocol(format!("{} is no node here", master.addr)))?;
        self.nodes[index].kill();
        tracing::debug!(addr = %master.addr, slot, "cluster master killed");
        Ok(master.addr)
    }

    /// Polls until a master other than `old` serves `slot`, as every
    /// running node sees it, and `cluster_state:ok` holds on every running
    /// node; returns the new master's address.
    pub fn wait_master_other_than(
        &self,
        slot: u16,
        old: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, TestkitError> {
        let what = format!("a master other than {old} serving slot {slot}");
        let addr = poll_until(timeout, &what, || {
            let m = self.master_of(slot)?;
            Ok((m.addr != old).then_some(m.addr))
        })?;
        self.wait_master(slot, addr, timeout)?;
        self.wait_ok(timeout)?;
        Ok(addr)
    }

    /// Moves `slot` and its keys to the master at `to` (`CLUSTER SETSLOT
    /// IMPORTING`/`MIGRATING`, `MIGRATE` of every key in batches, `SETSLOT
    /// NODE` on both and then on every master). Returns how many keys moved.
    pub fn migrate_slot(&self, slot: u16, to: SocketAddr) -> Result<usize, TestkitError> {
        let topo = self.topology()?;
        let from = self.master_of(slot)?;
        let target = topo
            .iter()
            .find(|n| n.addr == to && n.master)
            .ok_or_else(|| TestkitError::Protocol(format!("{to} is not a master")))?;
        if from.id == target.id {
            return Ok(0);
        }
        let src = self.node(from.addr)?;
        let dst = self.node(to)?;
        let s = slot.to_string();
        ok(dst.cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id])?)?;
        ok(src.cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &target.id])?)?;
        let mut moved = 0;
        let port = to.port().to_string();
        loop {
            let keys = src.cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "100"])?;
            let keys: Vec<String> = keys
                .as_array()
                .unwrap_or_default()
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000"];
            if let Some(pw) = src.options().password.as_deref() {
                args.extend(["AUTH", pw]);
            }
            args.push("KEYS");
            args.extend(keys.iter().map(String::as_str));
            ok(src.cmd(&args)?)?;
            moved += keys.len();
        }
        ok(dst.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &target.id])?)?;
        ok(src.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &target.id])?)?;
        for node in topo.iter().filter(|n| n.master && !n.failing) {
            if let Ok(server) = self.node(node.addr) {
                let _ = server.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &target.id]);
            }
        }
        let timeout = self.node_timeout.max(Duration::from_secs(10));
        self.wait_master(slot, to, timeout)?;
        Ok(moved)
    }

    /// Polls until every running node reports `cluster_state:ok`.
    pub fn wait_ok(&self, timeout: Duration) -> Result<(), TestkitError> {
        poll_until(timeout, "cluster_state:ok on every running node", || {
            for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
                if info_field(&cluster_info(node)?, "cluster_state") != Some("ok") {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
    }

    /// `cluster_state:ok` everywhere, every node knowing every node with
    /// the same roles, every replica in sync.
    fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        self.wait_ok(timeout)?;
        poll_until(
            timeout,
            "every node agreeing on the roles, replicas in sync",
            || {
                let mut seen: Option<Vec<(String, bool, Option<String>)>> = None;
                for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
                    let mut roles: Vec<_> = parse_nodes(
                        &reply_string(&node.cmd(&["CLUSTER", "NODES"])?)?,
                        Some(node.addr()),
                    )?
                    .into_iter()
                    .map(|n| (n.id, n.master, n.master_id))
                    .collect();
                    roles.sort();
                    if seen.as_ref().is_some_and(|s| *s != roles) {
                        return Ok(None);
                    }
                    seen = Some(roles);
                    let info = node.info("replication")?;
                    if info_field(&info, "role") == Some("slave")
                        && info_field(&info, "master_link_status") != Some("up")
                    {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )
    }

    /// Polls until every running node says `addr` serves `slot`.
    fn wait_master(
        &self,
        slot: u16,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), TestkitError> {
        let what = format!("every node naming {addr} for slot {slot}");
        poll_until(timeout, &what, || {
            for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
                let nodes = parse_nodes(
                    &reply_string(&node.cmd(&["CLUSTER", "NODES"])?)?,
                    Some(node.addr()),
                )?;
                let owner = nodes.iter().find(|n| {
                    n.master && !n.failing && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
                });
                if owner.map(|n| n.addr) != Some(addr) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
    }

    fn node(&self, addr: SocketAddr) -> Result<&RedisServer, TestkitError> {
        self.nodes
            .iter()
            .find(|n| n.addr() == addr)
            .ok_or_else(|| TestkitError::Protocol(format!("{addr} is no node of this cluster")))
    }
}

/// Starts one cluster node with its bus on a second free port.
fn start_node(
    opts: &ClusterOptions,
    kind: ServerKind,
    pki: Option<&TestPki>,
) -> Result<RedisServer, TestkitError> {
    let mut last = TestkitError::NotRunning;
    for _ in 0..5 {
        let bus = free_port()?;
        let mut node = RedisOptions::default()
            .kind(kind)
            .startup_timeout(opts.startup_timeout)
            .arg("cluster-enabled", "yes")
            .arg("cluster-port", bus.to_string())
            .arg("cluster-config-file", "nodes.conf")
            .arg(
                "cluster-node-timeout",
                opts.node_timeout.as_millis().to_string(),
            )
            // Replicas sync at once (diskless, no delay).
            .arg("repl-diskless-sync-delay", "0")
            // A replica keeps its master: the test decides the layout.
            .arg("cluster-allow-replica-migration", "no");
        if let Some(password) = &opts.password {
            node = node
                .password(password.clone())
                .arg("masterauth", password.clone());
        }
        if let Some(pki) = pki {
            node = node
                .tls(
                    TlsOptions::default()
                        .tls_only(true)
                        .pki_dir(pki.dir().to_path_buf()),
                )
                .arg("tls-replication", "yes")
                .arg("tls-cluster", "yes");
        }
        match RedisServer::start_with(node) {
            Ok(server) if server.port() != bus => return Ok(server),
            Ok(_) => {
                last = TestkitError::Startup {
                    message: "the bus port equals the client port".into(),
                    log_tail: String::new(),
                }
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The `cluster-port` a node was started with.
fn bus_port(node: &RedisServer) -> Result<u16, TestkitError> {
    node.options()
        .extra_args
        .iter()
        .find(|(name, _)| name == "cluster-port")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| TestkitError::Protocol(format!("{} has no cluster-port", node.addr())))
}

/// Slots of master `index` of `masters`: equal shares, the last takes the
/// remainder.
fn share(index: usize, masters: usize) -> (u16, u16) {
    let per = usize::from(SLOTS) / masters;
    let first = index * per;
    let last = if index + 1 == masters {
        usize::from(SLOTS) - 1
    } else {
        first + per - 1
    };
    (
        u16::try_from(first).unwrap_or(SLOTS - 1),
        u16::try_from(last).unwrap_or(SLOTS - 1),
    )
}

fn cluster_info(node: &RedisServer) -> Result<String, TestkitError> {
    reply_string(&node.cmd(&["CLUSTER", "INFO"])?)
}

fn reply_string(reply: &RespValue) -> Result<String, TestkitError> {
    reply
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TestkitError::Protocol(format!("expected a string reply, got {reply:?}")))
}

fn ok(reply: RespValue) -> Result<(), TestkitError> {
    if reply.is_error() {
        return Err(TestkitError::Reply(format!("{reply:?}")));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_slot_once() {
        for masters in 1..=8 {
            let mut next = 0usize;
            for i in 0..masters {
                let (a, b) = share(i, masters);
                assert_eq!(usize::from(a), next);
                next = usize::from(b) + 1;
            }
            assert_eq!(next, usize::from(SLOTS));
        }
    }
}
