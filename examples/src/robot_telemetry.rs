//! Robot telemetry: typed sensor topics, a pattern subscription across
//! robots (fan-out) and a consumer group sharing large camera frames that
//! are kept with a short retention.
//!
//! - [`ROBOTS`] robots publish [`LaserScan`]s on `/robot-N/scan` and
//!   64 KiB [`CameraFrame`]s on `/robot-N/camera/rgb` (ROS-style absolute
//!   names), through the *fleet* transport.
//! - On the *station* transport (another process, in a real deployment):
//!   - a SLAM node subscribes to the pattern `/*/scan` (fan-out): it sees
//!     every scan of every robot, including topics that appear after it
//!     subscribed;
//!   - a vision group of two workers subscribes to `/*/camera/rgb`: each
//!     frame goes to one of them, which checks it and acknowledges it.
//! - Frames are large, so the camera topics keep a short retention and the
//!   scans a longer one, on the same transport: per-topic retention rules in
//!   the URL, `retain=/*/camera/rgb:maxlen=50&retain=/*/scan:maxlen=100`
//!   (Redis Streams: `XADD ... MAXLEN ~ N` by the publisher; memory: exact).
//! - On Redis the transports connect with a start-up retry
//!   (`connect_retry=`): a robot that boots before Redis keeps trying
//!   instead of failing once.
//!
//! On the Redis Pub/Sub backplane, which has no consumer groups
//! (`capabilities().consumer_groups` is false) and keeps no history, the
//! vision part is skipped with a note and only the SLAM fan-out runs.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{PHASE_TIMEOUT, close_all, connect_as, lock, scheme, shared_url, wait_until};

/// Number of robots.
pub const ROBOTS: u32 = 3;
/// Scans each robot publishes.
pub const SCANS_PER_ROBOT: u32 = 20;
/// Camera frames each robot publishes (one every other scan).
pub const FRAMES_PER_ROBOT: u32 = 8;
/// Size of one camera frame's pixel data: 128 x 128 RGBA.
pub const FRAME_BYTES: usize = 128 * 128 * 4;
/// How many frames per camera topic are retained (`retain=/*/camera/rgb:maxlen=N`).
pub const CAMERA_RETENTION: u64 = 50;
/// How many scans per scan topic are retained (`retain=/*/scan:maxlen=N`).
pub const SCAN_RETENTION: u64 = 100;
/// The start-up retry set on a Redis URL without `connect_retry=`.
pub const CONNECT_RETRY: &str = "10s";
/// Members of the vision group.
pub const VISION_WORKERS: [&str; 2] = ["vision-1", "vision-2"];
/// Readings per scan (one per degree).
pub const SCAN_RANGES: usize = 360;

/// One lidar sweep.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LaserScan {
    /// The robot that took it (`robot-1`).
    pub robot: String,
    /// Sequence number per robot, from 0.
    pub seq: u32,
    /// Range in metres per degree ([`SCAN_RANGES`] values).
    pub ranges: Vec<f32>,
}

/// One RGB camera frame.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CameraFrame {
    /// The robot that took it.
    pub robot: String,
    /// Sequence number per robot, from 0.
    pub seq: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel data ([`FRAME_BYTES`] bytes, every byte [`CameraFrame::fill`]).
    pub pixels: bytes::Bytes,
}

impl CameraFrame {
    /// The byte every pixel of frame `seq` holds, so that a worker can tell
    /// an intact frame from a damaged one.
    pub fn fill(seq: u32) -> u8 {
        u8::try_from(seq % 251).unwrap_or(0)
    }
}

/// What a run of the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The adapter's name (`memory`, `redis-streams`, `redis-pubsub`).
    pub adapter: &'static str,
    /// Robots that published.
    pub robots: u32,
    /// Scans published in all.
    pub scans_published: u64,
    /// Distinct scans the SLAM node received through `/*/scan`.
    pub scans_seen_by_slam: u64,
    /// Scans reported lost by a gap signal (the backplane's at-most-once
    /// delivery); 0 on the other adapters.
    pub scans_lost: u64,
    /// Frames published in all (0 when the vision part was skipped).
    pub frames_published: u64,
    /// Distinct frames processed, per vision worker (empty when skipped).
    pub frames_per_worker: Vec<(String, u64)>,
    /// Deliveries of a scan or frame seen before (at-least-once
    /// redeliveries), skipped.
    pub duplicates: u64,
    /// The retention rules of the camera and scan topics.
    pub camera_retention: String,
    /// The start-up retry in effect, or why there is none.
    pub connect_retry: String,
    /// Per topic, the messages it holds afterwards (`Transport::topics`),
    /// where the adapter keeps history.
    pub retained: Vec<(String, u64)>,
    /// Why a part of the example was skipped, if one was.
    pub note: Option<String>,
}

