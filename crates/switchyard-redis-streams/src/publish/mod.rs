//! Publishing: a writer task that coalesces concurrent `publish` calls (and
//! `publish_batch` calls, each kept whole and in order) onto pipelines.
//!
//! Callers put their messages on a bounded queue (back-pressure when full).
//! The writer takes everything queued, up to `writer_batch` messages,
//! encodes one pipeline of XADDs and sends it; up to `writer_in_flight`
//! pipelines wait for replies at once, so the next batch is prepared while
//! Redis works on the previous one. Each caller gets its entry id.
//!
//! The writer uses a lean connection of its own ([`lean`]: hand-encoded
//! XADD, replies parsed only as far as the id), the same code over plain
//! TCP and over TLS. On a Redis Cluster it keeps one such connection per
//! master and splits each batch by the master serving each stream's slot
//! ([`cluster`]); an XADD answered `MOVED` or `ASK` goes out again to the
//! node the slot map names after a refresh.

mod cluster;
mod keycache;
mod lean;
pub(crate) mod resp;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_core::{CircuitBreaker, Error, Limits, Message, MessageId, Result};
use switchyard_redis::RedisConfig;
use switchyard_redis::SharedConnection;
use tokio::sync::{mpsc, oneshot};

use crate::config::StreamsConfig;
use crate::inner::Stats;
use crate::retention::{now_ms, trim};

use self::keycache::KeyCache;
use self::lean::LeanConn;
use self::resp::Reply;

/// Largest write buffer kept between batches.
const KEEP_BUF: usize = 1 << 20;

enum Job {
    One(Message, oneshot::Sender<Result<MessageId>>),
    Batch(Vec<Message>, oneshot::Sender<Result<Vec<MessageId>>>),
    Close(oneshot::Sender<()>),
}

/// Handle to the writer task. Dropping every handle ends the task after it
/// finished what was queued.
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task. It opens its own lean connection (TCP or
    /// TLS), lazily and again after a failure.
    pub(crate) fn spawn(
        conn: SharedConnection,
        config: &StreamsConfig,
        breaker: Arc<CircuitBreaker>,
        stats: Arc<Stats>,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(config.writer_queue);
        let cluster = conn
            .client()
            .router()
            .cloned()
            .map(|router| cluster::State::new(router, config.writer_queue));
        let task = WriterTask {
            conn: None,
            cluster,
            shared: conn,
            lean_epoch: 0,
            wait_replicas: config.wait_replicas,
            wait_timeout: config.wait_timeout,
            redis: config.redis.clone(),
            ctx: Arc::new(Ctx { breaker, stats }),
            keys: KeyCache::new(config),
            batch: config.writer_batch,
            in_flight: config.writer_in_flight,
            ever_connected: false,
        };
        tokio::spawn(task.run(rx));
        Writer { tx }
    }

    /// Queues `message` (waiting while the queue is full) and waits for its
    /// id. A message over [`Limits::DEFAULT`] is refused with
    /// `Error::InvalidMessage` before it is queued: consumers would drop
    /// what the decoder does not accept (see [`wire`](crate::wire)).
    pub(crate) async fn publish(&self, message: Message) -> Result<MessageId> {
        self.enqueue(message).await?.wait().await
    }

    /// Queues `message` (waiting while the queue is full) and returns at
    /// once with the receiver of its id: the first stage of
    /// `publish_queued`. Dropping the receiver does not take the message
    /// back; the writer publishes it and its answer is discarded. Checked
    /// against [`Limits::DEFAULT`] as `publish` does.
    pub(crate) async fn enqueue(&self, message: Message) -> Result<Ack> {
        Limits::DEFAULT.check(&message)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::One(message, reply))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(Ack(rx))
    }

    /// Queues `messages` as one unit (one pipeline, in order) and waits for
    /// their ids. Every message is checked against [`Limits::DEFAULT`]
    /// first: one over a limit fails the call and nothing is queued. An
    /// error from Redis for any of them fails the call; the others may have
    /// been published.
    pub(crate) async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        Limits::DEFAULT.check_batch(&messages)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Batch(messages, reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Refuses new messages, publishes what is queued, and waits (up to
    /// `timeout`) until every pipeline in flight is answered.
    pub(crate) async fn close(&self, timeout: Duration) -> Result<()> {
        let (done, rx) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Job::Close(done)).await.is_ok() {
                let _ = rx.await;
            }
        };
        tokio::time::timeout(timeout, flushed)
            .await
            .map_err(|_| Error::Timeout {
                operation: "flushing the redis-streams writer on close".into(),
                after: timeout,
            })
    }
}

