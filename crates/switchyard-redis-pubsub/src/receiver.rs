//! The receiving loop: one subscribing connection per transport carrying
//! every channel and pattern, kept in line with the local subscribers,
//! probed for liveness, re-established with jittered backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_core::Backoff;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::deliver::{
    Scratch, handle, handle_or_wait, is_lost_origin, lost_origin, wait_for_room,
};
use crate::outbox::sleep_or_cancel;
use crate::shared::{REFUSALS_KEPT, Refusal, Shared};
use crate::stats::{WarnKind, add, limited_warn};
use crate::subconn::{Change, ChangeError, Incoming, SubConn};

/// Channels or patterns per SUBSCRIBE / UNSUBSCRIBE command.
pub(crate) const CHUNK: usize = 256;
/// A sharded `sunsubscribe` on a single server's plain subscription.
const UNEXPECTED_SUNSUBSCRIBE: &str = "an unexpected sunsubscribe frame";
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
        let mut conn = match initial.take() {
            Some(p) => p,
            None => {
                let attempt = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = SubConn::open(&sh.client) => r,
                };
                match attempt {
                    Ok(p) => {
                        add(&sh.counters.reconnects, 1);
                        p
                    }
                    Err(e) => {
                        *sh.last_failure.lock() = Some(e.to_string());
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
        // The connection answered a PING when it was opened (a connection
        // through a black hole may look established without ever answering).
        let mut active = Active::default();
        let mut targets = Scratch::default();
        let synced = tokio::select! {
            _ = cancel.cancelled() => return,
            r = reconcile(&sh, &mut conn, &mut active, &mut targets) => r,
        };
        match synced {
            Ok(version) => {
                sh.link.send_modify(|s| {
                    s.connected = true;
                    s.synced = version;
                });
                backoff.reset();
                tracing::debug!(
                    channels = active.channels.len(),
                    patterns = active.globs.len(),
                    "redis pubsub: subscribing connection ready"
                );
            }
            Err(e) => {
                *sh.last_failure.lock() = Some(format!("re-subscribing: {e}"));
                limited_warn!(sh.warn, WarnKind::Link, error = %e,
                    "redis pubsub: re-subscribing failed; retrying");
                if sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return;
                }
                continue;
            }
        }
        let end = serve(&sh, &cancel, &mut conn, &mut active, &mut targets).await;
        sh.link.send_modify(|s| s.connected = false);
        match end {
            End::Cancelled => return,
            End::Closed => limited_warn!(
                sh.warn,
                WarnKind::Link,
                "redis pubsub: the subscribing connection closed; reconnecting (local delivery goes on)"
            ),
            End::Failed(reason) => {
                limited_warn!(sh.warn, WarnKind::Link, reason = %reason,
                    "redis pubsub: the subscribing connection failed; reconnecting (local delivery goes on)");
                *sh.last_failure.lock() = Some(reason);
            }
        }
        if sleep_or_cancel(backoff.next_delay(), &cancel).await {
            return;
        }
    }
}

