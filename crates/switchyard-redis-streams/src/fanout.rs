//! Fan-out subscribers: XREAD from one cursor per stream, several streams
//! per call, on a dedicated blocking connection.
//!
//! - `Start::Latest`: each stream's last id, resolved once at subscribe time
//!   (`XREVRANGE key + - COUNT 1`, `0-0` for a stream that does not exist
//!   yet), so nothing published after `subscribe` returns is missed;
//! - `Start::Earliest`: `0-0`; `Start::After(id)`: `id`;
//! - streams a pattern discovers later were created after the subscription
//!   started and are read from their beginning.
//!
//! A malformed entry is skipped with a rate-limited warning and counted in
//! `stats().malformed`; the cursor moves past it. Entries trimmed by
//! retention before they were read are simply gone. After an error the
//! reader backs off (full jitter) and reopens its connection.
//!
//! On a Redis Cluster one `XREAD` may only name keys of one slot: the
//! subscriber runs one reader per stream, each on a dedicated connection to
//! the master serving that stream's slot (a `MOVED` or lost connection
//! refreshes the slot map before it reconnects), and a parent task that
//! follows the pattern and starts a reader for each new stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use switchyard_core::{
    Backoff, Delivery, Error, MessageId, Result, Start, Subscriber, SubscriberStats, Subscription,
    Topic,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::buffer::{LocalQueue, Pushed, SubStats};
use crate::discovery::TopicSource;
use crate::inner::{Inner, WarnLimiter, wait_shutdown};
use crate::wire::{self, RawEntry};

/// Starts a fan-out subscriber.
pub(crate) async fn subscribe(
    inner: Arc<Inner>,
    sub: Subscription,
    mut topics: TopicSource,
) -> Result<Box<dyn Subscriber>> {
    let initial = topics.current();
    let cursors = initial_cursors(&inner, &initial, sub.start_at()).await?;
    let cluster = inner.client.is_cluster();
    let conn = if cluster {
        None // each stream's reader connects to its slot's master
    } else {
        Some(
            inner
                .client
                .dedicated(Some(inner.config.blocking_response_timeout()))
                .await?,
        )
    };
    let queue = Arc::new(
        LocalQueue::new(sub.buffer_size(), sub.overflow_policy()).with_watch(
            switchyard_core::BufferWatch::new(
                &sub,
                sub.buffer_size(),
                format!("redis-streams fan-out {}", sub.filter()),
            ),
        ),
    );
    let stats = Arc::new(SubStats::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut streams = Streams::default();
    for (topic, cursor) in initial.iter().zip(cursors) {
        streams.add(&inner, topic.clone(), cursor);
    }
    let reader = Reader {
        shutdown: inner.shutdown_signal(),
        inner,
        queue: queue.clone(),
        stats: stats.clone(),
        topics,
        streams,
        stop: stop_rx,
        warn: WarnLimiter::default(),
        malformed_warn: WarnLimiter::default(),
        cluster_key: None,
        last_error: String::new(),
    };
    let task = if cluster {
        tokio::spawn(reader.run_cluster())
    } else {
        tokio::spawn(reader.run(conn))
    };
    Ok(Box::new(FanoutSubscriber {
        queue,
        stats,
        stop,
        task: Some(task),
    }))
}

/// The start cursor of each of `topics`.
async fn initial_cursors(inner: &Inner, topics: &[Topic], start: Start) -> Result<Vec<MessageId>> {
    match start {
        Start::Earliest => Ok(vec![MessageId::new(0, 0); topics.len()]),
        Start::After(id) => Ok(vec![id; topics.len()]),
        _ => last_ids(inner, topics).await,
    }
}

/// The id of each stream's last entry (`0-0` when the stream is empty or
/// does not exist), in one pipeline.
pub(crate) async fn last_ids(inner: &Inner, topics: &[Topic]) -> Result<Vec<MessageId>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    if inner.client.is_cluster() {
        // One slot per stream: no pipeline across them; 64 at once (the
        // cluster connection multiplexes them per master).
        let keys: Vec<String> = topics.iter().map(|t| inner.key(t)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(64) {
            let calls: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|key| last_id(inner.conn.clone(), key))
                .collect();
            for r in futures::future::join_all(calls).await {
                out.push(r?);
            }
        }
        return Ok(out);
    }
    let mut pipe = redis::pipe();
    for t in topics {
        pipe.cmd("XREVRANGE")
            .arg(inner.key(t))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
    }
    let mut conn = inner.conn.clone();
    let replies: Vec<Value> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| switchyard_redis::classify("XREVRANGE", &e))?;
    let mut out = Vec::with_capacity(topics.len());
    for reply in replies {
        let entries = wire::parse_entries(reply)
            .map_err(|m| Error::Backend(format!("redis XREVRANGE: {m}")))?;
        out.push(entries.first().map_or(MessageId::new(0, 0), |e| e.id));
    }
    Ok(out)
}

