//! The chaos ledger: publishers and consumer-group members on Redis Streams
//! while Redis (AOF, `appendfsync always`) is SIGKILLed and restarted twice
//! and a consumer running in a separate OS process is SIGKILLed mid-batch.
//!
//! Every delivery handed to the application is written to a ledger before
//! it is acked (by the child process: to a file, one unbuffered `write` per
//! line). At the end the ledger must show: every publish that returned
//! `Ok` delivered at least once (0 lost), every copy with the dedup id of
//! the published message, every entry the killed process held pending
//! delivered again elsewhere, 0 pending in the group, nothing
//! dead-lettered, and every surviving member still receiving (none wedged).
//!
//! - `chaos_ledger_short` runs in the normal `cargo test` (3,000 messages,
//!   bounded well under a minute);
//! - `chaos_ledger_long` is ignored by default (50,000 messages):
//!   `cargo test -p switchyard-redis-streams --release --test chaos -- --ignored --nocapture chaos_ledger_long`.
//!
//! The consumer process is this test binary run again with
//! `--exact <test> --nocapture` and `SY_CHAOS_CHILD_*` variables; the test
//! function sees them and runs the child's consumer loop instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::{
    DedupId, Delivery, Message, Start, Subscriber, Subscription, Topic, Transport,
};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig, keys};
use switchyard_testkit::{Persistence, RedisOptions, RedisServer};

const NS: &str = "chaos";
const GROUP: &str = "g";
const CHILD_CONSUMER: &str = "child-1";
/// How long a member may hold a message before another claims it.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// The child acks in batches of this many deliveries, so a kill usually
/// finds some delivered but unacked.
const CHILD_ACK_BATCH: usize = 8;

/// The sizes of one run.
struct Plan {
    /// The test function's name (the child is started with `--exact`).
    name: &'static str,
    /// Whether the test is `#[ignore]`d (the child needs `--ignored` then).
    ignored: bool,
    messages: usize,
    publishers: usize,
    /// Upper bound of the whole run.
    budget: Duration,
}

/// One copy handed to the application.
#[derive(Clone, Debug)]
struct Received {
    index: usize,
    dedup: DedupId,
    id: String,
    consumer: &'static str,
}

fn topic() -> Topic {
    Topic::new("ledger").unwrap()
}

fn streams_url(redis_url: &str) -> String {
    let rest = redis_url.split_once("://").map_or(redis_url, |(_, r)| r);
    format!("redis+streams://{rest}?namespace={NS}&block=200ms&connect_timeout=1s")
}

fn member(consumer: &str) -> Subscription {
    Subscription::new(topic())
        .group_member(GROUP, consumer)
        .start(Start::Earliest)
        .ack_timeout(ACK_TIMEOUT)
        // Restarts may redeliver a message several times; nothing may be
        // dead-lettered for that.
        .max_attempts(1000)
        .buffer(32)
}

fn index_of(d: &Delivery) -> Option<usize> {
    std::str::from_utf8(d.payload())
        .ok()?
        .strip_prefix("m-")?
        .parse()
        .ok()
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after
/// `limit`.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pending count of the group (XPENDING summary), `None` while Redis
/// does not answer.
fn pending_count(server: &RedisServer, key: &str) -> Option<i64> {
    server
        .cmd(&["XPENDING", key, GROUP])
        .ok()?
        .as_array()?
        .first()?
        .as_int()
}

/// Entry ids pending for `consumer`.
fn pending_of(server: &RedisServer, key: &str, consumer: &str) -> BTreeSet<String> {
    let reply = server
        .cmd(&["XPENDING", key, GROUP, "-", "+", "1000000", consumer])
        .expect("XPENDING");
    reply
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|row| row.as_array()?.first()?.as_str().map(str::to_owned))
        .collect()
}

// ---- the consumer process -------------------------------------------------

/// Kills the child on drop, so a failing test leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(plan: &Plan, url: &str, ledger: &Path) -> ChildGuard {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", plan.name, "--nocapture", "--test-threads", "1"]);
    if plan.ignored {
        cmd.arg("--ignored");
    }
    cmd.env("SY_CHAOS_CHILD_URL", url)
        .env("SY_CHAOS_CHILD_LEDGER", ledger)
        .env(
            "SY_CHAOS_CHILD_LIFETIME_MS",
            plan.budget.as_millis().to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    ChildGuard(cmd.spawn().expect("spawn the consumer process"))
}