/// The second stage of a queued publish: the writer's answer for one
/// message. A writer that ends without answering (the transport closed
/// and dropped) resolves it to `Error::Closed`.
pub(crate) struct Ack(oneshot::Receiver<Result<MessageId>>);

impl Ack {
    /// Waits for the writer's answer.
    pub(crate) async fn wait(self) -> Result<MessageId> {
        self.0.await.unwrap_or(Err(Error::Closed))
    }
}

/// Breaker and counters, shared by the writer and its reader.
struct Ctx {
    breaker: Arc<CircuitBreaker>,
    stats: Arc<Stats>,
}

/// Who waits for replies.
enum Waiter {
    One(oneshot::Sender<Result<MessageId>>),
    /// One message of a `publish_batch` split over several masters.
    Part(Arc<cluster::Join>, usize),
    Batch {
        reply: oneshot::Sender<Result<Vec<MessageId>>>,
        want: usize,
        ids: Vec<MessageId>,
        error: Option<Error>,
    },
}

/// The callers of one pipeline, completed in order as replies arrive.
struct Pending {
    waiters: VecDeque<Waiter>,
    remaining: usize,
    ok: u64,
    transient: bool,
    ctx: Arc<Ctx>,
    /// `WAIT replicas timeout` ends the pipeline: the XADD results are held
    /// until its reply says enough replicas have them.
    wait: Option<(u32, Duration)>,
    held: Vec<Result<MessageId>>,
    /// On a cluster: the message of each XADD still to be answered (one
    /// waiter each), and where to send one answered `MOVED`/`ASK`.
    msgs: VecDeque<(Message, u32)>,
    redirect: Option<mpsc::Sender<cluster::Redirect>>,
}

impl Pending {
    /// An empty pipeline with room for `waiters` callers.
    fn new(ctx: Arc<Ctx>, waiters: usize) -> Self {
        Pending {
            waiters: VecDeque::with_capacity(waiters),
            remaining: 0,
            ok: 0,
            transient: false,
            ctx,
            wait: None,
            held: Vec::new(),
            msgs: VecDeque::new(),
            redirect: None,
        }
    }

    /// The pipeline ends with `WAIT replicas timeout`: callers hear back
    /// once its reply came.
    fn wait_for(&mut self, replicas: u32, timeout: Duration) {
        self.wait = Some((replicas, timeout));
        self.held.reserve(self.remaining);
    }

    /// Takes one XADD result, or holds it until the WAIT reply.
    fn accept(&mut self, result: Result<MessageId>) {
        if self.wait.is_some() {
            self.held.push(result);
        } else {
            self.deliver_result(result);
        }
    }

    /// Whether the next reply is WAIT's (every XADD reply is held).
    fn expects_wait_reply(&self) -> bool {
        self.wait.is_some() && self.held.len() >= self.remaining
    }

    /// WAIT's reply (`Ok(replicas that confirmed)`, or why it failed):
    /// releases the held results, failing the successful ones when fewer
    /// replicas than asked confirmed them.
    fn wait_replied(&mut self, answer: std::result::Result<i64, String>) {
        let Some((want, timeout)) = self.wait.take() else {
            return;
        };
        let shortfall = match answer {
            Ok(n) if n >= i64::from(want) => None,
            Ok(n) => Some(format!(
                "only {n} of {want} replica(s) confirmed it within {timeout:?}"
            )),
            Err(why) => Some(format!("WAIT failed: {why}")),
        };
        for result in std::mem::take(&mut self.held) {
            let result = match (&shortfall, result) {
                (Some(why), Ok(_)) => {
                    self.transient = true;
                    Err(Error::Transient(format!(
                        "redis XADD: written on the primary, but {why} (wait_replicas): a failover may lose it; publishing it again may duplicate it"
                    )))
                }
                (_, r) => r,
            };
            self.deliver_result(result);
        }
    }

    fn push(&mut self, waiter: Waiter, replies: usize) {
        self.waiters.push_back(waiter);
        self.remaining += replies;
    }

    fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// Hands the next reply to its caller.
    fn deliver(&mut self, reply: Reply) {
        if self.expects_wait_reply() {
            let answer = match reply {
                Reply::Int(n) => Ok(n),
                Reply::Error(text) => Err(text),
                _ => Err("the reply is not an integer".to_owned()),
            };
            self.wait_replied(answer);
            return;
        }
        if self.redirect.is_some() {
            let message = self.msgs.pop_front();
            if let (Reply::Error(text), Some((message, hops))) = (&reply, message)
                && cluster::is_redirect(text)
            {
                self.redirected(message, hops + 1, text);
                return;
            }
        }
        let result = match reply {
            Reply::Id(id) => Ok(id),
            Reply::Error(text) => {
                let e = switchyard_redis::classify_reply("XADD", &text);
                if e.is_transient() {
                    self.transient = true;
                }
                Err(e)
            }
            Reply::Status | Reply::Int(_) | Reply::Other => Err(Error::Backend(
                "redis XADD: the reply is not a stream id".into(),
            )),
        };
        self.accept(result);
    }

    /// On a cluster: an XADD answered `MOVED`/`ASK` goes back to the writer
    /// with its waiter, to be sent to the node that serves its slot now.
    fn redirected(&mut self, message: Message, hops: u32, reply: &str) {
        let Some(waiter) = self.waiters.pop_front() else {
            return;
        };
        self.remaining = self.remaining.saturating_sub(1);
        let r = cluster::Redirect {
            message,
            waiter,
            hops,
        };
        if let Some(tx) = &self.redirect
            && let Err(e) = tx.try_send(r)
        {
            let r = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            r.waiter.complete(Err(Error::Transient(format!(
                "redis XADD: {reply}, and the writer's redirect queue is full or closed; publish again"
            ))));
            self.ctx
                .stats
                .publish_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deliver_result(&mut self, result: Result<MessageId>) {
        if self.remaining == 0 {
            return;
        }
        self.remaining -= 1;
        // Count and tell the breaker before the caller hears back, so
        // what a caller sees next (stats, breaker state) is up to date.
        let stats = &self.ctx.stats;
        if result.is_ok() {
            self.ok += 1;
            stats.published.fetch_add(1, Ordering::Relaxed);
            if self.ok == 1 && !self.transient {
                self.ctx.breaker.record_success();
            }
        } else {
            stats.publish_errors.fetch_add(1, Ordering::Relaxed);
        }
        match self.waiters.front_mut() {
            Some(Waiter::One(_) | Waiter::Part(..)) => {
                if let Some(w) = self.waiters.pop_front() {
                    w.complete(result);
                }
            }
            Some(Waiter::Batch {
                want, ids, error, ..
            }) => {
                match result {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        error.get_or_insert(e);
                        ids.push(MessageId::default());
                    }
                }
                if ids.len() >= *want
                    && let Some(Waiter::Batch {
                        reply, ids, error, ..
                    }) = self.waiters.pop_front()
                {
                    let _ = reply.send(match error {
                        Some(e) => Err(e),
                        None => Ok(ids),
                    });
                }
            }
            None => {}
        }
    }

    /// Every reply arrived: a transient error among them counts as a
    /// failure of the pipeline (successes were recorded on arrival).
    fn finish(self) {
        if self.transient {
            self.ctx.breaker.record_failure();
        } else if self.ok == 0 {
            self.ctx.breaker.record_success();
        }
    }

    /// The pipeline failed as a whole: every caller still waiting gets `e`.
    fn fail(mut self, e: Error) {
        if e.is_transient() {
            self.ctx.breaker.record_failure();
        }
        self.ctx
            .stats
            .publish_errors
            .fetch_add(self.remaining as u64, Ordering::Relaxed);
        for w in self.waiters.drain(..) {
            w.complete(Err(e.clone()));
        }
    }
}

impl Waiter {
    /// Hands a single result to a waiter of one message (a whole batch
    /// gets it as its error).
    fn complete(self, result: Result<MessageId>) {
        match self {
            Waiter::One(tx) => {
                let _ = tx.send(result);
            }
            Waiter::Part(join, index) => join.set(index, result),
            Waiter::Batch { reply, .. } => {
                let _ = reply.send(result.map(|id| vec![id]));
            }
        }
    }
}

struct WriterTask {
    /// Our own connection; `None` until opened or after it failed.
    conn: Option<LeanConn>,
    /// On a Redis Cluster: a connection per master instead of `conn`.
    cluster: Option<cluster::State>,
    /// The shared connection: with Sentinel, tells when the primary changed.
    shared: SharedConnection,
    /// The primary epoch the lean connection was opened under.
    lean_epoch: u64,
    /// `WAIT` after each pipeline: replicas and timeout (0: no WAIT).
    wait_replicas: u32,
    wait_timeout: Duration,
    redis: RedisConfig,
    ctx: Arc<Ctx>,
    keys: KeyCache,
    batch: usize,
    in_flight: usize,
    ever_connected: bool,
}

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.batch);
        let mut closers = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let n = match self.cluster.as_mut() {
                Some(state) => tokio::select! {
                    n = rx.recv_many(&mut jobs, self.batch) => n,
                    Some(r) = state.incoming.recv() => {
                        self.resend(r, now_ms()).await;
                        continue;
                    }
                },
                None => rx.recv_many(&mut jobs, self.batch).await,
            };
            if n == 0 {
                break;
            }
            if n < self.batch {
                // Let publishers that are about to enqueue do so, for
                // fuller pipelines; keep yielding while more keep arriving.
                loop {
                    tokio::task::yield_now().await;
                    let before = jobs.len();
                    while jobs.len() < self.batch {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    if jobs.len() == before || jobs.len() >= self.batch {
                        break;
                    }
                }
            }
            let now = now_ms();
            if self.cluster.is_some() {
                let mut items = Vec::with_capacity(jobs.len());
                for job in jobs.drain(..) {
                    match job {
                        Job::One(m, reply) => items.push((m, Waiter::One(reply), 0)),
                        Job::Batch(ms, reply) => cluster::parts(ms, reply, &mut items),
                        Job::Close(done) => {
                            rx.close();
                            closers.push(done);
                        }
                    }
                }
                self.publish_cluster(items, now).await;
                continue;
            }
            let mut pending = Pending::new(self.ctx.clone(), jobs.len());
            for job in jobs.drain(..) {
                let mut encode = |m: &Message| {
                    let (key, retention) = self.keys.get(&m.topic);
                    resp::put_xadd(&mut buf, key, trim(&retention, now), m);
                };
                match job {
                    Job::One(m, reply) => {
                        encode(&m);
                        pending.push(Waiter::One(reply), 1);
                    }
                    Job::Batch(ms, reply) => {
                        ms.iter().for_each(&mut encode);
                        let want = ms.len();
                        let waiter = Waiter::Batch {
                            reply,
                            want,
                            ids: Vec::with_capacity(want),
                            error: None,
                        };
                        pending.push(waiter, want);
                    }
                    Job::Close(done) => {
                        // No new messages; what is queued still goes out.
                        rx.close();
                        closers.push(done);
                    }
                }
            }
            if pending.is_complete() {
                continue;
            }
            if self.wait_replicas > 0 {
                let replicas = self.wait_replicas.to_string();
                let ms = self.wait_timeout.as_millis().max(1).to_string();
                switchyard_redis::lean::put_command(
                    &mut buf,
                    &[b"WAIT", replicas.as_bytes(), ms.as_bytes()],
                );
                pending.wait_for(self.wait_replicas, self.wait_timeout);
            }
            self.send_lean(&buf, pending).await;
            buf.clear();
            if buf.capacity() > KEEP_BUF {
                buf.shrink_to(KEEP_BUF);
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.finish().await;
        }
        if let Some(state) = self.cluster.as_mut() {
            state.finish().await;
            // Redirects answered while finishing are not sent again.
            while let Ok(r) = state.incoming.try_recv() {
                r.waiter.complete(Err(Error::Closed));
            }
        }
        for done in closers {
            let _ = done.send(());
        }
    }

    /// Sends one pipeline on the lean connection, opening it first if needed.
    async fn send_lean(&mut self, bytes: &[u8], pending: Pending) {
        let slot = &mut self.conn;
        if slot.as_ref().is_some_and(LeanConn::is_dead) {
            *slot = None;
        }
        let epoch = self.shared.primary_epoch();
        if epoch != self.lean_epoch
            && let Some(old) = slot.take()
        {
            // The sentinels name a new primary: what the old one still
            // accepts would be lost when it is demoted.
            old.finish().await;
        }
        if slot.is_none() {
            self.lean_epoch = epoch;
            match LeanConn::connect(&self.redis, self.in_flight).await {
                Ok(c) => {
                    if self.ever_connected {
                        self.ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    self.ever_connected = true;
                    *slot = Some(c);
                }
                Err(e) => {
                    pending.fail(e);
                    return;
                }
            }
        }
        if let Some(conn) = slot.as_mut() {
            conn.send(bytes, pending).await;
        }
    }
}
