//! The receiving loop: one subscribing connection per transport carrying
//! every channel and pattern, kept in line with the local subscribers,
//! probed for liveness, re-established with jittered backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use switchyard_core::{Backoff, MessageId};
use switchyard_redis::redis::aio::{PubSubSink, PubSubStream};
use switchyard_redis::redis::{Msg, RedisError, Value};
use tokio_util::sync::CancellationToken;

use crate::envelope::{self, DecodeError, origin_hex};
use crate::gaps::Verdict;
use crate::outbox::sleep_or_cancel;
use crate::registry::{RemoteMessage, RemoteQueue};
use crate::shared::{LinkState, Shared};
use crate::stats::{WarnKind, add, limited_warn};

/// Channels or patterns per SUBSCRIBE / UNSUBSCRIBE command.
const CHUNK: usize = 256;
/// Messages handled per wake-up before other events get a turn.
const BURST: usize = 512;

/// Why a connection was given up.
#[derive(Debug)]
enum End {
    Cancelled,
    Closed,
    Failed(String),
}

/// What the current connection holds.
#[derive(Default)]
struct Active {
    channels: HashSet<String>,
    globs: HashSet<String>,
}

/// The receiving loop; returns when cancelled.
pub(crate) async fn run_receiver(sh: Arc<Shared>, cancel: CancellationToken) {
    let cfg = &sh.config;
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut initial = sh.initial.lock().take();
    loop {
        let pubsub = match initial.take() {
            Some(p) => p,
            None => {
                let attempt = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = sh.client.pubsub() => r,
                };
                match attempt {
                    Ok(p) => {
                        add(&sh.counters.reconnects, 1);
                        p
                    }
                    Err(e) => {
                        limited_warn!(sh.warn, WarnKind::Link, error = %e,
                            "redis pubsub: cannot reconnect the subscribing connection; delivering locally only");
                        if sleep_or_cancel(backoff.next_delay(), &cancel).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut active = Active::default();
        // A PING first: a connection through a black hole may look
        // established without ever answering.
        let synced = tokio::select! {
            _ = cancel.cancelled() => return,
            r = async {
                confirm("PING", cfg.probe_timeout, async { sink.ping::<Value>().await.map(drop) }).await?;
                reconcile(&sh, &mut sink, &mut active).await
            } => r,
        };
        match synced {
            Ok(version) => {
                *sh.last_alive.lock() = Instant::now();
                sh.link.send_replace(LinkState {
                    connected: true,
                    synced: version,
                });
                backoff.reset();
                tracing::debug!(
                    channels = active.channels.len(),
                    patterns = active.globs.len(),
                    "redis pubsub: subscribing connection ready"
                );
            }
            Err(e) => {
                limited_warn!(sh.warn, WarnKind::Link, error = %e,
                    "redis pubsub: re-subscribing failed; retrying");
                if sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return;
                }
                continue;
            }
        }
        let end = serve(&sh, &cancel, &mut sink, &mut stream, &mut active).await;
        sh.link.send_modify(|s| s.connected = false);
        match end {
            End::Cancelled => return,
            End::Closed => limited_warn!(
                sh.warn,
                WarnKind::Link,
                "redis pubsub: the subscribing connection closed; reconnecting (local delivery goes on)"
            ),
            End::Failed(reason) => limited_warn!(sh.warn, WarnKind::Link, reason = %reason,
                "redis pubsub: the subscribing connection failed; reconnecting (local delivery goes on)"),
        }
        if sleep_or_cancel(backoff.next_delay(), &cancel).await {
            return;
        }
    }
}

/// Handles messages, subscription changes and probes until the connection
/// ends or the transport is dropped.
///
/// Liveness: after `probe_interval` without a probe, a `PING` is sent. The
/// connection counts as dead when that `PING` is unanswered *and* nothing
/// at all arrived for `probe_timeout`: under heavy load the reply queues
/// behind the messages ahead of it, and a connection that delivers
/// messages is alive.
async fn serve(
    sh: &Shared,
    cancel: &CancellationToken,
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    active: &mut Active,
) -> End {
    let cfg = &sh.config;
    let mut ping: Option<BoxFuture<'static, Result<Value, RedisError>>> = None;
    let mut check_at = tokio::time::Instant::now() + cfg.probe_interval;
    let mut last_rx = tokio::time::Instant::now();
    let mut targets = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return End::Cancelled,
            reply = pending_or(&mut ping) => {
                ping = None;
                match reply {
                    Ok(_) => {
                        *sh.last_alive.lock() = Instant::now();
                        check_at = tokio::time::Instant::now() + cfg.probe_interval;
                    }
                    Err(e) => return End::Failed(format!("PING failed: {e}")),
                }
            }
            _ = tokio::time::sleep_until(check_at) => {
                let now = tokio::time::Instant::now();
                if ping.is_none() {
                    let mut probe = sink.clone();
                    ping = Some(async move { probe.ping::<Value>().await }.boxed());
                    check_at = now + cfg.probe_timeout;
                    continue;
                }
                // Before calling the connection dead: did messages arrive
                // that this loop has not read yet?
                match tokio::task::unconstrained(stream.next()).now_or_never() {
                    Some(Some(msg)) => {
                        handle(sh, &msg, &mut targets);
                        last_rx = now;
                    }
                    Some(None) => return End::Closed,
                    None => {}
                }
                let late = now.duration_since(check_at);
                if late > cfg.probe_timeout / 4 {
                    // The timer fired late: this process was starved of
                    // CPU, so silence says nothing about the connection.
                    // Give it another probe_timeout.
                    check_at = now + cfg.probe_timeout;
                } else if now.duration_since(last_rx) >= cfg.probe_timeout {
                    return End::Failed(format!(
                        "no PING reply and no message within {:?} (half-open connection?)",
                        cfg.probe_timeout
                    ));
                } else {
                    check_at = last_rx + cfg.probe_timeout;
                }
            }
            _ = sh.registry.changed.notified() => {
                match reconcile(sh, sink, active).await {
                    Ok(version) => sh.link.send_modify(|s| s.synced = s.synced.max(version)),
                    Err(e) => return End::Failed(format!("updating subscriptions: {e}")),
                }
            }
            msg = stream.next() => {
                let Some(msg) = msg else { return End::Closed };
                handle(sh, &msg, &mut targets);
                for _ in 0..BURST {
                    match tokio::task::unconstrained(stream.next()).now_or_never() {
                        Some(Some(msg)) => handle(sh, &msg, &mut targets),
                        Some(None) => return End::Closed,
                        None => break,
                    }
                }
                last_rx = tokio::time::Instant::now();
                *sh.last_alive.lock() = Instant::now();
            }
        }
    }
}

