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
        summary.camera_retention.starts_with("retention=50 "),
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
        summary.camera_retention.starts_with("maxlen=50 "),
        "{summary}"
    );
    // In Redis: one stream per topic, the frames all acked by the group.
    for r in 1..=3 {
        let scans = format!("t-robots:{{robot-{r}/scan}}");
        let camera = format!("t-robots:{{robot-{r}/camera/rgb}}");
        ensure!(support::int(&server, &["XLEN", &scans])? == 20);
        ensure!(support::int(&server, &["XLEN", &camera])? == 8);
        ensure!(support::pending(&server, &camera, "vision")? == 0);
    }
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
