//! The libtest-mimic runner: one trial per case, each on its own tokio
//! runtime under a time limit; skips are ignored trials with a visible
//! reason.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, FormatSetting, Trial};

use crate::cases::{self, Case};
use crate::context::Ctx;
use crate::harness::Harness;

/// How long the runtime of a finished case may take to stop its tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the whole suite against `harness` with the command-line arguments
/// of the test binary (`cargo test ... -- <filter>` works as usual) and
/// returns the exit code for `main`.
pub fn run<H: Harness>(harness: H) -> ExitCode {
    run_with_args(harness, Arguments::from_args())
}

/// Like [`run`], with arguments given by the caller.
pub fn run_with_args<H: Harness>(harness: H, args: Arguments) -> ExitCode {
    let harness: Arc<dyn Harness> = Arc::new(harness);
    let adapter = harness.name().to_owned();
    let caps = harness.capabilities();
    let announce = !args.list && args.format != Some(FormatSetting::Json);
    let mut skipped = Vec::new();
    let mut trials = Vec::new();
    for case in cases::all() {
        let trial = match case.skip_reason(&caps) {
            Some(reason) => {
                let line = format!("SKIPPED {adapter}/{}: {reason}", case.name());
                // The flag makes it `ignored` in cargo's summary; should it be
                // run anyway (--include-ignored), it reports the reason again.
                let trial = Trial::ignorable_test(case.name(), move || {
                    Ok(Completion::ignored_with(reason))
                })
                .with_kind(adapter.clone())
                .with_ignored_flag(true);
                if !args.is_filtered_out(&trial) {
                    skipped.push(line);
                }
                trial
            }
            None => {
                let harness = harness.clone();
                let announce_runtime_skip = announce;
                Trial::ignorable_test(case.name(), move || {
                    run_trial(harness, case, announce_runtime_skip)
                })
                .with_kind(adapter.clone())
            }
        };
        trials.push(trial);
    }
    if announce && !skipped.is_empty() {
        let mut out = std::io::stdout().lock();
        for line in &skipped {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// What running a case came to, short of failing.
enum Ran {
    Passed,
    Skipped(String),
}

fn run_trial(
    harness: Arc<dyn Harness>,
    case: &'static Case,
    announce: bool,
) -> Result<Completion, Failed> {
    let adapter = harness.name().to_owned();
    let limit = harness.tuning().case_timeout;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(format!("sy-{}", case.name()))
        .build()
        .map_err(|e| Failed::from(format!("could not build a tokio runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        match tokio::time::timeout(limit, run_case(harness, case)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "case {} timed out after {limit:?}",
                case.name()
            )),
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match outcome {
        Ok(Ran::Passed) => Ok(Completion::Completed),
        Ok(Ran::Skipped(reason)) => {
            if announce {
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "SKIPPED {adapter}/{}: {reason}",
                    case.name()
                );
            }
            Ok(Completion::ignored_with(reason))
        }
        Err(e) => Err(Failed::from(format!("{adapter}/{}: {e:#}", case.name()))),
    }
}

async fn run_case(harness: Arc<dyn Harness>, case: &'static Case) -> anyhow::Result<Ran> {
    let ctx = Ctx::new(harness, case).await?;
    if case.needs_restart() && !ctx.namespace().can_restart() {
        return Ok(Ran::Skipped(
            "the harness cannot restart this namespace's backend (Namespace::can_restart() = false)"
                .into(),
        ));
    }
    if case
        .requirements()
        .contains(&crate::cases::Requirement::RetentionRules)
        && !ctx.namespace().takes_retention_rules()
    {
        return Ok(Ran::Skipped(
            "the harness connects no transports with per-topic retention rules (Namespace::takes_retention_rules() = false)"
                .into(),
        ));
    }
    case.run(&ctx).await?;
    Ok(Ran::Passed)
}