/// The child's consumer loop: each delivery is written to the ledger
/// (`D index dedup id attempt`) before it is acked; acks go in batches of
/// [`CHILD_ACK_BATCH`] (`A index id` after each ack that returned `Ok`).
fn child_main(url: String, ledger: PathBuf, lifetime: Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ledger)
        .expect("open the ledger");
    let mut line = |s: String| file.write_all(s.as_bytes()).expect("write the ledger");
    rt.block_on(async move {
        let deadline = Instant::now() + lifetime;
        let config = StreamsConfig::from_url(&url).expect("valid url");
        let bus = RedisStreamsTransport::connect(config)
            .await
            .expect("connects");
        let mut sub = bus
            .subscribe(member(CHILD_CONSUMER))
            .await
            .expect("subscribes");
        line("R\n".to_owned());
        let mut held: Vec<(usize, Delivery)> = Vec::new();
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
                Ok(Some(Ok(d))) => {
                    let Some(i) = index_of(&d) else {
                        line(format!("X {}\n", d.id()));
                        continue;
                    };
                    line(format!(
                        "D {i} {} {} {}\n",
                        d.dedup_id(),
                        d.id(),
                        d.attempt()
                    ));
                    held.push((i, d));
                    if held.len() < CHILD_ACK_BATCH {
                        continue;
                    }
                }
                Ok(Some(Err(e))) => {
                    line(format!("E {}\n", e.to_string().replace('\n', " ")));
                    continue;
                }
                Ok(None) => break,
                // Idle: settle what is held.
                Err(_) => {}
            }
            for (i, d) in held.drain(..) {
                let id = d.id();
                if d.ack().await.is_ok() {
                    line(format!("A {i} {id}\n"));
                }
            }
        }
    });
}

/// What the child's ledger holds: its copies, the indices it acked, and
/// whether it said it was ready.
fn read_child_ledger(path: &Path) -> (Vec<Received>, BTreeSet<usize>, bool) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut copies = Vec::new();
    let mut acked = BTreeSet::new();
    let mut ready = false;
    // A kill may cut the last line: only complete lines count.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for l in complete.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["R"] => ready = true,
            ["D", i, dedup, id, _attempt] => copies.push(Received {
                index: i.parse().expect("index"),
                dedup: dedup.parse().expect("dedup id"),
                id: (*id).to_owned(),
                consumer: CHILD_CONSUMER,
            }),
            ["A", i, _] => {
                acked.insert(i.parse().expect("index"));
            }
            ["X", id] => panic!("the consumer process got a foreign entry {id}"),
            // An error item (Redis away): the subscriber goes on.
            ["E", ..] => {}
            _ => panic!("the consumer process wrote an unexpected ledger line {l:?}"),
        }
    }
    (copies, acked, ready)
}

// ---- the run ----------------------------------------------------------------

fn child_env() -> Option<(String, PathBuf, Duration)> {
    let url = std::env::var("SY_CHAOS_CHILD_URL").ok()?;
    let ledger = std::env::var_os("SY_CHAOS_CHILD_LEDGER")?;
    let ms: u64 = std::env::var("SY_CHAOS_CHILD_LIFETIME_MS")
        .ok()?
        .parse()
        .ok()?;
    Some((url, PathBuf::from(ledger), Duration::from_millis(ms)))
}

