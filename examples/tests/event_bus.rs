//! `event_bus` on memory and on a real Redis (Streams): a pipelined batch,
//! a producer retry stored twice and dropped by dedup id, a pull consumer,
//! cursors from an id and from the start, command timeouts from the URL,
//! and a closed transport refusing work with `Error::Closed`; refused
//! clearly on the backplane.

mod support;

use anyhow::ensure;
use switchyard_examples::event_bus::{self, Summary};

/// The counts the script produces on any adapter with groups and replay.
fn check(summary: &Summary, adapter: &str) -> anyhow::Result<()> {
    ensure!(summary.adapter == adapter, "adapter {}", summary.adapter);
    ensure!(summary.batch_published == 10, "{summary}");
    ensure!(summary.retries == 1, "{summary}");
    // Neither memory nor Redis Streams drops a republished message when it
    // is published: the retry is a second entry with the same dedup id.
    ensure!(summary.retry_stored_twice, "{summary}");
    ensure!(summary.stored == 11, "{summary}");
    // The pull consumer gets both copies and processes the event once.
    ensure!(summary.pulled == 11, "{summary}");
    ensure!(summary.processed == 10, "{summary}");
    ensure!(summary.duplicates_dropped == 1, "{summary}");
    // fetch(4, 300ms) over 11 waiting deliveries: 4, 4, then 3 after the
    // wait, with nothing more. (`more` of the first two is a snapshot of
    // the buffer: on Redis the group's reader may still be fetching ahead.)
    let sizes: Vec<usize> = summary.fetches.iter().map(|(n, _)| *n).collect();
    ensure!(sizes == [4, 4, 3], "{summary}");
    ensure!(
        summary.fetches.last().is_some_and(|(_, more)| !more),
        "{summary}"
    );
    // After event 5: events 6..=10 and the retry copy of 10.
    ensure!(summary.replay_after == 6, "{summary}");
    ensure!(summary.replay_after_distinct == 5, "{summary}");
    ensure!(summary.replay_earliest == 11, "{summary}");
    ensure!(summary.replay_earliest_distinct == 10, "{summary}");
    ensure!(summary.health_open == "Ok", "{summary}");
    ensure!(summary.health_closed.starts_with("Down("), "{summary}");
    ensure!(summary.refused_with_closed, "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() -> anyhow::Result<()> {
    let summary = event_bus::run("memory://").await?;
    check(&summary, "memory")?;
    ensure!(summary.command_timeout.starts_with("n/a"), "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_both_copies_are_in_redis_and_settled() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!("{}?namespace=t-bus", support::url(&server, "redis+streams"));
    let summary = event_bus::run(&url).await?;
    check(&summary, "redis-streams")?;
    ensure!(
        summary.command_timeout == "response_timeout=2s (set by the example)",
        "{summary}"
    );
    let topic = "t-bus:{bus.events}";
    ensure!(support::int(&server, &["XLEN", topic])? == 11);
    ensure!(support::pending(&server, topic, "projector")? == 0);
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
    check(&summary, "redis-streams")?;
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
