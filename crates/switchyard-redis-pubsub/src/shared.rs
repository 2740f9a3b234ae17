//! State shared by a transport, its subscribers and its background tasks,
//! and the supervisor that restarts a task that panicked.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use switchyard_core::Backoff;
use switchyard_redis::RedisClient;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::PubSubConfig;
use crate::envelope::Origin;
use crate::gaps::GapTracker;
use crate::outbox::{Outbox, sleep_or_cancel};
use crate::partition::Partitions;
use crate::registry::Registry;
use crate::stats::{Counters, WarnLimiter, add};
use crate::subconn::SubConn;

/// The state of the subscribing connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkState {
    /// A subscribing connection is up.
    pub(crate) connected: bool,
    /// The version of the desired channels and patterns that Redis has
    /// confirmed on it (refused names excepted, see [`Refusal`]).
    pub(crate) synced: u64,
    /// Liveness probes answered so far.
    pub(crate) pongs: u64,
    /// Subscription changes Redis refused so far (the last few are in
    /// [`Shared::refusals`]).
    pub(crate) refusals: u64,
}

impl LinkState {
    /// Up, nothing confirmed or answered yet.
    pub(crate) fn up() -> Self {
        LinkState {
            connected: true,
            synced: 0,
            pongs: 0,
            refusals: 0,
        }
    }
}

/// A subscription change Redis refused with an error reply (`NOPERM` for a
/// channel the ACL user may not use, say).
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// Its number: [`LinkState::refusals`] once it was recorded.
    pub(crate) number: u64,
    /// The channels or patterns refused.
    pub(crate) names: Vec<String>,
    /// The command and Redis' reply.
    pub(crate) reply: String,
}

/// Refusals kept for `subscribe` calls to find theirs.
pub(crate) const REFUSALS_KEPT: usize = 64;

/// Everything the background tasks need. Holds no reference to the
/// transport itself, so dropping the transport stops the tasks.
pub(crate) struct Shared {
    pub(crate) config: PubSubConfig,
    pub(crate) client: RedisClient,
    pub(crate) origin: Origin,
    pub(crate) origin_hex: String,
    pub(crate) registry: Arc<Registry>,
    pub(crate) outbox: Outbox,
    pub(crate) tracker: Mutex<GapTracker>,
    pub(crate) counters: Counters,
    pub(crate) warn: WarnLimiter,
    pub(crate) link: watch::Sender<LinkState>,
    /// `health()` asks the receiving loop for a liveness probe.
    pub(crate) probe: Notify,
    /// Bursts of frames the receiving loop has read: traffic proves the
    /// connection alive when a probe's reply is queued behind it.
    pub(crate) rx_bursts: AtomicU64,
    /// The last subscription changes Redis refused, at most
    /// [`REFUSALS_KEPT`], oldest first.
    pub(crate) refusals: Mutex<VecDeque<Refusal>>,
    /// The latest `NOPERM` (a refused PUBLISH, SUBSCRIBE or PSUBSCRIBE),
    /// reported by `health()`.
    pub(crate) denied: switchyard_redis::denied::Denials,
    /// Why the subscribing connection last failed or could not be opened.
    pub(crate) last_failure: Mutex<Option<String>>,
    /// The connection opened by `connect`, handed to the receiving loop.
    pub(crate) initial: Mutex<Option<SubConn>>,
    /// On a Redis Cluster: the partitions topics map onto.
    pub(crate) partitions: Option<Arc<Partitions>>,
}

impl Shared {
    /// Where Redis is, for messages: `redis at host:port` or `redis
    /// cluster at h1:p1,h2:p2`.
    pub(crate) fn describe(&self) -> String {
        match &self.config.redis.cluster {
            Some(c) => format!("redis cluster at {}", c.addrs()),
            None => format!("redis at {}", self.config.redis.addr()),
        }
    }
}

/// Runs `task` on its own Tokio task and starts it again (after a jittered
/// delay, counted in `loop_restarts`) whenever it panics. Ends when the
/// task returns or `cancel` fires.
pub(crate) fn supervise<F, Fut>(
    name: &'static str,
    sh: Arc<Shared>,
    cancel: CancellationToken,
    task: F,
) -> JoinHandle<()>
where
    F: Fn(Arc<Shared>, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = Backoff::new(sh.config.reconnect_min, sh.config.reconnect_max);
        loop {
            match tokio::spawn(task(sh.clone(), cancel.clone())).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    add(&sh.counters.loop_restarts, 1);
                    tracing::error!(
                        task = name,
                        "redis pubsub: the {name} loop panicked; restarting it"
                    );
                    if cancel.is_cancelled() || sleep_or_cancel(backoff.next_delay(), &cancel).await
                    {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::envelope::origin_hex;

    fn shared() -> Arc<Shared> {
        let config = PubSubConfig::default();
        let (link, _) = watch::channel(LinkState {
            connected: false,
            ..LinkState::up()
        });
        Arc::new(Shared {
            client: RedisClient::new(config.redis.clone()).unwrap(),
            origin: Origin { id: 1, epoch: 1 },
            origin_hex: origin_hex(1),
            registry: Arc::new(Registry::new("ns", None)),
            outbox: Outbox::new(1, usize::MAX),
            tracker: Mutex::new(GapTracker::new(1)),
            counters: Counters::default(),
            warn: WarnLimiter::new(Duration::from_secs(10)),
            link,
            probe: Notify::new(),
            rx_bursts: AtomicU64::new(0),
            refusals: Mutex::new(VecDeque::new()),
            denied: switchyard_redis::denied::Denials::new(),
            last_failure: Mutex::new(None),
            initial: Mutex::new(None),
            partitions: None,
            config,
        })
    }

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_and_counted_until_cancelled() {
        let sh = shared();
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = supervise("test", sh.clone(), cancel.clone(), move |_, cancel| {
            let runs = counted.clone();
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(n >= 3, "injected panic {n}");
                cancel.cancelled().await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            sh.counters
                .loop_restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
