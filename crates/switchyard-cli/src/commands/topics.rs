//! `switchyard topics`: the topics of a persistent backend (Redis Streams)
//! with their length, first and last id, and per consumer group its
//! consumers, pending entries and the age of the oldest pending entry.
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

#[cfg(feature = "redis-streams")]
async fn streams(args: TopicsArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    inspect::run(args, global).await
}

#[cfg(feature = "redis-streams")]
mod inspect {
    use anyhow::{Context as _, anyhow};
    use serde_json::json;
    use switchyard::redis_streams::keys;
    use switchyard::{Pattern, Topic};
    use switchyard_redis::SharedConnection;
    use switchyard_redis::redis::{self, Value};

    use super::TopicsArgs;
    use crate::GlobalOpts;
    use crate::commands::redis_info::{self, now_ms};
    use crate::commands::support::redis_conn;
    use crate::output::out;

    /// A consumer group of one stream.
    struct GroupInfo {
        name: String,
        consumers: i64,
        pending: i64,
        last_delivered: String,
        /// Entries not yet delivered to the group (Redis >= 7), when known.
        lag: Option<i64>,
        /// Age in ms of the oldest pending entry (by its id's timestamp).
        oldest_pending_ms: Option<u64>,
    }

    /// One stream.
    struct TopicInfo {
        topic: Topic,
        length: i64,
        first_id: Option<String>,
        last_id: Option<String>,
        groups: Vec<GroupInfo>,
    }

    pub(super) async fn run(args: TopicsArgs, global: &GlobalOpts) -> anyhow::Result<()> {
        let cfg = redis_conn::config(&global.url)?;
        let pattern = args
            .pattern
            .as_deref()
            .map(Pattern::new)
            .transpose()
            .map_err(|e| anyhow!(e))?;
        // Routed by key on a cluster; SCAN then runs on every master.
        let mut conn = redis_conn::shared(&cfg).await?;
        let ns = cfg.namespace.clone();
        let glob = match &pattern {
            Some(p) => keys::scan_match(&ns, p),
            None => keys::scan_all(&ns),
        };
        let mut found = Vec::new();
        let found_keys = switchyard::redis_streams::admin::stream_keys(&mut conn, &glob)
            .await
            .map_err(|e| anyhow!(e))?;
        for key in found_keys {
            let Some(topic) = keys::topic_of_key(&ns, &key) else {
                continue;
            };
            if pattern.as_ref().is_some_and(|p| !p.matches(topic.as_str())) {
                continue;
            }
            if let Some(info) = topic_info(&mut conn, &key, topic).await? {
                found.push(info);
            }
        }
        found.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
        let text = if args.json {
            let arr: Vec<_> = found.iter().map(to_json).collect();
            format!("{}\n", serde_json::Value::Array(arr))
        } else {
            to_text(&found, &ns)
        };
        out(&text).context("could not write to stdout")
    }

    /// XINFO STREAM, XINFO GROUPS and XPENDING of `key`; `None` when the
    /// stream disappeared meanwhile.
    async fn topic_info(
        conn: &mut SharedConnection,
        key: &str,
        topic: Topic,
    ) -> anyhow::Result<Option<TopicInfo>> {
        let stream: Value = match redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .query_async(conn)
            .await
        {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(None),
            Err(e) => return Err(redis_conn::failed("XINFO STREAM", &e)),
        };
        let stream = redis_info::map(stream);
        let entry_id = |field: &str| -> Option<String> {
            match stream.get(field) {
                Some(Value::Array(parts)) => parts.first().and_then(redis_info::text),
                _ => None,
            }
        };
        let mut info = TopicInfo {
            length: stream.get("length").and_then(redis_info::int).unwrap_or(0),
            first_id: entry_id("first-entry"),
            last_id: entry_id("last-entry"),
            topic,
            groups: Vec::new(),
        };
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(|e| redis_conn::failed("XINFO GROUPS", &e))?;
        let Value::Array(groups) = groups else {
            return Ok(Some(info));
        };
        let now = now_ms(conn).await?;
        for g in groups {
            let g = redis_info::map(g);
            let name = g.get("name").and_then(redis_info::text).unwrap_or_default();
            let pending = g.get("pending").and_then(redis_info::int).unwrap_or(0);
            let oldest_pending_ms = if pending > 0 {
                oldest_pending(conn, key, &name)
                    .await?
                    .map(|ms| now.saturating_sub(ms))
            } else {
                None
            };
            info.groups.push(GroupInfo {
                consumers: g.get("consumers").and_then(redis_info::int).unwrap_or(0),
                pending,
                last_delivered: g
                    .get("last-delivered-id")
                    .and_then(redis_info::text)
                    .unwrap_or_default(),
                lag: g.get("lag").and_then(redis_info::int),
                oldest_pending_ms,
                name,
            });
        }
        Ok(Some(info))
    }

    /// The timestamp (ms) of the oldest pending entry of `group`.
    async fn oldest_pending(
        conn: &mut SharedConnection,
        key: &str,
        group: &str,
    ) -> anyhow::Result<Option<u64>> {
        let summary: Value = redis::cmd("XPENDING")
            .arg(key)
            .arg(group)
            .query_async(conn)
            .await
            .map_err(|e| redis_conn::failed("XPENDING", &e))?;
        let Value::Array(parts) = summary else {
            return Ok(None);
        };
        Ok(parts
            .get(1)
            .and_then(redis_info::text)
            .and_then(|id| id.split('-').next().and_then(|ms| ms.parse().ok())))
    }

    fn to_json(t: &TopicInfo) -> serde_json::Value {
        json!({
            "topic": t.topic.as_str(),
            "length": t.length,
            "first_id": t.first_id,
            "last_id": t.last_id,
            "groups": t.groups.iter().map(|g| json!({
                "group": g.name,
                "consumers": g.consumers,
                "pending": g.pending,
                "last_delivered_id": g.last_delivered,
                "lag": g.lag,
                "oldest_pending_age_ms": g.oldest_pending_ms,
            })).collect::<Vec<_>>(),
        })
    }

    fn to_text(topics: &[TopicInfo], ns: &str) -> String {
        use std::fmt::Write as _;
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
                t.first_id.as_deref().unwrap_or("-"),
                t.last_id.as_deref().unwrap_or("-"),
                t.groups.len()
            );
            for g in &t.groups {
                let lag = g.lag.map(|l| format!(", lag {l}")).unwrap_or_default();
                let oldest = g
                    .oldest_pending_ms
                    .map(|ms| format!(", oldest pending {}", redis_info::human_ms(ms)))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  group {}: {} consumer(s), {} pending{oldest}{lag}, last delivered {}",
                    g.name, g.consumers, g.pending, g.last_delivered
                );
            }
        }
        s
    }
}
