//! A short fuzz run of every target, part of the normal `cargo test`, so a
//! decoder that panics on a mutated input is caught in CI. The long runs
//! are recorded in `docs/reliability.md`.

use std::time::Duration;

use switchyard_fuzz::{Options, all_targets, execute, run};

/// Executions per target: a few seconds for all of them in a debug build.
const ITERATIONS: u64 = 20_000;

#[test]
fn every_target_survives_a_short_run() {
    // Fixed seed: a failure here replays with
    // `cargo run -p switchyard-fuzz --release -- --iterations 20000 --seed 20261207 --target T`.
    let options = Options {
        iterations: ITERATIONS,
        target: None,
        seed: 20_261_207,
        progress_every: Duration::from_secs(3600),
    };
    let done = match run(&options, |_| {}) {
        Ok(done) => done,
        Err(failure) => panic!("{failure}"),
    };
    assert_eq!(done.len(), all_targets().len());
    for p in &done {
        assert_eq!(p.executions, ITERATIONS, "{}", p.target);
        // Every target accepts its own seeds, so none runs on rejects only.
        assert!(p.accepted >= 1, "{} accepted nothing", p.target);
    }
}

#[test]
fn every_seed_is_accepted() {
    for target in all_targets() {
        for (i, seed) in (target.seeds)().iter().enumerate() {
            assert_eq!(
                execute(target, seed),
                Ok(true),
                "seed {i} of {} is not accepted",
                target.name
            );
        }
    }
}

#[test]
fn a_failing_check_is_reported_with_its_input() {
    // The facade target checks passwords; a target that panics is caught
    // and reported, not propagated.
    let target = switchyard_fuzz::Target {
        name: "always-panics",
        about: "test",
        seeds: || vec![b"seed".to_vec()],
        dict: &[],
        max_len: 16,
        run: |input| panic!("boom on {} bytes", input.len()),
    };
    assert_eq!(execute(&target, b"abc"), Err("boom on 3 bytes".to_owned()));
}

#[test]
fn options_are_validated() {
    let mut o = Options {
        iterations: 0,
        target: None,
        seed: 1,
        progress_every: Duration::from_secs(1),
    };
    assert!(o.targets().is_err());
    o.iterations = 10;
    o.target = Some("nope".into());
    let e = o.targets().err().unwrap_or_default();
    assert!(e.contains("streams-entry"), "{e}");
    o.target = Some("topic".into());
    assert_eq!(o.targets().map(|t| t.len()), Ok(1));
}
