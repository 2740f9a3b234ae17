//! `switchyard pub`: publishes messages on one topic.
//!
//! - one message (the default): prints its id;
//! - `--count N` (N > 1): prints a summary (count, time, msg/s), with a
//!   progress bar on a terminal;
//! - `--data -`: each line of stdin is one message; prints one id per line
//!   as each is accepted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use bytes_payload::payload_of;
use clap::Args;
use switchyard::{Bytes, Headers, Message, MessageId, Topic, Transport, header};
use tokio::io::AsyncBufReadExt as _;

use super::support::{self, Bar};
use crate::GlobalOpts;
use crate::output::out;

/// Options of `switchyard pub`.
#[derive(Args, Debug)]
pub(crate) struct PubArgs {
    /// The topic to publish on
    #[arg(long, short = 't', value_name = "TOPIC", value_parser = support::parse_topic)]
    topic: Topic,

    /// Messages to publish (with `--data -`: at most this many lines)
    #[arg(long, short = 'n', value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    count: Option<u64>,

    /// Payload of this many bytes (printable filler) instead of the default
    /// `message <n>`; at most 16 MiB (`Limits::MAX_PAYLOAD`; the backplane
    /// refuses more than 8 MiB at publish)
    #[arg(long, value_name = "BYTES", conflicts_with = "data",
          value_parser = clap::value_parser!(u64).range(0..=switchyard::Limits::MAX_PAYLOAD as u64))]
    size: Option<u64>,

    /// Payload text; `-` publishes each line of stdin as one message
    #[arg(long, short = 'd', value_name = "TEXT|-")]
    data: Option<String>,

    /// A header `KEY=VALUE` on every message (repeatable; keys starting with
    /// `sy-` are reserved)
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// Publish at most this many messages per second
    #[arg(long, value_name = "MSGS_PER_S", value_parser = parse_rate)]
    rate: Option<f64>,

    /// Publish in batches of this many messages (`publish_batch`)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,

    /// Print JSON: one object per id, or one summary object
    #[arg(long)]
    json: bool,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("the header name is empty in {s:?}"));
    }
    if k.starts_with(header::RESERVED_PREFIX) {
        return Err(format!(
            "header names starting with {:?} are reserved for switchyard: {k:?}",
            header::RESERVED_PREFIX
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 100_000_000.0 => Ok(v),
        _ => Err(format!(
            "expected messages per second above 0 (e.g. 100 or 0.5), got {s:?}"
        )),
    }
}

/// Payload generation.
mod bytes_payload {
    use switchyard::Bytes;

    const FILLER: &[u8] = b"switchyard-";

    /// The payload of message `n` (1-based).
    pub(super) fn payload_of(data: Option<&str>, size: Option<u64>, n: u64) -> Bytes {
        match (data, size) {
            (Some(text), _) => Bytes::copy_from_slice(text.as_bytes()),
            (None, Some(size)) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                Bytes::from(
                    FILLER
                        .iter()
                        .copied()
                        .cycle()
                        .take(size)
                        .collect::<Vec<u8>>(),
                )
            }
            (None, None) => Bytes::from(format!("message {n}")),
        }
    }
}

pub(crate) async fn run(args: PubArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let transport = support::connect(global).await?;
    let result = if args.data.as_deref() == Some("-") {
        from_stdin(&transport, &args).await
    } else {
        counted(&transport, &args).await
    };
    let closed = support::close(&transport).await;
    result?;
    closed
}

fn headers_of(args: &PubArgs) -> Headers {
    args.headers.iter().cloned().collect()
}

