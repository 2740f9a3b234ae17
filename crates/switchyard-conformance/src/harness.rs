//! What an adapter provides to run the suite: a [`Harness`] that makes
//! isolated [`Namespace`]s, and the [`Tuning`] the cases use.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::{Capabilities, Error, RetentionRules, Transport};

/// An adapter under test.
///
/// The runner reads [`capabilities`](Harness::capabilities) once, before
/// running anything, to decide which cases apply; then every case gets a
/// fresh [`Namespace`] from [`namespace`](Harness::namespace).
#[async_trait::async_trait]
pub trait Harness: Send + Sync + 'static {
    /// A short name of the adapter (`memory`, `redis-streams`), shown in
    /// trial names and skip lines.
    fn name(&self) -> &str;

    /// What the adapter claims it can do. Must equal what its transports
    /// report (the `health` case checks that).
    fn capabilities(&self) -> Capabilities;

    /// A fresh namespace for one case, isolated from every other namespace
    /// (a unique key prefix, a new hub, a new server). `case` tells which
    /// case it is for, and whether that case will restart the backend.
    async fn namespace(&self, case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>>;

    /// Timeouts the cases use. Override to shorten the ack timeout, or to
    /// give a slow backend more time.
    fn tuning(&self) -> Tuning {
        Tuning::default()
    }
}

/// Which case a namespace is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaseInfo {
    /// The case name, e.g. `group_exactly_once`.
    pub name: &'static str,
    /// Whether the case calls [`Namespace::restart_backend`]; a harness may
    /// then start a dedicated backend with persistence turned on.
    pub needs_restart: bool,
}

impl CaseInfo {
    pub(crate) fn new(name: &'static str, needs_restart: bool) -> Self {
        CaseInfo {
            name,
            needs_restart,
        }
    }
}

/// An isolated place where transports meet: the same topics, groups and
/// data for every transport connected to it, and nothing shared with other
/// namespaces.
#[async_trait::async_trait]
pub trait Namespace: Send + Sync {
    /// A new, independent transport on this namespace. Every call is like
    /// another process or replica: all of them see the same data.
    async fn connect(&self) -> anyhow::Result<Arc<dyn Transport>>;

    /// Whether [`restart_backend`](Namespace::restart_backend) works here.
    fn can_restart(&self) -> bool {
        false
    }

    /// Whether [`connect_with_retention`](Namespace::connect_with_retention)
    /// works here (the `retention_rules` case is skipped otherwise).
    fn takes_retention_rules(&self) -> bool {
        false
    }

    /// A new transport on this namespace (or on a fresh one like it: the
    /// case uses only this transport) whose per-topic retention follows
    /// `rules`, with no transport-wide cap below what the case publishes
    /// (1000 messages per topic). For adapters that keep history.
    async fn connect_with_retention(
        &self,
        rules: &RetentionRules,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        let _ = rules;
        Err(Error::Unsupported {
            adapter: "conformance harness",
            what: "per-topic retention rules in this namespace".into(),
        }
        .into())
    }

    /// Restarts the backend, keeping its data (for example `redis-server`
    /// with AOF). Transports connected before may fail afterwards; cases
    /// connect new ones.
    async fn restart_backend(&self) -> anyhow::Result<()> {
        Err(Error::Unsupported {
            adapter: "conformance harness",
            what: "restarting the backend of this namespace".into(),
        }
        .into())
    }
}

/// Timeouts the cases use. Start from [`Tuning::default`] and change what
/// the adapter needs:
///
/// ```
/// use std::time::Duration;
/// use switchyard_conformance::Tuning;
/// let tuning = Tuning::default().with_ack_timeout(Duration::from_millis(500));
/// assert_eq!(tuning.ack_timeout, Duration::from_millis(500));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tuning {
    /// The ack timeout of group subscriptions in cases about redelivery
    /// (default 1 s). Cases wait a small multiple of it.
    pub ack_timeout: Duration,
    /// How long to wait for a delivery that is expected, or for the next
    /// one while collecting many (default 10 s).
    pub recv_timeout: Duration,
    /// How long to wait to conclude that nothing more arrives (default
    /// 300 ms).
    pub quiet_period: Duration,
    /// Upper bound on one case; a case still running then fails with
    /// "timed out" (default 120 s).
    pub case_timeout: Duration,
    /// Whether a subscriber's local buffer is the only place a message can
    /// wait, so that with `DropOldest`/`DropNewest` every published message
    /// is either received or counted in `stats().dropped` (default true).
    /// When false, the overflow cases only check `dropped > 0` and
    /// `received + dropped <= published`.
    pub exact_drop_accounting: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            ack_timeout: Duration::from_secs(1),
            recv_timeout: Duration::from_secs(10),
            quiet_period: Duration::from_millis(300),
            case_timeout: Duration::from_secs(120),
            exact_drop_accounting: true,
        }
    }
}

impl Tuning {
    /// Sets [`ack_timeout`](Tuning::ack_timeout).
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets [`recv_timeout`](Tuning::recv_timeout).
    pub fn with_recv_timeout(mut self, timeout: Duration) -> Self {
        self.recv_timeout = timeout;
        self
    }

    /// Sets [`quiet_period`](Tuning::quiet_period).
    pub fn with_quiet_period(mut self, period: Duration) -> Self {
        self.quiet_period = period;
        self
    }

    /// Sets [`case_timeout`](Tuning::case_timeout).
    pub fn with_case_timeout(mut self, timeout: Duration) -> Self {
        self.case_timeout = timeout;
        self
    }

    /// Sets [`exact_drop_accounting`](Tuning::exact_drop_accounting).
    pub fn with_exact_drop_accounting(mut self, exact: bool) -> Self {
        self.exact_drop_accounting = exact;
        self
    }
}
