//! `cargo run -p switchyard-fuzz --release -- --iterations N [--target NAME] [--seed S]`
//!
//! Prints the seed, progress (executions, accepted inputs, rate) per target
//! on stderr; exits 1 with the panicking input in hex when a target fails,
//! 2 on bad arguments.
#![allow(clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use switchyard_fuzz::{Options, all_targets, run};

const USAGE: &str = "usage: switchyard-fuzz [--iterations N] [--target NAME] [--seed S] [--list]\n  --iterations N  executions per target, 1 to 10^12 (default 100000)\n  --target NAME   only this target (--list shows them)\n  --seed S        seed of the random generator (default: from the clock; printed)";

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        iterations: 100_000,
        target: None,
        seed: clock_seed(),
        progress_every: Duration::from_secs(5),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--iterations" => {
                let v = value("--iterations")?;
                options.iterations = v
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("--iterations: {v:?} is not a number"))?;
            }
            "--target" => options.target = Some(value("--target")?),
            "--seed" => {
                let v = value("--seed")?;
                options.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: {v:?} is not an unsigned integer"))?;
            }
            "--list" => {
                for t in all_targets() {
                    eprintln!("{:16} {}", t.name, t.about);
                }
                return Ok(None);
            }
            "--help" | "-h" => {
                eprintln!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    options.targets()?;
    Ok(Some(options))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-fuzz: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "switchyard-fuzz: seed {} ({} executions per target; replay with --seed {})",
        options.seed, options.iterations, options.seed
    );
    // Failed checks are reported below with their input; keep the default
    // hook's per-panic backtrace noise out of the progress output.
    std::panic::set_hook(Box::new(|_| {}));
    let result = run(&options, |p| {
        eprintln!(
            "{:16} {:>12} execs {:>12} accepted  corpus {:>3}  {:>9.0}/s  {:>7.1}s",
            p.target,
            p.executions,
            p.accepted,
            p.corpus,
            p.rate(),
            p.elapsed.as_secs_f64()
        );
    });
    match result {
        Ok(done) => {
            let total: u64 = done.iter().map(|p| p.executions).sum();
            eprintln!(
                "switchyard-fuzz: ok, {} target(s), {total} executions, no panic (seed {})",
                done.len(),
                options.seed
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("switchyard-fuzz: FAILED\n{failure}");
            ExitCode::FAILURE
        }
    }
}
