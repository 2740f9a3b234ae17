//! [`ClusterOptions`]: the layout and timing of a testkit cluster.

use std::time::Duration;

use crate::error::TestkitError;
use crate::options::ServerKind;

/// Range of [`ClusterOptions::masters`].
const MASTERS_RANGE: (usize, usize) = (1, 8);
/// Range of [`ClusterOptions::replicas_per_master`].
const REPLICAS_RANGE: (usize, usize) = (0, 2);
/// Range of [`ClusterOptions::node_timeout`].
const NODE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));
/// Range of [`ClusterOptions::startup_timeout`].
const STARTUP_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));

/// Options for [`ClusterGroup::start`](super::ClusterGroup::start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Masters, each owning an equal share of the 16,384 slots (default 3;
    /// range 1 to 8).
    pub masters: usize,
    /// Replicas of each master (default 1; range 0 to 2).
    pub replicas_per_master: usize,
    /// Which server to start; `None` (the default) reads
    /// [`ServerKind::ENV_VAR`].
    pub kind: Option<ServerKind>,
    /// Password of the default user on every node (`requirepass`, and
    /// `masterauth` for replication; default `None`).
    pub password: Option<String>,
    /// TLS only (default `false`): every node listens with TLS only (`port
    /// 0`, `tls-port`), the cluster bus and replication use TLS
    /// (`tls-cluster yes`, `tls-replication yes`), and clients must present
    /// a certificate. All nodes use one [`TestPki`](crate::TestPki)
    /// ([`ClusterGroup::tls_files`](super::ClusterGroup::tls_files)).
    pub tls: bool,
    /// `cluster-node-timeout`: how long a master must be unreachable before
    /// its replica takes over (default 2 s; range 100 ms to 60 s, whole
    /// milliseconds).
    pub node_timeout: Duration,
    /// How long [`ClusterGroup::start`](super::ClusterGroup::start) waits, once the nodes run, for
    /// `cluster_state:ok` on every node with every replica in sync (default
    /// 30 s; range 1 s to 10 min). Each process also gets this long to
    /// answer `PING`.
    pub startup_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            kind: None,
            password: None,
            tls: false,
            node_timeout: Duration::from_secs(2),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl ClusterOptions {
    /// Sets [`masters`](Self::masters).
    #[must_use]
    pub fn masters(mut self, masters: usize) -> Self {
        self.masters = masters;
        self
    }

    /// Sets [`replicas_per_master`](Self::replicas_per_master).
    #[must_use]
    pub fn replicas_per_master(mut self, replicas: usize) -> Self {
        self.replicas_per_master = replicas;
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

    /// Sets [`tls`](Self::tls).
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`node_timeout`](Self::node_timeout).
    #[must_use]
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Sets [`startup_timeout`](Self::startup_timeout).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    pub(super) fn validate(&self) -> Result<(), TestkitError> {
        let in_range = |name: &str, v: usize, (min, max): (usize, usize)| {
            if v < min || v > max {
                Err(TestkitError::InvalidSetting(format!(
                    "ClusterOptions::{name} = {v} is outside {min}..={max}"
                )))
            } else {
                Ok(())
            }
        };
        in_range("masters", self.masters, MASTERS_RANGE)?;
        in_range(
            "replicas_per_master",
            self.replicas_per_master,
            REPLICAS_RANGE,
        )?;
        for (name, v, (min, max)) in [
            ("node_timeout", self.node_timeout, NODE_TIMEOUT_RANGE),
            (
                "startup_timeout",
                self.startup_timeout,
                STARTUP_TIMEOUT_RANGE,
            ),
        ] {
            if v < min || v > max {
                return Err(TestkitError::InvalidSetting(format!(
                    "ClusterOptions::{name} = {v:?} is outside {min:?} ..= {max:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        assert!(ClusterOptions::default().masters(0).validate().is_err());
        assert!(ClusterOptions::default().masters(9).validate().is_err());
        assert!(
            ClusterOptions::default()
                .replicas_per_master(3)
                .validate()
                .is_err()
        );
        assert!(
            ClusterOptions::default()
                .node_timeout(Duration::from_millis(10))
                .validate()
                .is_err()
        );
        assert!(ClusterOptions::default().validate().is_ok());
    }
}
