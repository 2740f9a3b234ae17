//! From a push frame to the local subscribers' queues: decoding, the
//! checks every frame passes, gap detection, and the bounded wait for room
//! in a full `Block` subscriber's buffer (`remote_wait`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_core::{MessageId, Topic};
use tokio_util::sync::CancellationToken;

use crate::envelope::{self, DecodeError, origin_hex};
use crate::gaps::Verdict;
use crate::registry::{Pushed, RemoteMessage, RemoteQueue};
use crate::shared::Shared;
use crate::stats::{WarnKind, add, limited_warn};

/// How far in the future an origin's boot epoch may lie (clock skew
/// between hosts) before its frames are dropped as malformed: one day.
const MAX_EPOCH_AHEAD_MS: u64 = 24 * 60 * 60 * 1000;

/// This host's clock in Unix milliseconds (0 if it is before 1970).
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a receiving loop keeps from one frame to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The queues the current frame goes to.
    pub(crate) targets: Vec<Arc<RemoteQueue>>,
    /// The last frame's topic: reused, without allocating or validating
    /// it again, while frames name the same topic.
    topic: Option<Topic>,
    /// This host's clock (Unix ms) as last read: read again only when a
    /// frame's epoch lies more than a day ahead of it (the clock moves
    /// forward, so an old reading only makes the check stricter).
    now_ms: u64,
}

/// Decodes one frame and hands it to the local subscribers it concerns,
/// dropping it for those whose buffer is full.
pub(crate) fn handle(sh: &Shared, channel: &[u8], payload: &[u8], scratch: &mut Scratch) {
    deliver(sh, channel, payload, scratch, false);
    scratch.targets.clear();
}

/// [`handle`], except that `Block` subscribers whose buffer is full (and
/// not stalled) are left in `targets` and the message returned: the caller
/// waits for room with [`wait_for_room`]. `targets` is empty when `None`
/// is returned.
pub(crate) fn handle_or_wait(
    sh: &Shared,
    channel: &[u8],
    payload: &[u8],
    scratch: &mut Scratch,
) -> Option<Arc<RemoteMessage>> {
    let may_wait = !sh.config.remote_wait.is_zero();
    let full = deliver(sh, channel, payload, scratch, may_wait);
    if full.is_none() {
        scratch.targets.clear();
    }
    full
}

/// Most `remote_wait`s one message may wait in all, however the
/// subscribers it waits for progress.
pub(crate) const WAIT_CAP: u32 = 10;

/// Waits for room in each queue of `targets` (full `Block` buffers) and
/// queues `msg` there. A queue whose subscriber took nothing for
/// `remote_wait` (counted from the start of this wait, or from its last
/// progress), or that is still full after [`WAIT_CAP`] × `remote_wait` in
/// all, is marked stalled and the message dropped for it (reported as a
/// gap signal). Returns true when cancelled meanwhile.
pub(crate) async fn wait_for_room(
    sh: &Shared,
    msg: &Arc<RemoteMessage>,
    scratch: &mut Scratch,
    cancel: &CancellationToken,
) -> bool {
    let bound = sh.config.remote_wait;
    let start = tokio::time::Instant::now();
    let cap = start + bound.saturating_mul(WAIT_CAP);
    // Progress is measured from the start: a subscriber read while the
    // loop waited for another one.
    let marks: Vec<u64> = scratch.targets.iter().map(|q| q.taken()).collect();
    for (q, mut mark) in scratch.targets.drain(..).zip(marks) {
        let mut deadline = (start + bound).min(cap);
        loop {
            let room = tokio::select! {
                biased;
                () = cancel.cancelled() => return true,
                r = tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| q.poll_room(cx))) => r,
            };
            if room.is_err() {
                let now = tokio::time::Instant::now();
                let taken = q.taken();
                if taken != mark && now < cap {
                    // Reading, only not fast enough yet: wait on. The loop
                    // is handing over traffic: `health()` must not take
                    // an unanswered probe for a dead connection meanwhile.
                    sh.rx_bursts.fetch_add(1, Ordering::Relaxed);
                    mark = taken;
                    deadline = (now + bound).min(cap);
                    continue;
                }
                q.stall();
                limited_warn!(sh.warn, WarnKind::Gap, topic = %msg.message.topic, remote_wait = ?bound,
                    "redis pubsub: a subscriber's buffer stayed full (nothing read for remote_wait); dropping what it has no room for (reported as a gap signal) until it has read half its buffer");
                if !q.push(msg) {
                    add(&sh.counters.remote_dropped, 1);
                }
                break;
            }
            // Another receiving loop (Redis Cluster) may have filled it again.
            match q.try_push(msg, true) {
                Pushed::Queued => break,
                Pushed::Dropped => {
                    add(&sh.counters.remote_dropped, 1);
                    break;
                }
                Pushed::Full => {}
            }
        }
    }
    false
}

