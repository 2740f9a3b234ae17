//! `robot_telemetry` on memory, on Redis Streams and on the Pub/Sub
//! backplane: every scan reaches the SLAM node once, every frame reaches
//! exactly one vision worker, and the camera retention is the short one.

mod support;

use anyhow::ensure;
use switchyard_examples::robot_telemetry::{self, Summary};

/// Every scan reaches SLAM exactly once, nothing lost or doubled.
fn check_scans(summary: &Summary) -> anyhow::Result<()> {
    ensure!(summary.robots == 3, "{summary}");
    ensure!(summary.scans_published == 60, "{summary}");
    ensure!(summary.scans_seen_by_slam == 60, "{summary}");
    ensure!(summary.scans_lost == 0, "{summary}");
    ensure!(summary.duplicates == 0, "{summary}");
    Ok(())
}

/// Every frame processed by exactly one member of the vision group.
fn check_frames(summary: &Summary) -> anyhow::Result<()> {
    ensure!(summary.frames_published == 24, "{summary}");
    ensure!(summary.frames_processed() == 24, "{summary}");
    ensure!(summary.frames_per_worker.len() == 2, "{summary}");
    ensure!(summary.note.is_none(), "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() -> anyhow::Result<()> {
    let summary = robot_telemetry::run("memory://").await?;
    ensure!(summary.adapter == "memory");
    check_scans(&summary)?;
    check_frames(&summary)?;
    ensure!(
        summary
            .camera_retention
            .starts_with("retain=/*/camera/rgb:maxlen=50 and retain=/*/scan:maxlen=100 "),
        "{summary}"
    );
    // One transport holds both, each topic under its own rule.
    ensure!(
        summary.retained
            == [
                ("/robot-1/camera/rgb".to_owned(), 8),
                ("/robot-1/scan".to_owned(), 20)
            ],
        "{summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_streams() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = format!(
        "{}?namespace=t-robots",
        support::url(&server, "redis+streams")
    );
    let summary = robot_telemetry::run(&url).await?;
    ensure!(summary.adapter == "redis-streams");
    check_scans(&summary)?;
    check_frames(&summary)?;
    ensure!(
        summary
            .camera_retention
            .starts_with("retain=/*/camera/rgb:maxlen=50 and retain=/*/scan:maxlen=100 "),
        "{summary}"
    );
    ensure!(
        summary.connect_retry == "connect_retry=10s (set by the example)",
        "{summary}"
    );
    // In Redis: one stream per topic, the frames all acked by the group.
    for r in 1..=3 {
        let scans = format!("t-robots:{{/robot-{r}/scan}}");
        let camera = format!("t-robots:{{/robot-{r}/camera/rgb}}");
        ensure!(support::int(&server, &["XLEN", &scans])? == 20);
        ensure!(support::int(&server, &["XLEN", &camera])? == 8);
        ensure!(support::pending(&server, &camera, "vision")? == 0);
    }
    Ok(())
}

/// The robots boot before Redis: with `connect_retry=` the transports keep
/// trying until the server is up, then everything arrives as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_started_before_redis_connect_once_it_is_up() -> anyhow::Result<()> {
    let mut server = support::redis()?;
    let url = support::url(&server, "redis+streams");
    server.stop()?;
    let run = tokio::spawn(async move { robot_telemetry::run(&url).await });
    // The outage the robots boot into: its length is the fault, not a wait
    // for an event.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    ensure!(!run.is_finished(), "run ended while Redis was down");
    server.start_again()?;
    let summary = run.await??;
    check_scans(&summary)?;
    check_frames(&summary)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reruns_on_redis_streams_start_afresh() -> anyhow::Result<()> {
    let server = support::redis()?;
    let url = support::url(&server, "redis+streams");
    for _ in 0..2 {
        let summary = robot_telemetry::run(&url).await?;
        check_scans(&summary)?;
        check_frames(&summary)?;
    }
    Ok(())
}

/// The backplane has patterns but no consumer groups: the SLAM fan-out runs
/// (through Redis, from the fleet's transport to the station's), the vision
/// group is skipped, and the summary says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_backplane_only_the_fan_out_runs() -> anyhow::Result<()> {
    let server = support::redis()?;
    let summary = robot_telemetry::run(&support::url(&server, "redis+pubsub")).await?;
    ensure!(summary.adapter == "redis-pubsub");
    check_scans(&summary)?;
    ensure!(summary.frames_published == 0, "{summary}");
    ensure!(summary.frames_per_worker.is_empty(), "{summary}");
    let note = summary.note.as_deref().unwrap_or("");
    ensure!(
        note.contains("no consumer groups") && note.contains("vision group is skipped"),
        "{summary}"
    );
    Ok(())
}
