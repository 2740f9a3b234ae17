//! `switchyard dlq list|replay|purge`: dead letters of a Redis Streams
//! topic.
//!
//! Replay moves each dead letter back onto its topic with one atomic script
//! (XADD to the topic, XDEL from the dead-letter stream): an interrupted
//! replay has moved each entry completely or not at all, so running it
//! again neither loses nor duplicates a message. `--all` replays or purges
//! the letters present when it started; letters dead-lettered meanwhile
//! (say, by a consumer that still fails) stay for the next run.

use anyhow::bail;
use clap::{Args, Subcommand};
use switchyard::{MessageId, Topic};

use super::support::{self, Backend};
use crate::GlobalOpts;

/// Options of `switchyard dlq`.
#[derive(Args, Debug)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    action: Action,
}

/// What to do with the dead letters.
#[derive(Subcommand, Debug)]
enum Action {
    /// List dead letters: id, reason, original id, attempts, payload (of one
    /// topic, or without --topic of every topic of the namespace)
    List(ListArgs),
    /// Move dead letters back onto their topic (atomically, one by one)
    Replay(PickArgs),
    /// Delete dead letters
    Purge(PickArgs),
}

/// Options of `dlq list`.
#[derive(Args, Debug)]
struct ListArgs {
    /// The topic whose dead letters to list (`T` or `T:dlq`); without it,
    /// every topic of the namespace that has dead letters
    #[arg(long, short = 't', value_name = "T", value_parser = support::parse_topic)]
    topic: Option<Topic>,

    /// Show at most this many (per topic without --topic)
    #[arg(long, short = 'n', value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,

    /// Start after this dead-letter id (for paging; needs --topic)
    #[arg(long, value_name = "ID", requires = "topic")]
    after: Option<MessageId>,

    /// One JSON object per line: id, reason, original_id, attempts, headers,
    /// payload (or payload_b64), error (for an undecodable entry)
    #[arg(long)]
    json: bool,
}

/// Options of `dlq replay` and `dlq purge`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
struct PickArgs {
    /// The topic whose dead letters to take (`T` or `T:dlq`)
    #[arg(long, short = 't', value_name = "T", value_parser = support::parse_topic)]
    topic: Topic,

    /// One dead letter, by its id in the dead-letter stream (repeatable)
    #[arg(long, value_name = "ID")]
    id: Vec<MessageId>,

    /// Every dead letter present when the command starts
    #[arg(long)]
    all: bool,

    /// Print a JSON summary
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: DlqArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    match Backend::of(&global.url) {
        Backend::Memory => bail!(
            "memory:// keeps dead letters inside the application's process, out of reach of this command: subscribe to T:dlq in the application, or run `dlq` against redis+streams://HOST:PORT"
        ),
        Backend::PubSub => bail!(
            "redis+pubsub:// has no dead letters (the backplane is at-most-once and keeps nothing): `dlq` works with redis+streams://"
        ),
        Backend::Streams => streams(args, global).await,
        Backend::Other => {
            let t = support::connect(global).await?;
            let _ = support::close(&t).await;
            bail!(
                "the {} adapter's dead letters cannot be inspected from outside: `dlq` works with redis+streams://",
                t.name()
            )
        }
    }
}

#[cfg(not(feature = "redis-streams"))]
async fn streams(_args: DlqArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    bail!(
        "this build has no redis+streams support: rebuild switchyard-cli with the `redis-streams` feature"
    )
}

#[cfg(feature = "redis-streams")]
async fn streams(args: DlqArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let config = switchyard::redis_streams::StreamsConfig::from_url(global.url.trim())
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut dlq = switchyard::redis_streams::admin::DeadLetters::connect(&config)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    match args.action {
        Action::List(a) => ops::list(&mut dlq, &a).await,
        Action::Replay(a) => ops::apply(&mut dlq, &a, ops::Op::Replay).await,
        Action::Purge(a) => ops::apply(&mut dlq, &a, ops::Op::Purge).await,
    }
}

#[cfg(feature = "redis-streams")]
mod ops {
    use std::fmt::Write as _;

    use anyhow::{Context as _, anyhow};
    use serde_json::json;
    use switchyard::redis_streams::admin::{DeadLetter, DeadLetters, Replay};