impl Summary {
    /// Frames processed by all vision workers together.
    pub fn frames_processed(&self) -> u64 {
        self.frames_per_worker.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "robot_telemetry on {}:", self.adapter)?;
        writeln!(
            f,
            "  SLAM (/*/scan, fan-out):     {} of {} scans from {} robots, {} lost",
            self.scans_seen_by_slam, self.scans_published, self.robots, self.scans_lost
        )?;
        if self.frames_per_worker.is_empty() {
            writeln!(f, "  vision group (/*/camera/rgb): skipped")?;
        } else {
            let per: Vec<String> = self
                .frames_per_worker
                .iter()
                .map(|(w, n)| format!("{w}={n}"))
                .collect();
            writeln!(
                f,
                "  vision group (/*/camera/rgb): {} of {} frames of {} KiB, each to one worker ({})",
                self.frames_processed(),
                self.frames_published,
                FRAME_BYTES / 1024,
                per.join(", ")
            )?;
        }
        writeln!(
            f,
            "  retention:                   {}",
            self.camera_retention
        )?;
        if !self.retained.is_empty() {
            let held: Vec<String> = self
                .retained
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect();
            writeln!(f, "  topics hold:                 {}", held.join(", "))?;
        }
        writeln!(f, "  connect retry:               {}", self.connect_retry)?;
        write!(f, "  duplicates skipped:          {}", self.duplicates)?;
        if let Some(note) = &self.note {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// The URL of the fleet and the station, with the retention rules and the
/// start-up retry, and a description of each. `url` is already shared (a
/// named memory hub or a Redis namespace).
fn robot_url(url: &str) -> (String, String, String) {
    let rules = [
        format!("/*/camera/rgb:maxlen={CAMERA_RETENTION}"),
        format!("/*/scan:maxlen={SCAN_RETENTION}"),
    ];
    let with_rules = |url: &str| {
        rules.iter().fold(url.to_owned(), |u, rule| {
            crate::with_param(&u, "retain", rule)
        })
    };
    let described = format!(
        "retain={} and retain={} (one transport; the most specific rule wins)",
        rules[0], rules[1]
    );
    match scheme(url).as_str() {
        "memory" => (
            with_rules(url),
            format!("{described}: memory trims exactly"),
            "n/a (memory: nothing to connect to)".to_owned(),
        ),
        "redis+streams" | "rediss+streams" => {
            let (url, retention) = if ["retain", "maxlen", "retention"]
                .iter()
                .any(|k| crate::has_param(url, k))
            {
                (
                    url.to_owned(),
                    "as given in the URL (retain/maxlen/retention)".to_owned(),
                )
            } else {
                (
                    with_rules(url),
                    format!("{described}: XADD ... MAXLEN ~ N, trimmed in whole stream nodes"),
                )
            };
            let (url, retry) = retry(&url);
            (url, retention, retry)
        }
        _ => {
            let (url, retry) = retry(url);
            (
                url,
                "none: the backplane keeps no history".to_owned(),
                retry,
            )
        }
    }
}

/// `url` with `connect_retry=` [`CONNECT_RETRY`] unless it sets one, and
/// a description.
fn retry(url: &str) -> (String, String) {
    match crate::param(url, "connect_retry") {
        Some(given) => (
            url.to_owned(),
            format!("connect_retry={given} (from the URL)"),
        ),
        None => (
            crate::with_param(url, "connect_retry", CONNECT_RETRY),
            format!("connect_retry={CONNECT_RETRY} (set by the example)"),
        ),
    }
}

#[derive(Default)]
struct Seen {
    scans: HashSet<(String, u32)>,
    scans_lost: u64,
    frames: HashSet<(String, u32)>,
    per_worker: Vec<u64>,
    duplicates: u64,
    errors: Vec<String>,
}

/// Runs the example against `url` and returns what it saw. A `memory://`
/// URL becomes a named hub and a Redis URL gets a fresh namespace (see
/// [`shared_url`]), so that the robots and the station use transports of
/// their own. Every wait is bounded by [`PHASE_TIMEOUT`].
pub async fn run(url: &str) -> anyhow::Result<Summary> {
    let (url, camera_retention, connect_retry) = robot_url(&shared_url(url, "robots"));
    let fleet = connect_as(&url, "fleet").await?;
    let station = connect_as(&url, "station").await?;
    let caps = station.capabilities();
    let note = if caps.consumer_groups {
        None
    } else {
        Some(format!(
            "the {} adapter has no consumer groups (capabilities().consumer_groups == false): \
                 the vision group is skipped, only the SLAM fan-out runs",
            station.name()
        ))
    };

    let seen = Arc::new(Mutex::new(Seen {
        per_worker: vec![0; VISION_WORKERS.len()],
        ..Seen::default()
    }));
    // Dropping the sender (on an early return too) stops the consumers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut consumers: Vec<JoinHandle<()>> = Vec::new();

    // SLAM: one fan-out subscription over every robot's scans.
    let slam = Bus::new(station.clone())
        .subscribe::<LaserScan>(Subscription::to("/*/scan")?)
        .await?;
    consumers.push(tokio::spawn(slam_node(slam, seen.clone(), stop_rx.clone())));

    // Vision: a group of two members sharing the camera frames. bincode:
    // 64 KiB of pixels stay 64 KiB on the wire (JSON would triple them).
    let camera_buses = caps.consumer_groups.then(|| {
        (
            Bus::new(fleet.clone()).with_codec(Codec::Bincode),
            Bus::new(station.clone()).with_codec(Codec::Bincode),
        )
    });
    if let Some((_, station_bus)) = &camera_buses {
        for (index, name) in VISION_WORKERS.iter().enumerate() {
            let sub = station_bus
                .subscribe::<CameraFrame>(
                    Subscription::to("/*/camera/rgb")?
                        .group_member("vision", *name)
                        // Large frames: prefetch only a few per worker.
                        .buffer(8),
                )
                .await?;
            consumers.push(tokio::spawn(vision_worker(
                index,
                sub,
                seen.clone(),
                stop_rx.clone(),
            )));
        }
    }

    // The robots.
    let fleet_bus = Bus::new(fleet.clone());
    let mut robots = Vec::new();
    for r in 1..=ROBOTS {
        robots.push(tokio::spawn(robot(
            format!("robot-{r}"),
            fleet_bus.clone(),
            camera_buses
                .as_ref()
                .map(|(fleet_camera, _)| fleet_camera.clone()),
        )));
    }
    for robot in robots {
        robot.await.context("a robot task panicked")??;
    }

    let scans_published = u64::from(ROBOTS * SCANS_PER_ROBOT);
    let frames_published = if camera_buses.is_some() {
        u64::from(ROBOTS * FRAMES_PER_ROBOT)
    } else {
        0
    };
    let waited = wait_until(
        PHASE_TIMEOUT,
        || {
            let s = lock(&seen);
            !s.errors.is_empty()
                || (s.scans.len() as u64 + s.scans_lost >= scans_published
                    && s.frames.len() as u64 >= frames_published)
        },
        || {
            let s = lock(&seen);
            format!(
                "SLAM saw {} of {scans_published} scans ({} lost), vision processed {} of \
                 {frames_published} frames",
                s.scans.len(),
                s.scans_lost,
                s.frames.len()
            )
        },
    )
    .await;

    drop(stop_tx);
    for consumer in consumers {
        consumer.await.context("a consumer task panicked")?;
    }
    let retained = if waited.is_ok() && caps.replay {
        retained(&station).await?
    } else {
        Vec::new()
    };
    let closed = close_all(&[&fleet, &station]).await;
    waited?;
    closed?;

    let s = lock(&seen);
    if !s.errors.is_empty() {
        bail!("consumers reported errors: {}", s.errors.join("; "));
    }
    Ok(Summary {
        adapter: station.name(),
        robots: ROBOTS,
        scans_published,
        scans_seen_by_slam: s.scans.len() as u64,
        scans_lost: s.scans_lost,
        frames_published,
        frames_per_worker: if camera_buses.is_some() {
            VISION_WORKERS
                .iter()
                .map(|w| (*w).to_owned())
                .zip(s.per_worker.iter().copied())
                .collect()
        } else {
            Vec::new()
        },
        duplicates: s.duplicates,
        camera_retention,
        connect_retry,
        retained,
        note,
    })
}

/// What the topics of the first robot hold (`Transport::topics`).
async fn retained(station: &Arc<dyn Transport>) -> anyhow::Result<Vec<(String, u64)>> {
    let filter = TopicFilter::parse("/robot-1/>")?;
    Ok(station
        .topics(&filter)
        .await
        .context("listing the topics")?
        .into_iter()
        .map(|t| (t.topic.as_str().to_owned(), t.length))
        .collect())
}

/// One robot: scans on `/robot-N/scan`, every other scan a frame on
/// `/robot-N/camera/rgb` (up to [`FRAMES_PER_ROBOT`]).
async fn robot(name: String, scans: Bus, camera: Option<Bus>) -> anyhow::Result<()> {
    let scan_topic = Topic::new(format!("/{name}/scan"))?;
    let camera_topic = Topic::new(format!("/{name}/camera/rgb"))?;
    let mut frames = 0;
    for seq in 0..SCANS_PER_ROBOT {
        let phase = seq as f32 / 10.0;
        let scan = LaserScan {
            robot: name.clone(),
            seq,
            ranges: (0..SCAN_RANGES)
                .map(|deg| 2.0 + (deg as f32).to_radians().sin() + phase)
                .collect(),
        };
        scans
            .publish(&scan_topic, &scan)
            .await
            .with_context(|| format!("{name}: publishing scan {seq}"))?;
        if let Some(camera) = &camera
            && frames < FRAMES_PER_ROBOT
            && seq % 2 == 0
        {
            let frame = CameraFrame {
                robot: name.clone(),
                seq: frames,
                width: 128,
                height: 128,
                pixels: bytes::Bytes::from(vec![CameraFrame::fill(frames); FRAME_BYTES]),
            };
            camera
                .publish(&camera_topic, &frame)
                .await
                .with_context(|| format!("{name}: publishing frame {frames}"))?;
            frames += 1;
        }
    }
    Ok(())
}

async fn slam_node(
    mut sub: TypedSubscriber<LaserScan>,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            _ = stop.changed() => break,
            item = sub.recv() => item,
        };
        let mut s = lock(&seen);
        match item {
            None => break,
            Some(Ok(scan)) => {
                if scan.value.ranges.len() != SCAN_RANGES {
                    let n = scan.value.ranges.len();
                    s.errors.push(format!("SLAM: a scan with {n} ranges"));
                }
                if !s.scans.insert((scan.value.robot.clone(), scan.value.seq)) {
                    s.duplicates += 1;
                }
            }
            // The backplane tells which scans it lost (at-most-once).
            Some(Err(Error::Lost { from, to, .. })) => {
                s.scans_lost += to.saturating_sub(from) + 1;
            }
            Some(Err(e)) => s.errors.push(format!("SLAM: {e}")),
        }
    }
    if let Err(e) = sub.close().await {
        lock(&seen).errors.push(format!("SLAM: closing: {e}"));
    }
}