fn run(plan: Plan) {
    if let Some((url, ledger, lifetime)) = child_env() {
        child_main(url, ledger, lifetime);
        return;
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut server = RedisServer::start_with(
        RedisOptions::default()
            .persistence(Persistence::Aof)
            .arg("appendfsync", "always"),
    )
    .expect("redis-server starts");
    let url = streams_url(&server.url());
    let t = topic();
    let key = keys::stream_key(NS, &t);
    let dlq_key = keys::stream_key(NS, &t.dead_letter().unwrap());
    let bus: Arc<dyn Transport> = rt.block_on(async {
        let config = StreamsConfig::from_url(&url).expect("valid url");
        Arc::new(
            RedisStreamsTransport::connect(config)
                .await
                .expect("connects"),
        )
    });

    // Two members in this process: record, then ack.
    let ledger: Arc<Mutex<Vec<Received>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let received: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
    let mut members = Vec::new();
    for (n, name) in ["c1", "c2"].into_iter().enumerate() {
        let mut sub: Box<dyn Subscriber> = rt
            .block_on(bus.subscribe(member(name)))
            .expect("subscribes");
        let (ledger, stop, count) = (ledger.clone(), stop.clone(), received[n].clone());
        members.push(rt.spawn(async move {
            let mut errors = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
                    Ok(Some(Ok(d))) => {
                        let index = index_of(&d).expect("a numbered payload");
                        ledger.lock().push(Received {
                            index,
                            dedup: d.dedup_id(),
                            id: d.id().to_string(),
                            consumer: name,
                        });
                        count.fetch_add(1, Ordering::Relaxed);
                        // A failed ack (Redis away) leaves it pending: claimed again later.
                        let _ = d.ack().await;
                    }
                    Ok(Some(Err(_))) => errors += 1,
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            let _ = sub.close().await;
            errors
        }));
    }

    // The consumer process.
    let child_ledger = server.dir().join("child-ledger.txt");
    let mut child = spawn_child(&plan, &url, &child_ledger);
    wait_until(
        "the consumer process subscribed",
        Duration::from_secs(30),
        || read_child_ledger(&child_ledger).2,
    );

    // Publishers: each retries its message (same value, same dedup id)
    // until `publish` returns Ok.
    let n = plan.messages;
    let published = Arc::new(AtomicUsize::new(0));
    let dedups: Arc<Mutex<Vec<Option<DedupId>>>> = Arc::new(Mutex::new(vec![None; n]));
    let failed_attempts = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for p in 0..plan.publishers {
        let (bus, published, dedups, failed) = (
            bus.clone(),
            published.clone(),
            dedups.clone(),
            failed_attempts.clone(),
        );
        let (stride, budget) = (plan.publishers, plan.budget);
        publishers.push(rt.spawn(async move {
            let deadline = Instant::now() + budget;
            for i in (p..n).step_by(stride) {
                let m = Message::new(topic(), format!("m-{i:06}"));
                let dedup = m.dedup_id;
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "publishing message {i} never succeeded"
                    );
                    match bus.publish(m.clone()).await {
                        Ok(_) => break,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                dedups.lock()[i] = Some(dedup);
                published.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Faults, each once load reached a point.
    let limit = plan.budget;
    let kill_redis = |server: &mut RedisServer, what: &str| {
        server.kill();
        // Let publishers and members hit the outage before Redis is back.
        std::thread::sleep(Duration::from_millis(300));
        server
            .start_again()
            .unwrap_or_else(|e| panic!("{what}: redis-server restarts: {e}"));
    };
    wait_until("a quarter published", limit, || {
        published.load(Ordering::Relaxed) >= n / 4
    });
    kill_redis(&mut server, "first kill");
    wait_until("half published and the child mid-stream", limit, || {
        published.load(Ordering::Relaxed) >= n / 2 && read_child_ledger(&child_ledger).0.len() >= 20
    });
    child.0.kill().expect("SIGKILL the consumer process");
    child.0.wait().expect("reap the consumer process");
    let child_pending = pending_of(&server, &key, CHILD_CONSUMER);
    wait_until("three quarters published", limit, || {
        published.load(Ordering::Relaxed) >= 3 * n / 4
    });
    kill_redis(&mut server, "second kill");
    wait_until("every publish returned Ok", limit, || {
        publishers.iter().all(|h| h.is_finished())
    });
    for h in publishers {
        rt.block_on(h).expect("a publisher failed");
    }
    let published_at = Instant::now();

    // Everything delivered, then nothing pending.
    let dedups: Vec<DedupId> = dedups
        .lock()
        .iter()
        .map(|d| d.expect("published"))
        .collect();
    let covered = || {
        let mut seen: BTreeSet<usize> = ledger.lock().iter().map(|c| c.index).collect();
        seen.extend(read_child_ledger(&child_ledger).0.iter().map(|c| c.index));
        seen.len()
    };
    wait_until("every published message delivered", limit, || {
        covered() == n
    });
    wait_until("nothing pending in the group", limit, || {
        pending_count(&server, &key) == Some(0)
    });

    // None wedged: each member in this process still receives.
    let received_before_probe: Vec<usize> =
        received.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let probes = Arc::new(AtomicUsize::new(0));
    for round in 0..50 {
        let got_probe = received
            .iter()
            .zip(&received_before_probe)
            .all(|(c, before)| c.load(Ordering::Relaxed) > *before);
        if got_probe {
            break;
        }
        assert!(
            round < 49,
            "a member received nothing after everything was settled: wedged"
        );
        let batch: Vec<Message> = (0..10)
            .map(|k| Message::new(topic(), format!("m-{:06}", n + round * 10 + k)))
            .collect();
        let before: usize = received.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        rt.block_on(bus.publish_batch(batch))
            .expect("probe publish");
        probes.fetch_add(10, Ordering::Relaxed);
        wait_until("the probe delivered", Duration::from_secs(20), || {
            received
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<usize>()
                >= before + 10
        });
    }
    let probes = probes.load(Ordering::Relaxed);
    wait_until("probes settled", limit, || {
        pending_count(&server, &key) == Some(0)
    });
    stop.store(true, Ordering::Relaxed);
    let member_errors: usize = members
        .into_iter()
        .map(|h| rt.block_on(h).expect("a member task failed"))
        .sum();
    rt.block_on(bus.close()).expect("close");

    // The ledger.
    let (child_copies, child_acked, _) = read_child_ledger(&child_ledger);
    let mut all: Vec<Received> = ledger.lock().clone();
    all.extend(child_copies.iter().cloned());
    let mut copies_of: BTreeMap<usize, Vec<&Received>> = BTreeMap::new();
    for c in &all {
        copies_of.entry(c.index).or_default().push(c);
    }
    let lost: Vec<usize> = (0..n).filter(|i| !copies_of.contains_key(i)).collect();
    let distinct = copies_of.keys().filter(|&&i| i < n).count();
    let duplicated = copies_of
        .iter()
        .filter(|(i, v)| **i < n && v.len() > 1)
        .count();
    for (i, copies) in &copies_of {
        if *i >= n {
            continue; // probes
        }
        for c in copies {
            assert_eq!(
                c.dedup, dedups[*i],
                "message {i}: a copy (entry {}, consumer {}) carries another dedup id than the first",
                c.id, c.consumer
            );
        }
    }
    // Every entry the killed process held pending came again elsewhere.
    let redelivered_elsewhere: BTreeSet<&str> = all
        .iter()
        .filter(|c| c.consumer != CHILD_CONSUMER)
        .map(|c| c.id.as_str())
        .collect();
    let not_redelivered: Vec<&String> = child_pending
        .iter()
        .filter(|id| !redelivered_elsewhere.contains(id.as_str()))
        .collect();
    let child_unacked = child_copies
        .iter()
        .filter(|c| !child_acked.contains(&c.index))
        .count();
    let dead = server
        .cmd(&["XLEN", &dlq_key])
        .ok()
        .and_then(|v| v.as_int());
    let xlen = server.cmd(&["XLEN", &key]).ok().and_then(|v| v.as_int());
    eprintln!(
        "chaos ledger ({}): published {n} (+{probes} probes) by {} publishers with {} failed attempts retried; \
         redis SIGKILLed and restarted 2x, consumer process SIGKILLed once holding {} pending ({} delivered unacked); \
         delivered {} copies, {} distinct, {} duplicated, lost {}; stream length {:?}; dead letters {:?}; \
         member errors {member_errors}; {:.1}s ({:.1}s from the last publish to the end)",
        plan.name,
        plan.publishers,
        failed_attempts.load(Ordering::Relaxed),
        child_pending.len(),
        child_unacked,
        all.len(),
        distinct,
        duplicated,
        lost.len(),
        xlen,
        dead,
        started.elapsed().as_secs_f64(),
        published_at.elapsed().as_secs_f64(),
    );
    assert!(
        lost.is_empty(),
        "{} published messages never delivered: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        not_redelivered.is_empty(),
        "entries pending for the killed consumer process never came again: {not_redelivered:?}"
    );
    assert_eq!(
        pending_count(&server, &key),
        Some(0),
        "entries left pending"
    );
    assert_eq!(dead, Some(0), "messages were dead-lettered");
    assert!(
        xlen.is_some_and(|l| l >= (n + probes) as i64),
        "the stream lost entries: {xlen:?}"
    );
    assert!(
        started.elapsed() < plan.budget,
        "the run took {:?}, over its budget {:?}",
        started.elapsed(),
        plan.budget
    );
}

/// The short form, part of the normal test run.
#[test]
fn chaos_ledger_short() {
    run(Plan {
        name: "chaos_ledger_short",
        ignored: false,
        messages: 3_000,
        publishers: 2,
        budget: Duration::from_secs(60),
    });
}

/// The long form: `cargo test -p switchyard-redis-streams --release --test
/// chaos -- --ignored --nocapture chaos_ledger_long`.
#[test]
#[ignore = "long chaos run (about a minute or two); run it with --ignored"]
fn chaos_ledger_long() {
    run(Plan {
        name: "chaos_ledger_long",
        ignored: true,
        messages: 50_000,
        publishers: 4,
        budget: Duration::from_secs(600),
    });
}