/// Awaits the future in `slot`, or forever when there is none.
async fn pending_or<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Brings the connection's channels and patterns in line with the local
/// subscribers; returns the version now confirmed. Every command waits for
/// Redis's confirmation, at most `response_timeout`.
async fn reconcile(sh: &Shared, sink: &mut PubSubSink, active: &mut Active) -> Result<u64, String> {
    loop {
        let desired = sh.registry.desired();
        let add_ch: Vec<String> = desired
            .channels
            .difference(&active.channels)
            .cloned()
            .collect();
        let del_ch: Vec<String> = active
            .channels
            .difference(&desired.channels)
            .cloned()
            .collect();
        let add_gl: Vec<String> = desired.globs.difference(&active.globs).cloned().collect();
        let del_gl: Vec<String> = active.globs.difference(&desired.globs).cloned().collect();
        let timeout = sh.config.redis.response_timeout;
        for chunk in add_ch.chunks(CHUNK) {
            confirm("SUBSCRIBE", timeout, sink.subscribe(chunk)).await?;
            active.channels.extend(chunk.iter().cloned());
        }
        for chunk in add_gl.chunks(CHUNK) {
            confirm("PSUBSCRIBE", timeout, sink.psubscribe(chunk)).await?;
            active.globs.extend(chunk.iter().cloned());
        }
        for chunk in del_ch.chunks(CHUNK) {
            confirm("UNSUBSCRIBE", timeout, sink.unsubscribe(chunk)).await?;
            for c in chunk {
                active.channels.remove(c);
            }
        }
        for chunk in del_gl.chunks(CHUNK) {
            confirm("PUNSUBSCRIBE", timeout, sink.punsubscribe(chunk)).await?;
            for g in chunk {
                active.globs.remove(g);
            }
        }
        if !del_ch.is_empty() || !del_gl.is_empty() {
            // Forget sequence numbers of topics nobody listens to any more,
            // so that subscribing again later reports no false gap.
            let registry = &sh.registry;
            sh.tracker.lock().retain_topics(|t| registry.has_match(t));
        }
        if sh.registry.version() == desired.version {
            return Ok(desired.version);
        }
    }
}