async fn vision_worker(
    index: usize,
    mut sub: TypedSubscriber<CameraFrame>,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    let name = VISION_WORKERS.get(index).copied().unwrap_or("vision");
    loop {
        let item = tokio::select! {
            _ = stop.changed() => break,
            item = sub.recv() => item,
        };
        let frame = match item {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                lock(&seen).errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        // "Process" the frame: check that it arrived intact.
        let fill = CameraFrame::fill(frame.value.seq);
        let intact = frame.value.pixels.len() == FRAME_BYTES
            && frame.value.pixels.iter().all(|&b| b == fill);
        {
            let mut s = lock(&seen);
            if !intact {
                let (robot, seq) = (&frame.value.robot, frame.value.seq);
                s.errors
                    .push(format!("{name}: frame {seq} of {robot} is damaged"));
            }
            if s.frames
                .insert((frame.value.robot.clone(), frame.value.seq))
            {
                if let Some(n) = s.per_worker.get_mut(index) {
                    *n += 1;
                }
            } else {
                s.duplicates += 1;
            }
        }
        if let Err(e) = frame.ack().await {
            lock(&seen).errors.push(format!("{name}: ack: {e}"));
        }
    }
    if let Err(e) = sub.close().await {
        lock(&seen).errors.push(format!("{name}: closing: {e}"));
    }
}
