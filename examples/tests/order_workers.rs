//! `order_workers` on memory and on a real Redis (Streams): every order
//! processed exactly once, retries, dead letters and replays counted
//! exactly; refused clearly on the backplane.

mod support;

use anyhow::ensure;
use switchyard_examples::order_workers::{self, Summary};

/// The counts the example's script must produce on any adapter with
/// consumer groups and dead letters.
fn check(summary: &Summary, adapter: &str) -> anyhow::Result<()> {
    ensure!(summary.adapter == adapter, "adapter {}", summary.adapter);
    ensure!(summary.orders == 20, "{summary}");
    // Each order processed exactly once: 13 at once, orders 5, 10, 15, 20
    // after two retries each, orders 7, 13, 14 after the replay.
    ensure!(summary.processed == 20, "{summary}");
    ensure!(summary.first_try == 13, "{summary}");
    ensure!(summary.after_retries == 4, "{summary}");
    ensure!(summary.after_replay == 3, "{summary}");
    // 4 transient orders x 2 retries, and order 13 retried twice before
    // max_attempts (3) dead-lettered it.
    ensure!(summary.retried == 10, "{summary}");
    ensure!(summary.dead_lettered == 3, "{summary}");
    ensure!(summary.dead_lettered_by_max_attempts == 1, "{summary}");
    ensure!(summary.replayed == 3, "{summary}");
    ensure!(summary.duplicates == 0, "{summary}");
    let per_worker: u64 = summary.per_worker.iter().map(|(_, n)| n).sum();
    ensure!(
        per_worker == 20 && summary.per_worker.len() == 3,
        "{summary}"
    );
    ensure!(summary.replay_log.len() == 3, "{summary}");
    for (order, attempts) in [(7, 1), (13, 3), (14, 1)] {
        let prefix = format!("order {order} dead-lettered after {attempts} attempt(s)");
        ensure!(
            summary.replay_log.iter().any(|l| l.starts_with(&prefix)),
            "no {prefix:?} in {summary}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() -> anyhow::Result<()> {
    let summary = order_workers::run("memory://").await?;
    check(&summary, "memory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_everything_is_settled_in_redis() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!(
        "{}?namespace=t-orders",
        support::url(&server, "redis+streams")
    );
    let summary = order_workers::run(&url).await?;
    check(&summary, "redis-streams")?;

    // What Redis holds afterwards: 20 orders and 3 replays on the topic,
    // nothing pending in the workers' group, 3 dead letters, all acked by
    // the operator.
    let topic = "t-orders:{orders.created}";
    let dlq = "t-orders:{orders.created}:dlq";
    ensure!(support::int(&server, &["XLEN", topic])? == 23);
    ensure!(support::pending(&server, topic, "fulfilment")? == 0);
    ensure!(support::int(&server, &["XLEN", dlq])? == 3);
    ensure!(support::pending(&server, dlq, "operators")? == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reruns_on_one_redis_do_not_see_each_other() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = support::url(&server, "redis+streams");
    // Without a namespace in the URL every run gets a fresh one.
    check(&order_workers::run(&url).await?, "redis-streams")?;
    check(&order_workers::run(&url).await?, "redis-streams")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = support::url(&server, "redis+pubsub");
    let Err(error) = order_workers::run(&url).await else {
        anyhow::bail!("order_workers ran on the backplane, which has no consumer groups");
    };
    let error = format!("{error:#}");
    ensure!(
        error.contains("needs consumer groups and dead letters")
            && error.contains("redis-pubsub")
            && error.contains("redis+streams://"),
        "unexpected error: {error}"
    );
    Ok(())
}