async fn confirm(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<(), RedisError>>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: not confirmed within {timeout:?}")),
    }
}

/// Decodes one frame and hands it to the local subscribers it concerns.
fn handle(sh: &Shared, msg: &Msg, targets: &mut Vec<Arc<RemoteQueue>>) {
    let channel = msg.get_channel_name();
    let env = match envelope::decode(msg.get_payload_bytes()) {
        Ok(env) => env,
        Err(DecodeError::UnknownVersion(version)) => {
            add(&sh.counters.unknown_version, 1);
            limited_warn!(
                sh.warn,
                WarnKind::UnknownVersion,
                channel,
                version,
                "redis pubsub: dropping an envelope of an unknown version (a newer replica?)"
            );
            return;
        }
        Err(DecodeError::Malformed(reason)) => {
            add(&sh.counters.malformed, 1);
            limited_warn!(
                sh.warn,
                WarnKind::Malformed,
                channel,
                reason,
                "redis pubsub: dropping a malformed frame"
            );
            return;
        }
    };
    let on_its_channel = channel
        .strip_prefix(sh.config.redis.namespace.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(env.topic.as_str());
    if !on_its_channel {
        add(&sh.counters.malformed, 1);
        limited_warn!(sh.warn, WarnKind::Malformed, channel, topic = %env.topic,
            "redis pubsub: dropping an envelope whose topic does not match its channel");
        return;
    }
    if env.origin.id == sh.origin.id {
        add(&sh.counters.self_echoes, 1);
        return;
    }
    targets.clear();
    sh.registry.matching(&env.topic, targets);
    if targets.is_empty() {
        return;
    }
    let verdict =
        sh.tracker
            .lock()
            .observe(env.origin.id, env.origin.epoch, &env.topic, env.topic_seq);
    match verdict {
        Verdict::Duplicate => {
            add(&sh.counters.duplicates, 1);
            return;
        }
        Verdict::Gap { from, to } => {
            let n = to - from + 1;
            add(&sh.counters.gaps, 1);
            add(&sh.counters.lost, n);
            let origin = lost_origin(env.origin.id, env.topic.as_str());
            limited_warn!(sh.warn, WarnKind::Gap, origin = %origin, from, to, subscribers = targets.len(),
                "redis pubsub: messages from another replica were lost; reporting the gap to subscribers");
            for q in targets.iter() {
                q.push_lost(&origin, from, to);
            }
        }
        Verdict::First | Verdict::Next => {}
    }
    let id = MessageId::from_seq(env.topic_seq);
    let remote = Arc::new(RemoteMessage {
        message: env.into_message(),
        id,
    });
    add(&sh.counters.received, 1);
    for q in targets.iter() {
        if !q.push(&remote) {
            add(&sh.counters.remote_dropped, 1);
        }
    }
    targets.clear();
}

/// The `origin` of an `Error::Lost`: `{instance id, 16 hex digits}/{topic}`.
pub(crate) fn lost_origin(id: u64, topic: &str) -> String {
    let mut s = origin_hex(id);
    s.push('/');
    s.push_str(topic);
    s
}
