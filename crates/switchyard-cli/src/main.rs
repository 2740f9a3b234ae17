//! `switchyard`: the command-line tool of switchyard.
//!
//! Exit codes: 0 on success, 1 when the command failed at run time, 2 on bad
//! usage. Every error is one line on stderr starting with `error: `; URLs in
//! errors never show a password.

mod commands;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser};

/// Layered message transports: Redis Streams, a Redis Pub/Sub backplane or
/// in-process memory behind one API.
#[derive(Parser, Debug)]
#[command(name = "switchyard", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: commands::Command,
}

/// Options every subcommand accepts.
#[derive(Args, Debug, Clone)]
pub(crate) struct GlobalOpts {
    /// Transport URL: memory://, redis+streams://host:6379, redis+pubsub://host:6379, ...
    #[arg(
        long,
        global = true,
        env = switchyard::URL_ENV,
        hide_env_values = true,
        default_value = switchyard::DEFAULT_URL,
        value_name = "URL"
    )]
    pub(crate) url: String,

    /// Log to stderr (-v debug, -vv trace); RUST_LOG works too
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub(crate) verbose: u8,
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error_line(&format!("could not start the tokio runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::run(cli.command, &cli.global));
    // Do not wait for background tasks of the transport beyond a moment.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error_line(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// Parses the command line. An empty `SWITCHYARD_URL` counts as unset (like
/// `switchyard::connect_from_env`); an empty `--url ""` stays an error.
fn parse() -> Result<Cli, clap::Error> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches()?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if matches.value_source("url") == Some(ValueSource::EnvVariable)
        && cli.global.url.trim().is_empty()
    {
        switchyard::DEFAULT_URL.clone_into(&mut cli.global.url);
    }
    Ok(cli)
}

/// Help and version go to stdout with exit code 0; usage errors become one
/// line on stderr with clap's exit code (2).
fn usage_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        // --help, --version
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let rendered = e.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    let mut in_usage = false;
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            in_usage = false;
            continue;
        }
        if line.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if in_usage || line.starts_with("For more information") {
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line));
    }
    parts.push("see 'switchyard --help'");
    output::error_line(&parts.join("; "));
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// `-v` turns on debug logs of switchyard, `-vv` trace; `RUST_LOG` overrides.
/// Without either nothing is logged, so stderr carries only the error line.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var("RUST_LOG").is_ok_and(|v| !v.trim().is_empty());
    let filter = if from_env {
        EnvFilter::from_default_env()
    } else {
        match verbose {
            0 => return,
            1 => EnvFilter::new(
                "info,switchyard=debug,switchyard_core=debug,switchyard_memory=debug",
            ),
            _ => EnvFilter::new(
                "debug,switchyard=trace,switchyard_core=trace,switchyard_memory=trace",
            ),
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A panic (a bug) is reported as one line, not a backtrace.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        output::error_line(&format!(
            "internal error (a bug in switchyard, please report it): {what}{at}"
        ));
    }));
}
