//! `chat_backplane` on memory (one named hub) and on the Redis Pub/Sub
//! backplane with a real restart of Redis in the middle: every member gets
//! exactly the messages of its rooms, no echo gets through, no subscription
//! is lost, and what was posted during the outage is lost for the other
//! replica and reported.

mod support;

use anyhow::{bail, ensure};
use switchyard_examples::chat_backplane::{self, MemberReport, Outage, RestartReport, Summary};

/// A member's expected report.
fn member(
    name: &'static str,
    replica: &'static str,
    expected: u64,
    from_other_replica: u64,
    expected_lost: u64,
) -> MemberReport {
    MemberReport {
        name,
        replica,
        received: expected,
        expected,
        from_other_replica,
        lost: expected_lost,
        expected_lost,
        duplicates: 0,
    }
}

/// Two rounds, no outage: per round, each room gets 3 posts from each of
/// its 3 members (9); alice and carol are in both rooms.
fn two_rounds() -> Vec<MemberReport> {
    vec![
        member("alice", "replica-a", 36, 18, 0),
        member("bob", "replica-a", 18, 6, 0),
        member("carol", "replica-b", 36, 18, 0),
        member("dave", "replica-b", 18, 6, 0),
    ]
}

fn posted(summary: &Summary) -> Vec<u64> {
    summary.replicas.iter().map(|r| r.posted).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory_both_replicas_share_one_named_hub() -> anyhow::Result<()> {
    let summary = chat_backplane::run("memory://", None).await?;
    ensure!(summary.adapter == "memory");
    ensure!(summary.members == two_rounds(), "{summary}");
    ensure!(summary.all_accounted(), "{summary}");
    ensure!(posted(&summary) == [18, 18], "{summary}");
    ensure!(
        summary
            .replicas
            .iter()
            .all(|r| r.self_echoes_dropped.is_none()),
        "{summary}"
    );
    let RestartReport::Skipped(why) = &summary.restart else {
        bail!("memory has no server to restart: {summary}");
    };
    ensure!(why.contains("no server to restart"), "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory_a_restart_hook_is_never_called() -> anyhow::Result<()> {
    let mut calls = Vec::new();
    let mut hook = |step: Outage| -> anyhow::Result<()> {
        calls.push(step);
        Ok(())
    };
    let summary = chat_backplane::run("memory://", Some(&mut hook)).await?;
    ensure!(calls.is_empty(), "the hook was called: {calls:?}");
    ensure!(summary.members == two_rounds(), "{summary}");
    ensure!(
        matches!(summary.restart, RestartReport::Skipped(_)),
        "{summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_backplane_a_redis_restart_loses_no_subscription() -> anyhow::Result<()> {
    let mut server = support::redis()?;
    let url = support::url(&server, "redis+pubsub");
    let mut steps = Vec::new();
    let mut hook = |step: Outage| -> anyhow::Result<()> {
        steps.push(step);
        match step {
            Outage::Stop => server.stop()?,
            Outage::Start => server.start_again()?,
        }
        Ok(())
    };
    let summary = chat_backplane::run(&url, Some(&mut hook)).await?;
    println!("{summary}");
    ensure!(steps == [Outage::Stop, Outage::Start], "steps {steps:?}");
    ensure!(summary.adapter == "redis-pubsub");

    // Two full rounds reach everyone, before and after the restart. The 2
    // lines alice posted to the lobby during the outage reached bob and
    // alice (same replica) and are lost for carol, who was told so.
    let expected = vec![
        member("alice", "replica-a", 36 + 2, 18, 0),
        member("bob", "replica-a", 18 + 2, 6, 0),
        member("carol", "replica-b", 36, 18, 2),
        member("dave", "replica-b", 18, 6, 0),
    ];
    ensure!(summary.members == expected, "{summary}");
    ensure!(summary.all_accounted(), "{summary}");
    ensure!(posted(&summary) == [18 + 2, 18], "{summary}");
    // Every line that went through Redis came back to its own replica once
    // and was dropped there: 18 each (the outage lines never reached Redis).
    for r in &summary.replicas {
        ensure!(r.self_echoes_dropped == Some(18), "{summary}");
        ensure!(r.reconnects >= 1, "{summary}");
    }
    let RestartReport::Done {
        outage_posts,
        dropped_for_redis,
        ..
    } = summary.restart
    else {
        bail!("the restart step did not run: {summary}");
    };
    ensure!(outage_posts == 2 && dropped_for_redis == 2, "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_backplane_without_a_hook_the_restart_is_skipped_and_said_so() -> anyhow::Result<()>
{
    let server = support::redis()?;
    let summary = chat_backplane::run(&support::url(&server, "redis+pubsub"), None).await?;
    ensure!(summary.members == two_rounds(), "{summary}");
    for r in &summary.replicas {
        ensure!(r.self_echoes_dropped == Some(18), "{summary}");
        ensure!(r.reconnects == 0, "{summary}");
    }
    let RestartReport::Skipped(why) = &summary.restart else {
        bail!("restarted without a hook: {summary}");
    };
    ensure!(
        why.contains("no way to restart the Redis server"),
        "{summary}"
    );
    ensure!(
        summary.startup == "strict: connect_timeout=2s (set by the example), no start-up retry",
        "{summary}"
    );
    Ok(())
}

/// Strict start-up: with Redis down, a replica does not start serving rooms
/// that reach nobody; `run` fails with an error naming the address, and
/// without the password of the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_backplane_a_replica_refuses_to_start_without_redis() -> anyhow::Result<()> {
    let mut server = support::redis()?;
    let addr = server.addr().to_string();
    let url = support::url(&server, "redis+pubsub").replacen("://", "://:hunter2@", 1);
    server.stop()?;
    // A bound for a hang, not a timing goal: connect_timeout is 2 s.
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        chat_backplane::run(&url, None),
    )
    .await;
    let Ok(Err(error)) = outcome else {
        bail!("expected a start-up error, got {outcome:?}");
    };
    let error = format!("{error:#}");
    ensure!(
        error.contains("replica-a") && error.contains(&addr) && !error.contains("hunter2"),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams_the_chat_works_and_the_restart_is_skipped() -> anyhow::Result<()> {
    let server = support::redis()?;
    let summary = chat_backplane::run(&support::url(&server, "redis+streams"), None).await?;
    ensure!(summary.adapter == "redis-streams");
    ensure!(summary.members == two_rounds(), "{summary}");
    let RestartReport::Skipped(why) = &summary.restart else {
        bail!("restarted without a hook: {summary}");
    };
    ensure!(why.contains("not the Redis backplane"), "{summary}");
    Ok(())
}
