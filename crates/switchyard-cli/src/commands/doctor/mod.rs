//! `switchyard doctor`: checks the backend `--url` points at and prints a
//! checklist. Exit 1 when a check fails (the adapter cannot work there);
//! warnings (data-loss risks, like an evicting `maxmemory-policy`) keep
//! exit 0 unless `--strict`. The last line suggests the least-privilege
//! `ACL SETUSER` line for the URL's namespace and adapter
//! (docs/security.md).

use std::fmt::Write as _;

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::json;
use switchyard::redact_url;

use super::support::Backend;
use crate::GlobalOpts;
use crate::output::out;

#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
mod acl;
#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
mod cluster_checks;
#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
mod permissions;
#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
mod redis_checks;

/// Options of `switchyard doctor`.
#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
    /// Exit 1 on warnings too (for CI gates and deploy checks)
    #[arg(long)]
    strict: bool,

    /// Print one JSON object: url, usable, warnings, checks [{check, status,
    /// detail}]
    #[arg(long)]
    json: bool,

    /// A topic pattern the service subscribes to on the Pub/Sub backplane
    /// (repeatable): doctor checks `PSUBSCRIBE` of it and adds the channel
    /// rule it needs to the suggested ACL line (Redis matches pattern
    /// subscriptions literally against channel rules)
    #[arg(long = "pattern", value_name = "PATTERN")]
    patterns: Vec<String>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Fine.
    Ok,
    /// Works, with a risk worth fixing.
    Warn,
    /// Blocks use of the adapter.
    Fail,
    /// Not checked (an earlier check failed, or it does not apply).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One line of the checklist.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) status: Status,
    pub(crate) detail: String,
}

impl Check {
    pub(crate) fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
        }
    }
}

pub(crate) async fn run(args: DoctorArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let url = global.url.trim();
    let shown = redact_url(url);
    let checks = match Backend::of(url) {
        Backend::Memory => vec![Check::new(
            "backend",
            Status::Ok,
            "memory:// is in-process: nothing to check (point --url at redis+streams:// or redis+pubsub:// to check a server)",
        )],
        Backend::Streams | Backend::PubSub => redis(url, Backend::of(url), &args.patterns).await?,
        Backend::Other => {
            // Let connect explain the URL (unknown scheme, feature not built).
            let t = super::support::connect(global).await?;
            let _ = super::support::close(&t).await;
            vec![Check::new(
                "backend",
                Status::Ok,
                format!(
                    "the {} adapter opened; doctor has no further checks for it",
                    t.name()
                ),
            )]
        }
    };
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name)
        .collect();
    let warned: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .map(|c| c.name)
        .collect();
    let text = if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| json!({ "check": c.name, "status": c.status.label().to_ascii_lowercase(), "detail": c.detail }))
            .collect();
        format!(
            "{}\n",
            json!({
                "url": shown,
                "usable": failed.is_empty(),
                "warnings": warned.len(),
                "checks": list,
            })
        )
    } else {
        let mut s = format!("switchyard doctor: {shown}\n");
        for c in &checks {
            let _ = writeln!(s, "  {:<5} {:<12} {}", c.status.label(), c.name, c.detail);
        }
        let verdict = match (failed.len(), warned.len()) {
            (0, 0) => "usable".to_owned(),
            (0, w) => format!("usable, {w} warning(s)"),
            (f, w) => format!("NOT usable: {f} failed check(s), {w} warning(s)"),
        };
        let _ = writeln!(s, "result: {verdict}");
        s
    };
    out(&text).context("could not write to stdout")?;
    if !failed.is_empty() {
        return Err(anyhow!(
            "{shown} is not usable: failed check(s) {}; see the checklist above",
            failed.join(", ")
        ));
    }
    if args.strict && !warned.is_empty() {
        return Err(anyhow!(
            "--strict: warning(s) on {}; see the checklist above",
            warned.join(", ")
        ));
    }
    Ok(())
}

#[cfg(any(feature = "redis-streams", feature = "redis-pubsub"))]
async fn redis(url: &str, backend: Backend, patterns: &[String]) -> anyhow::Result<Vec<Check>> {
    redis_checks::run(url, backend == Backend::Streams, patterns).await
}

#[cfg(not(any(feature = "redis-streams", feature = "redis-pubsub")))]
async fn redis(_url: &str, _backend: Backend, _patterns: &[String]) -> anyhow::Result<Vec<Check>> {
    anyhow::bail!(
        "this build has no Redis support: rebuild switchyard-cli with the `redis-streams` or `redis-pubsub` feature"
    )
}
