//! `event_bus` on memory and on a real Redis (Streams): a pipelined batch,
//! a producer retry stored twice and dropped by dedup id, a pull consumer,
//! cursors from an id and from the start, command timeouts from the URL,
//! and a closed transport refusing work with `Error::Closed`; refused
//! clearly on the backplane.

mod support;

use anyhow::ensure;
use switchyard_examples::event_bus::{self, Summary};

/// The counts the script produces on any adapter with groups and replay
/// (`foreign`: entries written into the stream beforehand by a foreign
/// `XADD`, which the adapter cannot read).
fn check(summary: &Summary, adapter: &str, foreign: u64) -> anyhow::Result<()> {
    ensure!(summary.adapter == adapter, "adapter {}", summary.adapter);
    ensure!(summary.batch_published == 10, "{summary}");
    ensure!(summary.retries == 1, "{summary}");
    // Neither memory nor Redis Streams drops a republished message when it
    // is published: the retry is a second entry with the same dedup id.
    ensure!(summary.retry_stored_twice, "{summary}");
    // The batch, the corrupt event and the retry copy.
    ensure!(summary.stored == 12 + foreign, "{summary}");
    // The pull consumer gets both copies and processes the event once; the
    // corrupt one is dead-lettered with its decode error; a foreign entry
    // is one Error::Malformed item, skipped.
    ensure!(summary.pulled == 12, "{summary}");
    ensure!(summary.processed == 10, "{summary}");
    ensure!(summary.duplicates_dropped == 1, "{summary}");
    ensure!(summary.corrupt_dead_lettered == 1, "{summary}");
    ensure!(summary.malformed_skipped == foreign, "{summary}");
    // fetch(4, 300ms) over 12 waiting deliveries (and the Malformed items):
    // batches of at most 4, split further when the reader is still fetching
    // ahead, ending with nothing more. (`more` before the last is a
    // snapshot of the buffer.)
    let sizes: Vec<usize> = summary.fetches.iter().map(|(n, _)| *n).collect();
    ensure!(
        sizes.iter().sum::<usize>() as u64 == 12 + foreign
            && sizes.iter().all(|n| (1..=4).contains(n)),
        "{summary}"
    );
    ensure!(
        summary.fetches.last().is_some_and(|(_, more)| !more),
        "{summary}"
    );
    // After event 5: events 6..=10, the corrupt event and the retry copy
    // of 10.
    ensure!(summary.replay_after == 7, "{summary}");
    ensure!(summary.replay_after_distinct == 5, "{summary}");
    ensure!(summary.replay_earliest == 12, "{summary}");
    ensure!(summary.replay_earliest_distinct == 10, "{summary}");
    ensure!(summary.health_open == "Ok", "{summary}");
    ensure!(summary.health_closed.starts_with("Down("), "{summary}");
    ensure!(summary.refused_with_closed, "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() -> anyhow::Result<()> {
    let summary = event_bus::run("memory://").await?;
    check(&summary, "memory", 0)?;
    ensure!(summary.command_timeout.starts_with("n/a"), "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_both_copies_are_in_redis_and_settled() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!("{}?namespace=t-bus", support::url(&server, "redis+streams"));
    let summary = event_bus::run(&url).await?;
    check(&summary, "redis-streams", 0)?;
    ensure!(
        summary.command_timeout == "response_timeout=2s (set by the example)",
        "{summary}"
    );
    let topic = "t-bus:{bus.events}";
    ensure!(support::int(&server, &["XLEN", topic])? == 12);
    ensure!(support::pending(&server, topic, "projector")? == 0);
    // The corrupt event, dead-lettered with its decode error.
    ensure!(support::int(&server, &["XLEN", &format!("{topic}:dlq")])? == 1);
    Ok(())
}

/// An entry the adapter cannot read (a foreign `XADD` without switchyard's
/// fields, already in the stream when the consumers start) reaches the pull
/// consumer as one `Error::Malformed` item; nothing wedges: every count is
/// as without it, and the adapter dead-letters it beside the corrupt event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_entry_does_not_wedge_the_consumer() -> anyhow::Result<()> {
    let server = support::redis()?;
    let topic = "t-foreign:{bus.events}";
    server.cmd(&["XADD", topic, "*", "legacy", "payload"])?;
    ensure!(support::int(&server, &["XLEN", topic])? == 1);
    let url = format!(
        "{}?namespace=t-foreign",
        support::url(&server, "redis+streams")
    );
    let summary = event_bus::run(&url).await?;
    check(&summary, "redis-streams", 1)?;
    ensure!(support::int(&server, &["XLEN", topic])? == 13);
    ensure!(support::pending(&server, topic, "projector")? == 0);
    ensure!(support::int(&server, &["XLEN", &format!("{topic}:dlq")])? == 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_timeout_in_the_url_is_used_as_given() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!(
        "{}?response_timeout=750ms",
        support::url(&server, "redis+streams")
    );
    let summary = event_bus::run(&url).await?;
    check(&summary, "redis-streams", 0)?;
    ensure!(
        summary.command_timeout == "response_timeout=750ms (from the URL)",
        "{summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let server = support::redis()?;
    let Err(error) = event_bus::run(&support::url(&server, "redis+pubsub")).await else {
        anyhow::bail!("event_bus ran on the backplane, which has no consumer groups");
    };
    let error = format!("{error:#}");
    ensure!(
        error.contains("needs consumer groups and replay") && error.contains("redis+streams://"),
        "unexpected error: {error}"
    );
    Ok(())
}
