//! The rows of one `compare` table: every section's raw limits, peers and
//! switchyard's adapters, measured for one payload size.

use anyhow::Result;
use switchyard_testkit::RedisServer;

use crate::harness::{Row, median};
#[cfg(feature = "peers")]
use crate::peers;
use crate::{CompareArgs, keep, open, ours, raw, wanted};

/// Runs every wanted section for one payload size: the rows measured and
/// what failed (the run goes on past a failed row).
pub(crate) async fn compare_size(
    args: &CompareArgs,
    server: &RedisServer,
    size: usize,
) -> Result<(Vec<Row>, Vec<String>)> {
    let (n, reps) = (args.messages, args.repeats);
    let redis_url = format!("redis://127.0.0.1:{}", server.port());
    let streams_url = format!("redis+streams://127.0.0.1:{}", server.port());
    let pubsub_url = format!("redis+pubsub://127.0.0.1:{}", server.port());
    let memory_url = "memory://?retention=10000";
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let flush = || async {
        let _ = server.cmd(&["FLUSHALL"]);
    };
    if wanted(args, "streams-publish") {
        let s = "streams-publish";
        keep(
            &mut rows,
            &mut failures,
            "raw::redis_benchmark",
            median(reps, || async {
                raw::redis_benchmark(s, server.port(), "XADD", size, n * 5)
            })
            .await,
        );
        flush().await;
        keep(
            &mut rows,
            &mut failures,
            "raw::redis_benchmark",
            median(reps, || async {
                raw::redis_benchmark(s, server.port(), "XADD-vdp", size, n * 5)
            })
            .await,
        );
        flush().await;
        keep(
            &mut rows,
            &mut failures,
            "raw::redis_rs_pipelined_xadd",
            median(reps, || {
                raw::redis_rs_pipelined_xadd(&redis_url, size, n, 100, 1)
            })
            .await,
        );
        let t = open(&streams_url).await?;
        for p in [1, 64] {
            keep(
                &mut rows,
                &mut failures,
                "ours::publish_row",
                median(reps, || {
                    ours::publish_row(s, "redis-streams", &t, size, n, p)
                })
                .await,
            );
            flush().await;
        }
        keep(
            &mut rows,
            &mut failures,
            "ours::queued_row",
            median(reps, || ours::queued_row(s, "redis-streams", &t, size, n)).await,
        );
        flush().await;
        keep(
            &mut rows,
            &mut failures,
            "ours::batch_row",
            median(reps, || {
                ours::batch_row(s, "redis-streams", &t, size, n, 100)
            })
            .await,
        );
        let _ = t.close().await;
        flush().await;
        peers_publish(&mut rows, &mut failures, &redis_url, size, n, reps).await?;
        flush().await;
    }

    if wanted(args, "streams-consume") {
        let s = "streams-consume";
        keep(
            &mut rows,
            &mut failures,
            "raw::redis_rs_xreadgroup_ack",
            median(reps, || raw::redis_rs_xreadgroup_ack(&redis_url, size, n)).await,
        );
        flush().await;
        let (p, c) = (open(&streams_url).await?, open(&streams_url).await?);
        for members in [1, 4] {
            keep(
                &mut rows,
                &mut failures,
                "ours::group_row",
                median(reps, || {
                    ours::group_row(s, "redis-streams", &p, &c, size, n, members)
                })
                .await,
            );
            flush().await;
        }
        let _ = (p.close().await, c.close().await);
        peers_consume(&mut rows, &mut failures, &redis_url, size, n, reps).await?;
        flush().await;
    }

    if wanted(args, "pubsub-publish") {
        let s = "pubsub-publish";
        keep(
            &mut rows,
            &mut failures,
            "raw::redis_benchmark",
            median(reps, || async {
                raw::redis_benchmark(s, server.port(), "PUBLISH", size, n * 5)
            })
            .await,
        );
        let (p, c) = (open(&pubsub_url).await?, open(&pubsub_url).await?);
        keep(
            &mut rows,
            &mut failures,
            "ours::publish_row",
            median(reps, || {
                ours::publish_row(s, "redis-pubsub", &p, size, n, 64)
            })
            .await,
        );
        if let Some(r) = rows.last_mut() {
            r.note =
                "publish returned: delivered locally and queued in the outbox for Redis".into();
        }
        keep(
            &mut rows,
            &mut failures,
            "ours::fanout_row",
            median(reps, || {
                ours::fanout_row(
                    s,
                    "redis-pubsub cross-replica",
                    &p,
                    &c,
                    size,
                    n,
                    ours::Fanout {
                        subscribers: 1,
                        publishers: 64,
                        topics: 1,
                    },
                )
            })
            .await,
        );
        let _ = (p.close().await, c.close().await);
    }

    if wanted(args, "memory") {
        for receivers in [1_usize, 10] {
            let s = if receivers == 1 {
                "memory-fanout-1"
            } else {
                "memory-fanout-10"
            };
            keep(
                &mut rows,
                &mut failures,
                "raw::tokio_broadcast",
                median(reps, || async {
                    let mut r = raw::tokio_broadcast(receivers, size, n).await?;
                    r.section = s;
                    Ok(r)
                })
                .await,
            );
            let t = open(memory_url).await?;
            keep(
                &mut rows,
                &mut failures,
                "ours::fanout_row",
                median(reps, || {
                    ours::fanout_row(
                        s,
                        "memory",
                        &t,
                        &t,
                        size,
                        n,
                        ours::Fanout {
                            subscribers: receivers,
                            publishers: 1,
                            topics: 1,
                        },
                    )
                })
                .await,
            );
            let _ = t.close().await;
        }
        keep(
            &mut rows,
            &mut failures,
            "raw::tokio_mpsc",
            median(reps, || raw::tokio_mpsc(1, size, n)).await,
        );
        let t = open(memory_url).await?;
        for p in [1, 64] {
            keep(
                &mut rows,
                &mut failures,
                "ours::publish_row",
                median(reps, || {
                    ours::publish_row("memory-publish", "memory", &t, size, n, p)
                })
                .await,
            );
        }
        let _ = t.close().await;
        let t = open(&format!("memory://?retention={}", n + 1)).await?;
        for members in [1, 4] {
            keep(
                &mut rows,
                &mut failures,
                "ours::group_row",
                median(reps, || {
                    ours::group_row("memory-group", "memory", &t, &t, size, n, members)
                })
                .await,
            );
        }
        let _ = t.close().await;
    }

    if wanted(args, "latency") {
        let s = "latency";
        let rate = 10_000;
        let m = (n / 4).max(rate);
        for (name, url) in [
            ("memory", memory_url),
            ("redis-streams", streams_url.as_str()),
            ("redis-pubsub", pubsub_url.as_str()),
        ] {
            let (p, c) = (open(url).await?, open(url).await?);
            let c = if name == "memory" { p.clone() } else { c };
            keep(
                &mut rows,
                &mut failures,
                "ours::latency_row",
                ours::latency_row(
                    s,
                    &format!(
                        "{name}{}",
                        if name == "memory" {
                            ""
                        } else {
                            " cross-replica"
                        }
                    ),
                    &p,
                    &c,
                    size,
                    rate,
                    m,
                )
                .await,
            );
            let _ = (p.close().await, c.close().await);
            flush().await;
        }
        keep(
            &mut rows,
            &mut failures,
            "raw::redis_rs_pubsub_latency",
            raw::redis_rs_pubsub_latency(&redis_url, size, rate, m).await,
        );
    }
    Ok((rows, failures))
}

