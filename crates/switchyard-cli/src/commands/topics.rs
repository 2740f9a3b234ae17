//! `switchyard topics`: the topics of a persistent backend (Redis Streams)
//! with their length, first and last id, and per consumer group its
//! consumers, pending entries and the age of the oldest pending entry, as
//! [`Transport::topics`](switchyard::Transport::topics) reports them.
//!
//! `memory://` and `redis+pubsub://` keep no inspectable topics (messages
//! are not stored): the command says so and exits 1.

use anyhow::bail;
use clap::Args;

use super::support::Backend;
use crate::GlobalOpts;

/// Options of `switchyard topics`.
#[derive(Args, Debug)]
pub(crate) struct TopicsArgs {
    /// Only topics matching this pattern (`orders.*`, `robots.>`); dead-letter
    /// topics (`T:dlq`) are listed too unless a pattern is given
    #[arg(long, short = 'p', value_name = "PATTERN")]
    pattern: Option<String>,

    /// Print a JSON array of topics
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: TopicsArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    match Backend::of(&global.url) {
        Backend::Memory => bail!(
            "memory:// keeps no inspectable topics outside the application's process: run `topics` against redis+streams://HOST:PORT"
        ),
        Backend::PubSub => bail!(
            "redis+pubsub:// keeps no topics to inspect (Pub/Sub stores no messages): use `switchyard doctor` to check the server, or redis+streams:// for durable topics"
        ),
        Backend::Streams => streams(args, global).await,
        Backend::Other => {
            // Let connect explain the URL.
            let t = super::support::connect(global).await?;
            let _ = super::support::close(&t).await;
            bail!(
                "the {} adapter keeps no inspectable topics: `topics` works with redis+streams://",
                t.name()
            )
        }
    }
}

#[cfg(not(feature = "redis-streams"))]
async fn streams(_args: TopicsArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    bail!(
        "this build has no redis+streams support: rebuild switchyard-cli with the `redis-streams` feature"
    )
}

/// Lists through [`Transport::topics`](switchyard::Transport::topics), the
/// library's own catalog.
#[cfg(feature = "redis-streams")]
async fn streams(args: TopicsArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    use anyhow::{Context as _, anyhow};
    use switchyard::{Pattern, TopicFilter};

    let filters = match args.pattern.as_deref() {
        Some(p) => vec![TopicFilter::Pattern(
            Pattern::new(p).map_err(|e| anyhow!(e))?,
        )],
        // Everything: `>` does not match rooted topics (`/scan`), `/>` does.
        None => vec![
            TopicFilter::Pattern(Pattern::new(">").map_err(|e| anyhow!(e))?),
            TopicFilter::Pattern(Pattern::new("/>").map_err(|e| anyhow!(e))?),
        ],
    };
    let transport = super::support::connect(global).await?;
    let mut found = Vec::new();
    let mut failed = None;
    for filter in &filters {
        match transport.topics(filter).await {
            Ok(mut topics) => found.append(&mut topics),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let closed = super::support::close(&transport).await;
    if let Some(e) = failed {
        return Err(anyhow!(e).context("could not list the topics"));
    }
    closed?;
    found.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    let namespace = switchyard::redis_streams::StreamsConfig::from_url(global.url.trim())
        .map(|c| c.redis.namespace)
        .unwrap_or_default();
    let text = if args.json {
        let arr: Vec<_> = found.iter().map(render::to_json).collect();
        format!("{}\n", serde_json::Value::Array(arr))
    } else {
        render::to_text(&found, &namespace)
    };
    crate::output::out(&text).context("could not write to stdout")
}

#[cfg(feature = "redis-streams")]
mod render {
    use std::fmt::Write as _;

    use serde_json::json;
    use switchyard::TopicInfo;

    use crate::commands::redis_info;

    fn id(id: Option<&switchyard::MessageId>) -> Option<String> {
        id.map(ToString::to_string)
    }

    fn age_ms(g: &switchyard::GroupInfo) -> Option<u64> {
        g.oldest_pending_age
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn to_json(t: &TopicInfo) -> serde_json::Value {
        json!({
            "topic": t.topic.as_str(),
            "length": t.length,
            "first_id": id(t.first_id.as_ref()),
            "last_id": id(t.last_id.as_ref()),
            "groups": t.groups.iter().map(|g| json!({
                "group": g.name,
                "consumers": g.consumers,
                "pending": g.pending,
                "last_delivered_id": id(g.last_delivered.as_ref()).unwrap_or_else(|| "0-0".to_owned()),
                "lag": g.lag,
                "oldest_pending_age_ms": age_ms(g),
            })).collect::<Vec<_>>(),
        })
    }

    pub(super) fn to_text(topics: &[TopicInfo], ns: &str) -> String {
        if topics.is_empty() {
            return format!("no topics in namespace {ns:?}\n");
        }
        let width = topics
            .iter()
            .map(|t| t.topic.as_str().len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!(
            "{:<width$}  {:>8}  {:<20}  {:<20}  groups\n",
            "topic", "length", "first id", "last id"
        );
        for t in topics {
            let _ = writeln!(
                s,
                "{:<width$}  {:>8}  {:<20}  {:<20}  {}",
                t.topic.as_str(),
                t.length,
                id(t.first_id.as_ref()).as_deref().unwrap_or("-"),
                id(t.last_id.as_ref()).as_deref().unwrap_or("-"),
                t.groups.len()
            );
            for g in &t.groups {
                let lag = g.lag.map(|l| format!(", lag {l}")).unwrap_or_default();
                let oldest = age_ms(g)
                    .map(|ms| format!(", oldest pending {}", redis_info::human_ms(ms)))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  group {}: {} consumer(s), {} pending{oldest}{lag}, last delivered {}",
                    g.name,
                    g.consumers,
                    g.pending,
                    id(g.last_delivered.as_ref()).as_deref().unwrap_or("0-0")
                );
            }
        }
        s
    }
}
