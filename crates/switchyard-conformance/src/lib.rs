//! The switchyard adapter contract, as plain `async fn` cases and a runner.
//!
//! Every adapter runs the same suite. An adapter implements [`Harness`] (how
//! to make a fresh, isolated [`Namespace`] and transports in it) and adds a
//! test target with `harness = false`:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//!
//! [dev-dependencies]
//! switchyard-conformance = { workspace = true }
//! ```
//!
//! ```no_run
//! // tests/conformance.rs
//! use std::sync::Arc;
//! use switchyard_conformance::{CaseInfo, Harness, Namespace, async_trait};
//! use switchyard_core::{Capabilities, Transport};
//!
//! struct MyHarness;
//! struct MyNamespace;
//!
//! #[async_trait]
//! impl Harness for MyHarness {
//!     fn name(&self) -> &str { "mine" }
//!     fn capabilities(&self) -> Capabilities { Capabilities::default() }
//!     async fn namespace(&self, _case: &CaseInfo) -> anyhow::Result<Box<dyn Namespace>> {
//!         Ok(Box::new(MyNamespace))
//!     }
//! }
//!
//! #[async_trait]
//! impl Namespace for MyNamespace {
//!     async fn connect(&self) -> anyhow::Result<Arc<dyn Transport>> {
//!         todo!("a new transport on this namespace")
//!     }
//! }
//!
//! switchyard_conformance::suite!(MyHarness);
//! ```
//!
//! `cargo test -p my-adapter --test conformance` then runs one trial per
//! case; `-- group` filters by name. A case whose capability the adapter
//! lacks is reported as `ignored`, and a line `SKIPPED <adapter>/<case>:
//! <reason>` says why — a skipped case never passes silently.
//!
//! The cases themselves are public `async fn(&Ctx) -> CaseResult` in
//! [`mod@cases`]; [`cases()`] lists them with their requirements.

mod context;
mod harness;
mod runner;
mod support;

pub mod cases;

pub use cases::limits::headers_at_bounds;
pub use cases::{Case, Flag, Requirement};
pub use context::Ctx;
pub use harness::{CaseInfo, Harness, Namespace, Tuning};
pub use runner::{run, run_with_args};

pub use anyhow;
pub use async_trait::async_trait;
pub use libtest_mimic;

/// What a case returns: `Ok(())` when the adapter kept the contract, an
/// error with a precise message (expected versus got) otherwise.
pub type CaseResult = anyhow::Result<()>;

/// Every case, in the order the runner registers them. See [`Case`].
pub fn cases() -> &'static [Case] {
    cases::all()
}

/// Expands to the `fn main` of a `harness = false` conformance test target
/// that runs the whole suite against `$harness`:
/// `switchyard_conformance::suite!(MyHarness::new());` is
/// `fn main() -> ExitCode { switchyard_conformance::run(MyHarness::new()) }`.
/// See the [crate documentation](crate) for a complete harness.
#[macro_export]
macro_rules! suite {
    ($harness:expr) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run($harness)
        }
    };
}

/// The examples of `docs/conformance.md`, compiled as doctests.
#[doc = include_str!("../../../docs/conformance.md")]
#[cfg(doctest)]
pub struct ConformanceGuideDoctests;
