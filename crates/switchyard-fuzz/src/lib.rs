//! A mutation fuzzer on stable Rust (no cargo-fuzz) for switchyard's
//! decoders and parsers: Redis Streams entries, header blocks and ids, XREAD
//! replies, backplane envelopes, RESP tokens and push frames, topics,
//! filters, every adapter's URL parser and the facade's, message and dedup
//! ids.
//!
//! Each target starts from valid inputs made by the real encoders and
//! mutates them (bit flips, interesting bytes, insertions, deletions,
//! duplications, splices, length-field and decimal tweaks, dictionary
//! tokens) with a seeded random generator, so a run is replayed exactly
//! from its seed. Inputs a target accepts join its corpus (bounded) and
//! are mutated further. A panic (a crash, or a failed check such as a
//! round trip or a password showing in an error) stops the run and is
//! reported with the input in hex.
//!
//! ```text
//! cargo run -p switchyard-fuzz --release -- --iterations 10000000 [--target NAME] [--seed S]
//! ```
//!
//! `docs/reliability.md` records the runs made so far.

pub mod mutate;
pub mod targets;

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use targets::{Target, all as all_targets};

/// Largest number of inputs kept per target (seeds included).
pub const MAX_CORPUS: usize = 512;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Executions per target (1 to 10^12).
    pub iterations: u64,
    /// Only this target (see [`all_targets`]); `None` for all of them.
    pub target: Option<String>,
    /// The seed of the random generator; each target derives its own from
    /// it and its name, so `--target` replays the same inputs as a full run.
    pub seed: u64,
    /// How often [`run`] reports progress.
    pub progress_every: Duration,
}

/// Largest `iterations` accepted.
pub const MAX_ITERATIONS: u64 = 1_000_000_000_000;

impl Options {
    /// Checks the settings and resolves the target list.
    pub fn targets(&self) -> Result<Vec<&'static Target>, String> {
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(format!(
                "--iterations must be 1 to {MAX_ITERATIONS}, got {}",
                self.iterations
            ));
        }
        match &self.target {
            None => Ok(all_targets().iter().collect()),
            Some(name) => all_targets()
                .iter()
                .find(|t| t.name == name)
                .map(|t| vec![t])
                .ok_or_else(|| {
                    format!(
                        "unknown target {name:?}: known are {}",
                        all_targets()
                            .iter()
                            .map(|t| t.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }),
        }
    }
}

/// Progress of one target, and its result once finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run so far.
    pub executions: u64,
    /// Inputs the target accepted (decoded or parsed) so far.
    pub accepted: u64,
    /// Inputs kept for further mutation.
    pub corpus: usize,
    /// Time spent on this target.
    pub elapsed: Duration,
}

impl Progress {
    /// Executions per second so far.
    pub fn rate(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An input that made a target panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The target.
    pub target: &'static str,
    /// The seed of the run (replay with `--target T --seed S`).
    pub seed: u64,
    /// Which execution of the target it was (0-based).
    pub execution: u64,
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {} panicked at execution {} (replay: --target {} --seed {}): {}\ninput ({} bytes, hex): {}",
            self.target,
            self.execution,
            self.target,
            self.seed,
            self.message,
            self.input.len(),
            hex(&self.input)
        )
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The generator seed of `target` for the run seed `seed`.
pub fn target_seed(seed: u64, target: &str) -> u64 {
    // FNV-1a of the name, mixed into the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    seed ^ h
}

/// Runs one input through `target`, catching a panic.
pub fn execute(target: &Target, input: &[u8]) -> Result<bool, String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// Fuzzes every selected target for `options.iterations` executions each
/// (the seeds first), calling `progress` now and then and once at the end
/// of each target. Stops at the first failure.
pub fn run(
    options: &Options,
    mut progress: impl FnMut(&Progress),
) -> Result<Vec<Progress>, Box<Failure>> {
    let targets = options.targets().map_err(|message| {
        Box::new(Failure {
            target: "options",
            seed: options.seed,
            execution: 0,
            input: Vec::new(),
            message,
        })
    })?;
    let mut done = Vec::with_capacity(targets.len());
    for target in targets {
        done.push(fuzz_target(target, options, &mut progress)?);
    }
    Ok(done)
}

fn fuzz_target(
    target: &'static Target,
    options: &Options,
    progress: &mut impl FnMut(&Progress),
) -> Result<Progress, Box<Failure>> {
    let mut rng = SmallRng::seed_from_u64(target_seed(options.seed, target.name));
    let mut corpus: Vec<Vec<u8>> = (target.seeds)();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    corpus.truncate(MAX_CORPUS);
    let seeds = corpus.len() as u64;
    let started = Instant::now();
    let mut last_report = started;
    let mut state = Progress {
        target: target.name,
        executions: 0,
        accepted: 0,
        corpus: corpus.len(),
        elapsed: Duration::ZERO,
    };
    while state.executions < options.iterations {
        let input = if state.executions < seeds {
            corpus[state.executions as usize].clone()
        } else {
            let a = rng.random_range(0..corpus.len());
            let b = rng.random_range(0..corpus.len());
            mutate::mutate(
                &mut rng,
                &corpus[a],
                &corpus[b],
                target.dict,
                target.max_len,
            )
        };
        let accepted = execute(target, &input).map_err(|message| {
            Box::new(Failure {
                target: target.name,
                seed: options.seed,
                execution: state.executions,
                input: input.clone(),
                message,
            })
        })?;
        if accepted {
            state.accepted += 1;
            if state.executions >= seeds {
                // Keep accepted inputs, replacing a random non-seed one when full.
                if corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                } else if rng.random_bool(0.05) {
                    let at = rng.random_range(seeds as usize..MAX_CORPUS);
                    corpus[at] = input;
                }
            }
        }
        state.executions += 1;
        if state.executions.is_multiple_of(1024) && last_report.elapsed() >= options.progress_every
        {
            last_report = Instant::now();
            state.elapsed = started.elapsed();
            state.corpus = corpus.len();
            progress(&state);
        }
    }
    state.elapsed = started.elapsed();
    state.corpus = corpus.len();
    progress(&state);
    Ok(state)
}
