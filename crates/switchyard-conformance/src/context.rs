//! The context a case runs in.

use std::sync::Arc;

use anyhow::Context as _;
use switchyard_core::{Capabilities, Topic, Transport};

use crate::cases::Case;
use crate::harness::{CaseInfo, Harness, Namespace, Tuning};

/// Everything a case needs: the harness, a fresh namespace, the tuning and
/// a token that makes topic names unique to this run of this case.
///
/// The runner builds one per trial; to call a case yourself (for example
/// from a `#[tokio::test]`), build it with [`Ctx::new`]:
///
/// ```no_run
/// # async fn demo(harness: std::sync::Arc<dyn switchyard_conformance::Harness>) -> anyhow::Result<()> {
/// use switchyard_conformance::{Ctx, cases};
/// let case = cases::find("round_trip_payloads").ok_or_else(|| anyhow::anyhow!("no such case"))?;
/// let ctx = Ctx::new(harness, case).await?;
/// cases::basic::round_trip_payloads(&ctx).await?;
/// # Ok(()) }
/// ```
pub struct Ctx {
    harness: Arc<dyn Harness>,
    namespace: Box<dyn Namespace>,
    info: CaseInfo,
    tuning: Tuning,
    capabilities: Capabilities,
    token: String,
}

impl Ctx {
    /// Creates the namespace for `case` and the context around it.
    pub async fn new(harness: Arc<dyn Harness>, case: &Case) -> anyhow::Result<Ctx> {
        let info = case.info();
        let namespace = harness.namespace(&info).await.with_context(|| {
            format!(
                "harness {:?} could not create a namespace for case {}",
                harness.name(),
                info.name
            )
        })?;
        Ok(Ctx {
            tuning: harness.tuning(),
            capabilities: harness.capabilities(),
            token: format!("{:08x}", rand::random::<u32>()),
            harness,
            namespace,
            info,
        })
    }

    /// Which case this is.
    pub fn case(&self) -> &CaseInfo {
        &self.info
    }

    /// The adapter's name.
    pub fn adapter(&self) -> &str {
        self.harness.name()
    }

    /// What the adapter claims it can do.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The timeouts to use.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// This case's namespace.
    pub fn namespace(&self) -> &dyn Namespace {
        self.namespace.as_ref()
    }

    /// A new transport on this case's namespace.
    pub async fn connect(&self) -> anyhow::Result<Arc<dyn Transport>> {
        self.namespace.connect().await.with_context(|| {
            format!(
                "harness {:?} could not connect a transport",
                self.harness.name()
            )
        })
    }

    /// Another fresh namespace, isolated from this case's one.
    pub async fn other_namespace(&self) -> anyhow::Result<Box<dyn Namespace>> {
        self.harness.namespace(&self.info).await.with_context(|| {
            format!(
                "harness {:?} could not create a second namespace",
                self.harness.name()
            )
        })
    }

    /// A prefix unique to this run of this case: `sy.<case>.<token>`.
    pub fn prefix(&self) -> String {
        format!("sy.{}.{}", self.info.name, self.token)
    }

    /// A topic unique to this run of this case: `sy.<case>.<token>.<suffix>`.
    pub fn topic(&self, suffix: &str) -> anyhow::Result<Topic> {
        let name = format!("{}.{suffix}", self.prefix());
        Topic::new(&name).with_context(|| format!("building the test topic {name:?}"))
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("adapter", &self.harness.name())
            .field("case", &self.info)
            .field("tuning", &self.tuning)
            .field("capabilities", &self.capabilities)
            .field("token", &self.token)
            .finish()
    }
}