    use super::{ListArgs, PickArgs};
    use crate::commands::support::{self, Bar};
    use crate::output::out;

    /// Dead letters read per page by `--all`.
    const PAGE: usize = 256;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Op {
        Replay,
        Purge,
    }

    pub(super) async fn list(dlq: &mut DeadLetters, a: &ListArgs) -> anyhow::Result<()> {
        let Some(topic) = &a.topic else {
            return list_every_topic(dlq, a).await;
        };
        let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
        let total = dlq.count(topic).await.map_err(|e| anyhow!(e))?;
        let letters = dlq
            .list(topic, a.after, limit)
            .await
            .map_err(|e| anyhow!(e))?;
        let mut text = String::new();
        for l in &letters {
            if a.json {
                let _ = writeln!(text, "{}", to_json(l));
            } else {
                let _ = writeln!(text, "{}", to_line(l));
            }
        }
        if !a.json {
            let shown = letters.len() as u64;
            match letters.last() {
                None if a.after.is_none() => {
                    let _ = writeln!(text, "no dead letters for {topic}");
                }
                None => {}
                Some(last) if shown < total && shown == a.limit => {
                    let _ = writeln!(
                        text,
                        "showing {shown} of {total} dead letters; next page: --after {}",
                        last.id
                    );
                }
                Some(_) => {
                    let _ = writeln!(text, "{total} dead letter(s) for {topic}");
                }
            }
        }
        out(&text).context("could not write to stdout")
    }