/// The id of the last entry of `key` (`0-0` when empty or missing).
async fn last_id(mut conn: switchyard_redis::SharedConnection, key: String) -> Result<MessageId> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .map_err(|e| switchyard_redis::classify("XREVRANGE", &e))?;
    let entries =
        wire::parse_entries(reply).map_err(|m| Error::Backend(format!("redis XREVRANGE: {m}")))?;
    Ok(entries.first().map_or(MessageId::new(0, 0), |e| e.id))
}

/// The streams a reader follows: keys, topics and cursors, in XREAD order.
#[derive(Default)]
struct Streams {
    keys: Vec<String>,
    topics: Vec<Topic>,
    cursors: Vec<MessageId>,
    index: HashMap<String, usize>,
}

impl Streams {
    fn add(&mut self, inner: &Inner, topic: Topic, cursor: MessageId) {
        let key = inner.key(&topic);
        if self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key.clone(), self.keys.len());
        self.keys.push(key);
        self.topics.push(topic);
        self.cursors.push(cursor);
    }

    fn contains(&self, inner: &Inner, topic: &Topic) -> bool {
        self.index.contains_key(&inner.key(topic))
    }

    fn xread(&self, count: usize, block: Duration) -> redis::Cmd {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg("STREAMS");
        for k in &self.keys {
            cmd.arg(k);
        }
        for c in &self.cursors {
            cmd.arg(c.to_string());
        }
        cmd
    }
}

struct Reader {
    inner: Arc<Inner>,
    queue: Arc<LocalQueue<Delivery>>,
    stats: Arc<SubStats>,
    topics: TopicSource,
    streams: Streams,
    stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    warn: WarnLimiter,
    malformed_warn: WarnLimiter,
    /// On a cluster: the one stream key this reader reads.
    cluster_key: Option<String>,
    /// The last read or connect error (for `health()`).
    last_error: String,
}

#[derive(PartialEq, Eq)]
enum Step {
    Continue,
    Stop,
}