/// Handles messages, subscription changes and probes until the connection
/// ends or the transport is dropped.
///
/// Liveness: after `probe_interval` without a probe, or when `health()`
/// asks, a `PING` is sent. The connection counts as dead when that `PING`
/// is unanswered *and* nothing at all arrived for `probe_timeout`: under
/// heavy load the reply queues behind the messages ahead of it, and a
/// connection that delivers messages is alive.
async fn serve(
    sh: &Shared,
    cancel: &CancellationToken,
    conn: &mut SubConn,
    active: &mut Active,
    targets: &mut Scratch,
) -> End {
    let cfg = &sh.config;
    // With Sentinel: leave for the new primary when the sentinels name one.
    let epoch = sh.client.primary_epoch();
    let mut follow = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut probing = false;
    let mut check_at = tokio::time::Instant::now() + cfg.probe_interval;
    let mut last_rx = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return End::Cancelled,
            _ = follow.tick(), if cfg.redis.sentinel.is_some() => {
                if sh.client.primary_epoch() != epoch {
                    return End::Failed("the sentinels name a new primary".into());
                }
            }
            _ = tokio::time::sleep_until(check_at) => {
                let now = tokio::time::Instant::now();
                if !probing {
                    if let Err(e) = conn.start_probe(cfg.probe_timeout).await {
                        return End::Failed(e);
                    }
                    probing = true;
                    check_at = now + cfg.probe_timeout;
                    continue;
                }
                // Before calling the connection dead: did anything arrive
                // that this loop has not read yet?
                match conn.next_ready() {
                    Some(Incoming::Message { channel, payload }) => {
                        if let Some(m) = handle_or_wait(sh, channel, payload, targets)
                            && wait_for_room(sh, &m, targets, cancel).await
                        {
                            return End::Cancelled;
                        }
                        last_rx = now;
                    }
                    Some(Incoming::ProbeAnswered) => {
                        probing = false;
                        answered(sh);
                        last_rx = now;
                    }
                    Some(Incoming::Failed(e)) => return End::Failed(e),
                    Some(Incoming::Closed) => return End::Closed,
                    Some(Incoming::Unsubscribed(_)) => return End::Failed(UNEXPECTED_SUNSUBSCRIBE.into()),
                    None => {}
                }
                if !probing {
                    check_at = now + cfg.probe_interval;
                    continue;
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
                match reconcile(sh, conn, active, targets).await {
                    Ok(version) => sh.link.send_modify(|s| s.synced = s.synced.max(version)),
                    Err(e) => return End::Failed(format!("updating subscriptions: {e}")),
                }
            }
            _ = sh.probe.notified() => {
                if !probing {
                    if let Err(e) = conn.start_probe(cfg.probe_timeout).await {
                        return End::Failed(e);
                    }
                    probing = true;
                    check_at = tokio::time::Instant::now() + cfg.probe_timeout;
                }
            }
            incoming = conn.next() => {
                match incoming {
                    Incoming::Message { channel, payload } => {
                        if let Some(m) = handle_or_wait(sh, channel, payload, targets)
                            && wait_for_room(sh, &m, targets, cancel).await
                        {
                            return End::Cancelled;
                        }
                    }
                    Incoming::ProbeAnswered => {
                        probing = false;
                        answered(sh);
                        check_at = tokio::time::Instant::now() + cfg.probe_interval;
                        continue;
                    }
                    Incoming::Failed(e) => return End::Failed(e),
                    Incoming::Closed => return End::Closed,
                    Incoming::Unsubscribed(_) => return End::Failed(UNEXPECTED_SUNSUBSCRIBE.into()),
                }
                for _ in 0..BURST {
                    match conn.next_ready() {
                        Some(Incoming::Message { channel, payload }) => {
                            if let Some(m) = handle_or_wait(sh, channel, payload, targets)
                                && wait_for_room(sh, &m, targets, cancel).await
                            {
                                return End::Cancelled;
                            }
                        }
                        Some(Incoming::ProbeAnswered) => {
                            probing = false;
                            answered(sh);
                            check_at = tokio::time::Instant::now() + cfg.probe_interval;
                        }
                        Some(Incoming::Failed(e)) => return End::Failed(e),
                        Some(Incoming::Closed) => return End::Closed,
                    Some(Incoming::Unsubscribed(_)) => return End::Failed(UNEXPECTED_SUNSUBSCRIBE.into()),
                        None => break,
                    }
                }
                last_rx = tokio::time::Instant::now();
                sh.rx_bursts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A liveness probe was answered: wakes `health()` calls waiting for one.
fn answered(sh: &Shared) {
    sh.link.send_modify(|s| s.pongs += 1);
}

/// Brings the connection's channels and patterns in line with the local
/// subscribers; returns the version now confirmed. Every command waits for
/// Redis's confirmation, at most `response_timeout`; messages arriving
/// meanwhile are delivered.
///
/// A command Redis refuses (an error reply, such as `NOPERM` for a channel
/// the ACL user may not use) is tried again name by name, and each name
/// still refused is recorded as a [`Refusal`] (for its `subscribe` call to
/// fail with) and left out; the connection goes on. Only a failure of the
/// connection itself (no confirmation in time, I/O) is an error.
async fn reconcile(
    sh: &Shared,
    conn: &mut SubConn,
    active: &mut Active,
    targets: &mut Scratch,
) -> Result<u64, String> {
    let mut on_msg = |channel: &[u8], payload: &[u8]| handle(sh, channel, payload, targets);
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
        let steps = [
            (Change::Subscribe, &add_ch),
            (Change::PSubscribe, &add_gl),
            (Change::Unsubscribe, &del_ch),
            (Change::PUnsubscribe, &del_gl),
        ];
        for (change, names) in steps {
            for chunk in names.chunks(CHUNK) {
                let done = match conn.change(change, chunk, timeout, &mut on_msg).await {
                    Ok(()) => chunk.to_vec(),
                    Err(ChangeError::Failed(e)) => return Err(e),
                    Err(ChangeError::Refused(reply)) if chunk.len() == 1 => {
                        refuse(sh, change, chunk, reply);
                        Vec::new()
                    }
                    // Find out which names Redis refuses.
                    Err(ChangeError::Refused(_)) => {
                        let mut done = Vec::with_capacity(chunk.len());
                        for name in chunk {
                            let one = std::slice::from_ref(name);
                            match conn.change(change, one, timeout, &mut on_msg).await {
                                Ok(()) => done.push(name.clone()),
                                Err(ChangeError::Failed(e)) => return Err(e),
                                Err(ChangeError::Refused(reply)) => refuse(sh, change, one, reply),
                            }
                        }
                        done
                    }
                };
                let held = match change {
                    Change::Subscribe
                    | Change::Unsubscribe
                    | Change::SSubscribe
                    | Change::SUnsubscribe => &mut active.channels,
                    Change::PSubscribe | Change::PUnsubscribe => &mut active.globs,
                };
                for name in done {
                    match change {
                        Change::Subscribe | Change::PSubscribe | Change::SSubscribe => {
                            held.insert(name)
                        }
                        Change::Unsubscribe | Change::PUnsubscribe | Change::SUnsubscribe => {
                            held.remove(&name)
                        }
                    };
                }
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

/// Records that Redis refused `names` with `reply`, for the `subscribe`
/// calls waiting on them. A refused name is left out and never retried:
/// only that `subscribe` fails. A denied command (not one channel or
/// pattern: every later subscription of its kind fails too) also turns
/// `health()` into `permission denied: …`.
pub(crate) fn refuse(sh: &Shared, change: Change, names: &[String], reply: String) {
    if switchyard_redis::denied::is_command_denial(&reply) {
        sh.denied
            .record(change.command(), &format!("{} ({reply})", names.join(" ")));
    }
    limited_warn!(sh.warn, WarnKind::Link, reply = %reply, names = ?names,
        "redis pubsub: redis refused a subscription change");
    let mut kept = sh.refusals.lock();
    let mut number = 0;
    sh.link.send_modify(|s| {
        s.refusals += 1;
        number = s.refusals;
    });
    if kept.len() >= REFUSALS_KEPT {
        kept.pop_front();
    }
    kept.push_back(Refusal {
        number,
        names: names.to_vec(),
        reply,
    });
}
