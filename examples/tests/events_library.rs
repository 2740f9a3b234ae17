//! `events_library` on memory and on a real Redis (Streams): groups with
//! named consumers, ack/nack, dead letters with the error and the original
//! event type read through `>:dlq`, trimming, drop counters, breaker stats.

mod support;

use anyhow::ensure;
use switchyard::BreakerState;
use switchyard_examples::events_library::{self, Summary};

fn check(summary: &Summary, adapter: &str) -> anyhow::Result<()> {
    ensure!(summary.adapter == adapter, "adapter {}", summary.adapter);
    let [ledger, dispatch] = summary.groups.as_slice() else {
        anyhow::bail!("two groups expected: {summary}");
    };
    // 8 invoices: 6 acked, invoices 3 and 6 dead-lettered, invoice 4
    // nacked once (Retry::Now) and acked on its redelivery.
    ensure!(
        ledger.group == "ledger" && ledger.published == 8,
        "{summary}"
    );
    ensure!(ledger.received == 9 && ledger.acked == 6, "{summary}");
    ensure!(ledger.nacked == 3 && ledger.redelivered == 1, "{summary}");
    ensure!(ledger.dead_lettered == 2, "{summary}");
    ensure!(ledger.per_consumer.len() == 2, "{summary}");
    ensure!(
        ledger.per_consumer.iter().map(|(_, n)| n).sum::<u64>() == 6,
        "{summary}"
    );
    // 4 parcels: 3 acked, parcel 2 dead-lettered.
    ensure!(dispatch.received == 4 && dispatch.acked == 3, "{summary}");
    ensure!(
        dispatch.nacked == 1 && dispatch.redelivered == 0,
        "{summary}"
    );
    ensure!(dispatch.dead_lettered == 1, "{summary}");
    ensure!(
        dispatch.per_consumer == [("dispatch-1".to_owned(), 3)],
        "{summary}"
    );
    // Every dead letter of the namespace, through `>:dlq`, with its error
    // and original type.
    let letters: Vec<(&str, u64, &str, &str)> = summary
        .dead_letters
        .iter()
        .map(|d| {
            (
                d.topic.as_str(),
                d.seq,
                d.event_type.as_str(),
                d.origin.as_str(),
            )
        })
        .collect();
    ensure!(
        letters
            == [
                (
                    "billing.invoices:dlq",
                    3,
                    "InvoiceIssued",
                    "billing.invoices"
                ),
                (
                    "billing.invoices:dlq",
                    6,
                    "InvoiceIssued",
                    "billing.invoices"
                ),
                (
                    "shipping.parcels:dlq",
                    2,
                    "ParcelShipped",
                    "shipping.parcels"
                ),
            ],
        "{summary}"
    );
    ensure!(
        summary.dead_letters[0].error == "validation error: invoice 3 has a negative amount",
        "{summary}"
    );
    // Backpressure: 40 audit events into buffers of 8.
    let [oldest, newest] = summary.slow.as_slice() else {
        anyhow::bail!("two slow subscribers expected: {summary}");
    };
    ensure!(oldest.policy == "DropOldest", "{summary}");
    ensure!(
        (
            oldest.buffered,
            oldest.capacity,
            oldest.dropped,
            oldest.received,
            oldest.kept
        ) == (8, 8, 32, 8, (33, 40)),
        "{summary}"
    );
    ensure!(newest.policy == "DropNewest", "{summary}");
    ensure!(
        (
            newest.buffered,
            newest.capacity,
            newest.dropped,
            newest.received,
            newest.kept
        ) == (8, 8, 32, 8, (1, 8)),
        "{summary}"
    );
    ensure!(summary.trim_written == 500, "{summary}");
    ensure!(summary.health == "Ok", "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() -> anyhow::Result<()> {
    let summary = events_library::run("memory://").await?;
    check(&summary, "memory")?;
    // A memory hub keeps exactly its retention; no breaker.
    ensure!(summary.trim_retained == 50, "{summary}");
    ensure!(summary.breaker.is_none(), "{summary}");
    ensure!(summary.to_string().contains("breaker:        n/a"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_everything_is_settled_in_redis() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!(
        "{}?namespace=t-events",
        support::url(&server, "redis+streams")
    );
    let summary = events_library::run(&url).await?;
    check(&summary, "redis-streams")?;
    ensure!(
        summary
            .prefix
            .starts_with("namespace=t-events: streams t-events:{billing.invoices}"),
        "{summary}"
    );
    // The breaker saw 13 publish pipelines (12 events one by one, the
    // audit batch) and nothing failed.
    let breaker = summary
        .breaker
        .ok_or_else(|| anyhow::anyhow!("no breaker: {summary}"))?;
    ensure!(breaker.state == BreakerState::Closed, "{summary}");
    ensure!(breaker.consecutive_failures == 0, "{summary}");
    ensure!(breaker.total_requests == 13, "{summary}");
    ensure!(breaker.rejected_requests == 0, "{summary}");
    ensure!(breaker.times_opened == 0, "{summary}");
    ensure!(breaker.last_state_change.is_none(), "{summary}");

    let invoices = "t-events:{billing.invoices}";
    let parcels = "t-events:{shipping.parcels}";
    ensure!(support::int(&server, &["XLEN", invoices])? == 8);
    ensure!(support::int(&server, &["XLEN", parcels])? == 4);
    ensure!(support::pending(&server, invoices, "ledger")? == 0);
    ensure!(support::pending(&server, parcels, "dispatch")? == 0);
    ensure!(support::int(&server, &["XLEN", "t-events:{billing.invoices}:dlq"])? == 2);
    ensure!(support::int(&server, &["XLEN", "t-events:{shipping.parcels}:dlq"])? == 1);
    ensure!(support::int(&server, &["XLEN", "t-events:{audit.trail}"])? == 40);
    // MAXLEN ~ 50 trims whole stream nodes (100 entries by default): the
    // stream keeps 50 to about 150 of the 500 samples.
    let samples = support::int(&server, &["XLEN", "t-events:{metrics.samples}"])?;
    ensure!((50..=150).contains(&samples), "XLEN samples {samples}");
    ensure!(
        summary.trim_retained == u64::try_from(samples)?,
        "{summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let server = support::redis()?;
    let Err(error) = events_library::run(&support::url(&server, "redis+pubsub")).await else {
        anyhow::bail!("events_library ran on the backplane, which has no consumer groups");
    };
    let error = format!("{error:#}");
    ensure!(
        error.contains("needs consumer groups and dead letters")
            && error.contains("redis+streams://"),
        "unexpected error: {error}"
    );
    Ok(())
}