impl Reader {
    /// On a cluster: one reader per stream (started as the pattern finds
    /// streams); the queue closes once they all ended.
    async fn run_cluster(mut self) {
        let mut children = Vec::new();
        let mut started = 0;
        loop {
            self.add_discovered();
            while started < self.streams.keys.len() {
                let i = started;
                let child = Reader {
                    inner: self.inner.clone(),
                    queue: self.queue.clone(),
                    stats: self.stats.clone(),
                    topics: TopicSource::fixed(Vec::new()),
                    streams: Streams {
                        keys: vec![self.streams.keys[i].clone()],
                        topics: vec![self.streams.topics[i].clone()],
                        cursors: vec![self.streams.cursors[i]],
                        index: HashMap::from([(self.streams.keys[i].clone(), 0)]),
                    },
                    stop: self.stop.clone(),
                    shutdown: self.shutdown.clone(),
                    warn: WarnLimiter::default(),
                    malformed_warn: WarnLimiter::default(),
                    cluster_key: Some(self.streams.keys[i].clone()),
                    last_error: String::new(),
                };
                children.push(tokio::spawn(child.read(None)));
                started += 1;
            }
            let mut stop = self.stop.clone();
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                () = self.topics.changed() => {}
                () = wait_shutdown(&mut stop) => break,
                () = wait_shutdown(&mut shutdown) => break,
            }
            if self.queue.is_consumer_closed() {
                break;
            }
        }
        for child in children {
            let _ = tokio::time::timeout(Duration::from_secs(1), child).await;
        }
        self.queue.close_producer();
    }

    async fn run(self, conn: Option<MultiplexedConnection>) {
        let queue = self.queue.clone();
        self.read(conn).await;
        queue.close_producer();
    }

    /// Reads until stopped.
    async fn read(mut self, conn: Option<MultiplexedConnection>) {
        let mut conn = conn;
        let mut opened_once = conn.is_some();
        // Whether this reader counts as down in `health()`.
        let mut down = false;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            if *self.stop.borrow() || *self.shutdown.borrow() || self.queue.is_consumer_closed() {
                break;
            }
            self.add_discovered();
            if self.streams.keys.is_empty() {
                // A pattern with no stream yet: wait for discovery.
                let mut stop = self.stop.clone();
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    () = self.topics.changed() => continue,
                    () = wait_shutdown(&mut stop) => break,
                    () = wait_shutdown(&mut shutdown) => break,
                }
            }
            if conn.is_none() {
                conn = self.reopen(&mut backoff, !opened_once).await;
                opened_once = true;
                if conn.is_none() {
                    if !down && !self.last_error.is_empty() {
                        self.inner.readers.went_down(&self.last_error);
                        down = true;
                    }
                    continue;
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let cmd = self
                .streams
                .xread(self.inner.config.read_count, self.inner.config.block);
            let mut stop = self.stop.clone();
            let mut shutdown = self.shutdown.clone();
            let reply = tokio::select! {
                r = cmd.query_async::<Value>(c) => r,
                () = wait_shutdown(&mut stop) => break,
                () = wait_shutdown(&mut shutdown) => break,
            };
            match reply {
                Ok(v) => {
                    backoff.reset();
                    if down {
                        self.inner.readers.came_back();
                        down = false;
                    }
                    match wire::parse_streams_reply(v) {
                        Ok(batches) => {
                            if self.deliver(batches).await == Step::Stop {
                                break;
                            }
                        }
                        Err(m) => {
                            self.warn_once(&format!("unreadable XREAD reply: {m}"));
                            conn = None;
                        }
                    }
                }
                Err(e) => {
                    let err = if switchyard_redis::denied::is_noperm(&e) {
                        // Reported by health(); retried at the backoff's
                        // slowest pace only, so a fixed ACL resumes it.
                        let text = self.inner.denied.record("XREAD", &e.to_string());
                        format!("permission denied: {text}")
                    } else {
                        switchyard_redis::classify("XREAD", &e).to_string()
                    };
                    self.warn_once(&err);
                    if !down {
                        self.inner.readers.went_down(&err);
                        down = true;
                    }
                    // Reopen after transient errors (the connection may be
                    // gone); back off in any case so nothing spins.
                    conn = None;
                    if let Some(router) = self.inner.client.router() {
                        // MOVED, a failover or a lost node.
                        let _ = router.refresh().await;
                    }
                }
            }
        }
        if down {
            self.inner.readers.came_back();
        }
    }

    /// Adds streams the pattern discovered since the last look; they start
    /// at `0-0` (they were created after the subscription started).
    fn add_discovered(&mut self) {
        if !self.topics.is_pattern() || self.cluster_key.is_some() {
            return;
        }
        let current = self.topics.current();
        for t in current.iter() {
            if !self.streams.contains(&self.inner, t) {
                self.streams
                    .add(&self.inner, t.clone(), MessageId::new(0, 0));
            }
        }
    }

    /// Sleeps a backoff delay (not before the `first` connection of a
    /// reader), then opens a new dedicated connection; `None` when that
    /// failed (or the reader is stopping).
    async fn reopen(
        &mut self,
        backoff: &mut Backoff,
        first: bool,
    ) -> Option<MultiplexedConnection> {
        let delay = if first {
            Duration::ZERO
        } else {
            backoff.next_delay()
        };
        let mut stop = self.stop.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wait_shutdown(&mut stop) => return None,
            () = wait_shutdown(&mut shutdown) => return None,
        }
        let timeout = self.inner.config.blocking_response_timeout();
        let opened = match &self.cluster_key {
            Some(key) => match self.inner.client.config_for_key(key.as_bytes()).await {
                Ok(node) => match switchyard_redis::RedisClient::new(node) {
                    Ok(c) => c.dedicated(Some(timeout)).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            None => self.inner.client.dedicated(Some(timeout)).await,
        };
        match opened {
            Ok(c) => {
                if !first {
                    self.inner
                        .stats
                        .reconnects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(redis = %self.inner.config.redis.addr(), "fan-out reader reconnected");
                }
                Some(c)
            }
            Err(e) => {
                self.warn_once(&e.to_string());
                None
            }
        }
    }

    fn warn_once(&mut self, what: &str) {
        self.last_error = what.to_owned();
        if let Some(suppressed) = self.warn.check() {
            tracing::warn!(
                redis = %self.inner.config.redis.addr(),
                error = what,
                suppressed,
                "redis-streams fan-out reader failed; reconnecting with backoff"
            );
        }
    }

    async fn deliver(&mut self, batches: Vec<(String, Vec<RawEntry>)>) -> Step {
        for (key, entries) in batches {
            let Some(&i) = self.streams.index.get(&key) else {
                continue;
            };
            let topic = self.streams.topics[i].clone();
            for entry in entries {
                self.streams.cursors[i] = entry.id;
                let Some(fields) = entry.fields else { continue };
                match wire::decode(&topic, entry.id, fields) {
                    Ok(message) => {
                        let d = Delivery::new(message, entry.id, 1, None);
                        let pushed = {
                            let mut stop = self.stop.clone();
                            let mut shutdown = self.shutdown.clone();
                            tokio::select! {
                                p = self.queue.push(d) => p,
                                () = wait_shutdown(&mut stop) => return Step::Stop,
                                () = wait_shutdown(&mut shutdown) => return Step::Stop,
                            }
                        };
                        match pushed {
                            Pushed::Queued => {}
                            Pushed::DroppedOldest(_) | Pushed::DroppedNewest(_) => {
                                SubStats::bump(&self.stats.dropped);
                            }
                            Pushed::Closed(_) => return Step::Stop,
                        }
                    }
                    Err(m) => {
                        SubStats::bump(&self.stats.malformed);
                        if let Some(suppressed) = self.malformed_warn.check() {
                            tracing::warn!(
                                topic = %topic,
                                id = %entry.id,
                                reason = %m,
                                suppressed,
                                "skipping a malformed stream entry"
                            );
                        }
                    }
                }
            }
        }
        Step::Continue
    }
}

/// The application's end of a fan-out subscription.
struct FanoutSubscriber {
    queue: Arc<LocalQueue<Delivery>>,
    stats: Arc<SubStats>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Subscriber for FanoutSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        self.queue.poll_pop(cx).map(|item| {
            item.map(|d| {
                SubStats::bump(&self.stats.received);
                Ok(d)
            })
        })
    }

    fn stats(&self) -> SubscriberStats {
        let mut s = self.stats.snapshot();
        s.buffered = self.queue.len() as u64;
        s.capacity = self.queue.capacity() as u64;
        s
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.stop.send_replace(true);
        self.queue.close_consumer();
        if let Some(task) = self.task.take() {
            // The reader stops at its next await point; don't wait long.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        Ok(())
    }
}

impl Drop for FanoutSubscriber {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.queue.close_consumer();
    }
}
