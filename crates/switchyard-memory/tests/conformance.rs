//! The switchyard conformance suite against the memory adapter.
//!
//! `cargo test -p switchyard-memory --test conformance [-- FILTER]`

use std::sync::Arc;

use switchyard_conformance::anyhow;
use switchyard_conformance::{CaseInfo, Harness, Namespace, async_trait};
use switchyard_core::{Capabilities, Transport};
use switchyard_memory::{MemoryHub, MemoryTransport};

/// Every case gets a fresh hub; every `connect` is another transport on it.
struct Memory;

/// One hub: what a broker is to processes.
struct Hub(MemoryHub);

#[async_trait]
impl Harness for Memory {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        // What the adapter declares; the `health` case checks that every
        // transport reports the same.
        MemoryTransport::new().capabilities()
    }

    async fn namespace(&self, _case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
        Ok(Box::new(Hub(MemoryTransport::new().hub())))
    }
}

#[async_trait]
impl Namespace for Hub {
    async fn connect(&self) -> anyhow::Result<Arc<dyn Transport>> {
        Ok(Arc::new(MemoryTransport::connect_to(&self.0)))
    }

    fn takes_retention_rules(&self) -> bool {
        true
    }

    /// Hub settings are per hub: a fresh hub with these rules.
    async fn connect_with_retention(
        &self,
        rules: &switchyard_core::RetentionRules,
    ) -> anyhow::Result<Arc<dyn Transport>> {
        let mut config = switchyard_memory::MemoryConfig::default();
        config.topic_retention = rules.clone();
        Ok(Arc::new(MemoryTransport::with_config(config)))
    }
}

switchyard_conformance::suite!(Memory);