    /// `dlq list` without `--topic`: the dead letters of every topic of the
    /// namespace, up to `--limit` per topic, each topic under a heading
    /// (with `--json`, each object names its `dead_letter_topic`).
    async fn list_every_topic(dlq: &mut DeadLetters, a: &ListArgs) -> anyhow::Result<()> {
        let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
        let topics = dlq.topics().await.map_err(|e| anyhow!(e))?;
        let mut text = String::new();
        if topics.is_empty() && !a.json {
            text.push_str("no dead letters in this namespace\n");
        }
        for (topic, total) in &topics {
            let letters = dlq.list(topic, None, limit).await.map_err(|e| anyhow!(e))?;
            if !a.json {
                let _ = writeln!(text, "== {topic} ({total} dead letter(s))");
            }
            for l in &letters {
                if a.json {
                    let mut v = to_json(l);
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("dead_letter_topic".into(), topic.as_str().into());
                    }
                    let _ = writeln!(text, "{v}");
                } else {
                    let _ = writeln!(text, "{}", to_line(l));
                }
            }
            if !a.json && (letters.len() as u64) < *total {
                let _ = writeln!(
                    text,
                    "showing {} of {total}; more with --topic {topic} --after ID",
                    letters.len()
                );
            }
        }
        out(&text).context("could not write to stdout")
    }

    fn to_line(l: &DeadLetter) -> String {
        let mut s = format!("{}", l.id);
        if let Some(id) = l.original_id {
            let _ = write!(s, " original={id}");
        }
        if let Some(n) = l.attempts {
            let _ = write!(s, " attempts={n}");
        }
        if let Some(r) = &l.reason {
            let _ = write!(s, " reason={:?}", r);
        }
        match &l.message {
            Ok(m) => {
                for (k, v) in m.headers.iter() {
                    let _ = write!(s, " {k}={}", v.escape_debug());
                }
                let _ = write!(s, " {}", support::payload_for_line(&m.payload));
            }
            Err(e) => {
                let _ = write!(s, " (undecodable: {e})");
            }
        }
        s
    }

    fn to_json(l: &DeadLetter) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("id".into(), l.id.to_string().into());
        obj.insert("reason".into(), json!(l.reason));
        obj.insert(
            "original_id".into(),
            json!(l.original_id.map(|i| i.to_string())),
        );
        obj.insert("attempts".into(), json!(l.attempts));
        match &l.message {
            Ok(m) => {
                let headers: serde_json::Map<String, serde_json::Value> = m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.into()))
                    .collect();
                obj.insert("headers".into(), headers.into());
                support::put_payload(&mut obj, &m.payload);
            }
            Err(e) => {
                obj.insert("error".into(), e.to_string().into());
            }
        }
        serde_json::Value::Object(obj)
    }

    /// What `apply` did.
    #[derive(Default)]
    struct Tally {
        done: u64,
        gone: u64,
        /// Undecodable letters `replay` left in place, by id.
        undecodable: Vec<String>,
    }

    pub(super) async fn apply(dlq: &mut DeadLetters, a: &PickArgs, op: Op) -> anyhow::Result<()> {
        let verb = match op {
            Op::Replay => "replayed",
            Op::Purge => "purged",
        };
        let mut tally = Tally::default();
        let stop = super::super::signal::stop();
        tokio::pin!(stop);
        let work = async {
            if a.all {
                all(dlq, a, op, &mut tally).await
            } else {
                for id in &a.id {
                    one(dlq, a, op, *id, &mut tally).await?;
                }
                Ok(())
            }
        };
        let result = tokio::select! {
            biased;
            signal = &mut stop => Err(anyhow!(
                "interrupted ({signal}): each dead letter was moved completely or not at all; run the command again to finish"
            )),
            r = work => r,
        };
        let summary = if a.json {
            let mut obj = serde_json::Map::new();
            obj.insert("topic".into(), a.topic.as_str().into());
            obj.insert(verb.into(), tally.done.into());
            obj.insert("not_found".into(), tally.gone.into());
            obj.insert("undecodable".into(), json!(tally.undecodable));
            serde_json::Value::Object(obj).to_string()
        } else {
            let mut s = format!("{verb} {} dead letter(s) of {}", tally.done, a.topic);
            if tally.gone > 0 {
                let _ = write!(s, "; {} not found (already replayed or purged)", tally.gone);
            }
            s
        };
        out(&format!("{summary}\n")).context("could not write to stdout")?;
        result?;
        if !tally.undecodable.is_empty() {
            return Err(anyhow!(
                "left {} undecodable dead letter(s) in place ({}): they would fail again; inspect them with `dlq list` and remove them with `dlq purge --id`",
                tally.undecodable.len(),
                tally.undecodable.join(", ")
            ));
        }
        if !a.all && tally.gone > 0 && tally.done == 0 {
            return Err(anyhow!(
                "no dead letter of {} with the given id: list them with `switchyard dlq list --topic {}`",
                a.topic,
                a.topic
            ));
        }
        Ok(())
    }

    async fn one(
        dlq: &mut DeadLetters,
        a: &PickArgs,
        op: Op,
        id: switchyard::MessageId,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        match op {
            Op::Replay => match dlq.replay(&a.topic, id).await.map_err(|e| anyhow!(e))? {
                Replay::Moved { new_id } => {
                    tracing::debug!(%id, %new_id, "replayed");
                    tally.done += 1;
                }
                Replay::Gone => tally.gone += 1,
                Replay::Malformed(_) => tally.undecodable.push(id.to_string()),
                _ => tally.gone += 1,
            },
            Op::Purge => {
                if dlq.purge(&a.topic, id).await.map_err(|e| anyhow!(e))? {
                    tally.done += 1;
                } else {
                    tally.gone += 1;
                }
            }
        }
        Ok(())
    }

    /// Every letter up to the newest present at the start.
    async fn all(
        dlq: &mut DeadLetters,
        a: &PickArgs,
        op: Op,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let Some(last) = dlq.last_id(&a.topic).await.map_err(|e| anyhow!(e))? else {
            return Ok(());
        };
        if op == Op::Purge {
            tally.done = dlq
                .purge_through(&a.topic, last)
                .await
                .map_err(|e| anyhow!(e))?;
            return Ok(());
        }
        let total = dlq.count(&a.topic).await.map_err(|e| anyhow!(e))?;
        let bar = Bar::new(Some(total), "replayed");
        let mut after = None;
        'pages: loop {
            let page = dlq
                .list(&a.topic, after, PAGE)
                .await
                .map_err(|e| anyhow!(e))?;
            if page.is_empty() {
                break;
            }
            for l in page {
                if l.id > last {
                    break 'pages;
                }
                after = Some(l.id);
                one(dlq, a, op, l.id, tally).await?;
                bar.inc(1);
            }
        }
        bar.finish();
        Ok(())
    }
}