/// Sleeps until message `sent` (0-based) may go out at `--rate`.
async fn pace(rate: Option<f64>, started: Instant, sent: u64) {
    if let Some(rate) = rate {
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Publishes `messages` (one `publish` or one `publish_batch`).
async fn send(
    transport: &Arc<dyn Transport>,
    messages: Vec<Message>,
) -> switchyard::Result<Vec<MessageId>> {
    if messages.len() == 1 {
        let mut messages = messages;
        match messages.pop() {
            Some(m) => transport.publish(m).await.map(|id| vec![id]),
            None => Ok(Vec::new()),
        }
    } else {
        transport.publish_batch(messages).await
    }
}

/// `--count N` (or one message).
async fn counted(transport: &Arc<dyn Transport>, args: &PubArgs) -> anyhow::Result<()> {
    let count = args.count.unwrap_or(1);
    let headers = headers_of(args);
    let bar = Bar::new((count > 1).then_some(count), "published");
    let started = Instant::now();
    let mut sent: u64 = 0;
    let (mut first, mut last) = (None, None);
    let stop = super::signal::stop();
    tokio::pin!(stop);
    let mut interrupted = false;
    while sent < count {
        let n = args.batch.min(count - sent);
        let messages: Vec<Message> = (sent + 1..=sent + n)
            .map(|i| {
                Message::new(
                    args.topic.clone(),
                    payload_of(args.data.as_deref(), args.size, i),
                )
                .with_headers(headers.clone())
            })
            .collect();
        let step = async {
            pace(args.rate, started, sent).await;
            send(transport, messages).await
        };
        let ids = tokio::select! {
            biased;
            _ = &mut stop => { interrupted = true; break; }
            r = step => r.map_err(|e| anyhow!(e)).with_context(|| {
                format!("could not publish message {} of {count} to {}", sent + 1, args.topic)
            })?,
        };
        first = first.or(ids.first().copied());
        last = ids.last().copied().or(last);
        sent += n;
        bar.inc(n);
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    if count == 1 && !interrupted {
        let id = last.map(|id| id.to_string()).unwrap_or_default();
        let line = if args.json {
            serde_json::json!({ "topic": args.topic.as_str(), "id": id }).to_string()
        } else {
            id
        };
        out(&format!("{line}\n")).context("could not write to stdout")?;
    } else {
        let text = if args.json {
            serde_json::json!({
                "topic": args.topic.as_str(),
                "count": sent,
                "secs": (secs * 1e6).round() / 1e6,
                "msgs_per_sec": support::rate(sent, secs).round(),
                "first_id": first.map(|i| i.to_string()),
                "last_id": last.map(|i| i.to_string()),
            })
            .to_string()
        } else {
            let ids = match (first, last) {
                (Some(a), Some(b)) => format!(", ids {a} .. {b}"),
                _ => String::new(),
            };
            format!(
                "published {sent} messages to {} in {secs:.3}s ({:.0} msg/s){ids}",
                args.topic,
                support::rate(sent, secs)
            )
        };
        out(&format!("{text}\n")).context("could not write to stdout")?;
    }
    if interrupted {
        return Err(anyhow!(
            "interrupted (Ctrl-C or SIGTERM) after publishing {sent} of {count} messages to {}",
            args.topic
        ));
    }
    Ok(())
}

/// `--data -`: one message per stdin line, one id printed per line.
async fn from_stdin(transport: &Arc<dyn Transport>, args: &PubArgs) -> anyhow::Result<()> {
    let headers = headers_of(args);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let started = Instant::now();
    let mut sent: u64 = 0;
    let stop = super::signal::stop();
    tokio::pin!(stop);
    while sent < limit {
        let line = tokio::select! {
            biased;
            signal = &mut stop => return Err(anyhow!(
                "interrupted ({signal}) after publishing {sent} lines to {}", args.topic
            )),
            l = lines.next_line() => l.context("could not read stdin")?,
        };
        let Some(line) = line else { break };
        let message =
            Message::new(args.topic.clone(), Bytes::from(line)).with_headers(headers.clone());
        pace(args.rate, started, sent).await;
        let id = transport
            .publish(message)
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| {
                format!(
                    "could not publish line {} of stdin to {}",
                    sent + 1,
                    args.topic
                )
            })?;
        sent += 1;
        let text = if args.json {
            serde_json::json!({ "topic": args.topic.as_str(), "id": id.to_string() }).to_string()
        } else {
            id.to_string()
        };
        out(&format!("{text}\n")).context("could not write to stdout")?;
    }
    Ok(())
}