/// Decodes one frame and pushes it to the local subscribers it concerns;
/// with `may_wait`, leaves the full `Block` queues in `targets` and returns
/// the message for them.
fn deliver(
    sh: &Shared,
    channel: &[u8],
    payload: &[u8],
    scratch: &mut Scratch,
    may_wait: bool,
) -> Option<Arc<RemoteMessage>> {
    let Ok(channel) = std::str::from_utf8(channel) else {
        add(&sh.counters.malformed, 1);
        limited_warn!(
            sh.warn,
            WarnKind::Malformed,
            "redis pubsub: dropping a message on a channel whose name is not UTF-8"
        );
        return None;
    };
    let env = match envelope::decode_with(payload, scratch.topic.as_ref()) {
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
            return None;
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
            return None;
        }
    };
    let on_its_channel = match &sh.partitions {
        // On a cluster: the channel of the topic's partition.
        Some(p) => p.channel_of(env.topic.as_str()) == channel,
        None => {
            channel
                .strip_prefix(sh.config.redis.namespace.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(env.topic.as_str())
        }
    };
    if !on_its_channel {
        add(&sh.counters.malformed, 1);
        limited_warn!(sh.warn, WarnKind::Malformed, channel, topic = %env.topic,
            "redis pubsub: dropping an envelope whose topic does not match its channel");
        return None;
    }
    if env.origin.id == sh.origin.id {
        add(&sh.counters.self_echoes, 1);
        return None;
    }
    if env.origin.epoch > scratch.now_ms.saturating_add(MAX_EPOCH_AHEAD_MS) {
        // The clock as last read says too far ahead: read it again.
        scratch.now_ms = now_millis();
    }
    if env.origin.epoch > scratch.now_ms.saturating_add(MAX_EPOCH_AHEAD_MS) {
        // Tracking only moves to newer epochs: a forged epoch far in the
        // future would make every real frame of that origin look stale.
        add(&sh.counters.malformed, 1);
        limited_warn!(
            sh.warn,
            WarnKind::Malformed,
            channel,
            epoch = env.origin.epoch,
            "redis pubsub: dropping an envelope whose boot epoch lies more than a day in the future"
        );
        return None;
    }
    if scratch.topic.as_ref() != Some(&env.topic) {
        scratch.topic = Some(env.topic.clone());
    }
    let targets = &mut scratch.targets;
    targets.clear();
    sh.registry.matching(&env.topic, targets);
    if targets.is_empty() {
        return None;
    }
    let verdict =
        sh.tracker
            .lock()
            .observe(env.origin.id, env.origin.epoch, &env.topic, env.topic_seq);
    match verdict {
        Verdict::Duplicate => {
            add(&sh.counters.duplicates, 1);
            return None;
        }
        Verdict::Stale => {
            add(&sh.counters.stale, 1);
            return None;
        }
        Verdict::Reset => {
            add(&sh.counters.implausible_gaps, 1);
            limited_warn!(sh.warn, WarnKind::Gap, origin = %origin_hex(env.origin.id), topic = %env.topic, seq = env.topic_seq,
                "redis pubsub: a jump in another replica's sequence numbers too large to be a real gap; counting from this message on (no gap reported)");
        }
        Verdict::Gap { from, to } => {
            let n = (to - from).saturating_add(1);
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
        origin: env.origin.id,
        message: env.into_message(),
        id,
    });
    add(&sh.counters.received, 1);
    targets.retain(|q| match q.try_push(&remote, may_wait) {
        Pushed::Queued => false,
        Pushed::Dropped => {
            add(&sh.counters.remote_dropped, 1);
            false
        }
        Pushed::Full => true,
    });
    if targets.is_empty() {
        None
    } else {
        Some(remote)
    }
}

/// The `origin` of an `Error::Lost`: `{instance id, 16 hex digits}/{topic}`.
pub(crate) fn lost_origin(id: u64, topic: &str) -> String {
    let mut s = origin_hex(id);
    s.push('/');
    s.push_str(topic);
    s
}

/// Whether `origin` is [`lost_origin`]`(id, topic)`, without building it.
pub(crate) fn is_lost_origin(origin: &str, id: u64, topic: &str) -> bool {
    origin.len() == 17 + topic.len()
        && origin.ends_with(topic)
        && origin.as_bytes().get(16) == Some(&b'/')
        && origin
            .get(..16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            == Some(id)
}