#[cfg(feature = "peers")]
async fn peers_publish(
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
    redis_url: &str,
    size: usize,
    n: u64,
    reps: usize,
) -> Result<()> {
    keep(
        rows,
        failures,
        "omniqueue_publish",
        median(reps, || peers::omniqueue_publish(redis_url, size, n, 64)).await,
    );
    let nats = match peers::NatsServer::start() {
        Ok(nats) => nats,
        Err(e) => {
            failures.push(format!("nats-server: {e:#}"));
            return Ok(());
        }
    };
    keep(
        rows,
        failures,
        "nats_publish",
        median(reps, || peers::nats_publish(&nats, size, n, 64)).await,
    );
    Ok(())
}

#[cfg(not(feature = "peers"))]
async fn peers_publish(
    _: &mut Vec<Row>,
    _: &mut Vec<String>,
    _: &str,
    _: usize,
    _: u64,
    _: usize,
) -> Result<()> {
    eprintln!("bench-compare: built without the `peers` feature: no omniqueue / async-nats rows");
    Ok(())
}

#[cfg(feature = "peers")]
async fn peers_consume(
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
    redis_url: &str,
    size: usize,
    n: u64,
    reps: usize,
) -> Result<()> {
    keep(
        rows,
        failures,
        "omniqueue_consume",
        median(reps, || peers::omniqueue_consume(redis_url, size, n)).await,
    );
    let nats = match peers::NatsServer::start() {
        Ok(nats) => nats,
        Err(e) => {
            failures.push(format!("nats-server: {e:#}"));
            return Ok(());
        }
    };
    keep(
        rows,
        failures,
        "nats_consume",
        median(reps, || peers::nats_consume(&nats, size, n)).await,
    );
    Ok(())
}

#[cfg(not(feature = "peers"))]
async fn peers_consume(
    _: &mut Vec<Row>,
    _: &mut Vec<String>,
    _: &str,
    _: usize,
    _: u64,
    _: usize,
) -> Result<()> {
    Ok(())
}
