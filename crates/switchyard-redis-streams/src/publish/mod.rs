//! Publishing: a writer task that coalesces concurrent `publish` calls onto
//! pipelines, and `publish_batch` as one pipeline.
//!
//! Callers put `(Message, reply)` on a bounded queue (back-pressure when
//! full). The writer takes everything queued, up to `writer_batch`, builds
//! one pipeline of XADDs and sends it; up to `writer_in_flight` pipelines
//! are in flight on the multiplexed connection at once, so one slow reply
//! does not hold up the rest. Each caller's reply carries its entry id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::Value;
use redis::aio::{ConnectionLike, ConnectionManager};
use switchyard_core::{CircuitBreaker, Error, Message, MessageId, Result, Topic};
use tokio::sync::{mpsc, oneshot};

use crate::config::StreamsConfig;
use crate::inner::{Inner, Stats};
use crate::keys;
use crate::wire;

type Reply = oneshot::Sender<Result<MessageId>>;

enum Job {
    One(Message, Reply),
    Close(oneshot::Sender<()>),
}

/// Handle to the writer task. Dropping every handle ends the task after it
/// finished what was queued.
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

/// How XADD trims: `MAXLEN ~ n`, `MINID ~ now - age`, or not at all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    maxlen: Option<u64>,
    min_id_age: Option<Duration>,
}

impl Retention {
    pub(crate) fn from_config(config: &StreamsConfig) -> Self {
        Retention {
            maxlen: config.maxlen,
            min_id_age: config.min_id_age,
        }
    }

    /// The trimming arguments for XADDs built now.
    fn args(self) -> TrimArgs {
        if let Some(n) = self.maxlen {
            return TrimArgs::MaxLen(n);
        }
        if let Some(age) = self.min_id_age {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_sub(age);
            let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            return TrimArgs::MinId(ms);
        }
        TrimArgs::None
    }
}

#[derive(Clone, Copy)]
enum TrimArgs {
    None,
    MaxLen(u64),
    MinId(u64),
}

/// Appends `XADD key [MAXLEN ~ n | MINID ~ id] * fields` to `pipe`.
fn push_xadd(pipe: &mut redis::Pipeline, key: &str, trim: TrimArgs, message: &Message) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key);
    match trim {
        TrimArgs::None => {}
        TrimArgs::MaxLen(n) => {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        TrimArgs::MinId(ms) => {
            cmd.arg("MINID").arg("~").arg(ms);
        }
    }
    cmd.arg("*");
    wire::push_fields(&mut cmd, message);
    pipe.add_command(cmd);
}

/// A small cache of stream keys per topic, so the hot path does not format
/// a key per message. Cleared when it grows past a bound.
struct KeyCache {
    namespace: String,
    map: std::collections::HashMap<Topic, String>,
}

impl KeyCache {
    const MAX: usize = 4096;

    fn new(namespace: &str) -> Self {
        KeyCache {
            namespace: namespace.to_owned(),
            map: std::collections::HashMap::new(),
        }
    }

    fn get(&mut self, topic: &Topic) -> &str {
        if !self.map.contains_key(topic) {
            if self.map.len() >= Self::MAX {
                self.map.clear();
            }
            self.map
                .insert(topic.clone(), keys::stream_key(&self.namespace, topic));
        }
        self.map.get(topic).map_or("", String::as_str)
    }
}

/// What a pipeline needs to report its outcome.
struct Ctx {
    breaker: Arc<CircuitBreaker>,
    stats: Arc<Stats>,
}

impl Ctx {
    /// Sends `pipe` and maps its replies onto ids, recording the outcome
    /// with the breaker and the counters.
    async fn run(
        &self,
        conn: &mut ConnectionManager,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Result<MessageId>>> {
        let n = pipe.len();
        match conn.req_packed_commands(pipe, 0, n).await {
            Ok(values) => {
                self.breaker.record_success();
                let mut out = Vec::with_capacity(n);
                let mut ok = 0u64;
                for v in values {
                    let r = reply_id(v);
                    ok += u64::from(r.is_ok());
                    out.push(r);
                }
                while out.len() < n {
                    out.push(Err(Error::Backend(
                        "redis XADD: reply missing from pipeline".into(),
                    )));
                }
                self.stats.published.fetch_add(ok, Ordering::Relaxed);
                self.stats
                    .publish_errors
                    .fetch_add(n as u64 - ok, Ordering::Relaxed);
                Ok(out)
            }
            Err(e) => {
                let err = switchyard_redis::classify("XADD", &e);
                if err.is_transient() {
                    self.breaker.record_failure();
                }
                self.stats
                    .publish_errors
                    .fetch_add(n as u64, Ordering::Relaxed);
                Err(err)
            }
        }
    }
}

fn reply_id(v: Value) -> Result<MessageId> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(wire::parse_id)
            .ok_or_else(|| Error::Backend("redis XADD: reply is not a stream id".into())),
        Value::SimpleString(s) => wire::parse_id(&s)
            .ok_or_else(|| Error::Backend("redis XADD: reply is not a stream id".into())),
        Value::ServerError(e) => {
            let text = format!("redis XADD: {e}");
            if switchyard_redis::is_transient_code(e.code()) {
                Err(Error::Transient(text))
            } else {
                Err(Error::Backend(text))
            }
        }
        _ => Err(Error::Backend("redis XADD: unexpected reply".into())),
    }
}

impl Writer {
    /// Starts the writer task on `conn`.
    pub(crate) fn spawn(
        conn: ConnectionManager,
        config: &StreamsConfig,
        breaker: Arc<CircuitBreaker>,
        stats: Arc<Stats>,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(config.writer_queue);
        let task = WriterTask {
            conn,
            ctx: Arc::new(Ctx { breaker, stats }),
            retention: Retention::from_config(config),
            keys: KeyCache::new(&config.redis.namespace),
            batch: config.writer_batch,
            in_flight: config.writer_in_flight,
        };
        tokio::spawn(task.run(rx));
        Writer { tx }
    }

    /// Queues `message` (waiting while the queue is full) and waits for its id.
    pub(crate) async fn publish(&self, message: Message) -> Result<MessageId> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::One(message, reply))
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

struct WriterTask {
    conn: ConnectionManager,
    ctx: Arc<Ctx>,
    retention: Retention,
    keys: KeyCache,
    batch: usize,
    in_flight: usize,
}

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut pending = FuturesUnordered::new();
        let mut jobs = Vec::with_capacity(self.batch);
        let mut closers = Vec::new();
        loop {
            tokio::select! {
                biased;
                Some(()) = pending.next(), if !pending.is_empty() => {}
                n = rx.recv_many(&mut jobs, self.batch), if pending.len() < self.in_flight => {
                    if n == 0 {
                        break;
                    }
                    let mut pipe = redis::Pipeline::with_capacity(jobs.len());
                    let mut replies = Vec::with_capacity(jobs.len());
                    let trim = self.retention.args();
                    for job in jobs.drain(..) {
                        match job {
                            Job::One(message, reply) => {
                                push_xadd(&mut pipe, self.keys.get(&message.topic), trim, &message);
                                replies.push(reply);
                            }
                            Job::Close(done) => {
                                // No new messages; what is queued still goes out.
                                rx.close();
                                closers.push(done);
                            }
                        }
                    }
                    if !replies.is_empty() {
                        let ctx = self.ctx.clone();
                        let mut conn = self.conn.clone();
                        pending.push(async move {
                            match ctx.run(&mut conn, &pipe).await {
                                Ok(results) => {
                                    for (reply, r) in replies.into_iter().zip(results) {
                                        let _ = reply.send(r);
                                    }
                                }
                                Err(e) => {
                                    for reply in replies {
                                        let _ = reply.send(Err(e.clone()));
                                    }
                                }
                            }
                        });
                    }
                }
            }
        }
        while pending.next().await.is_some() {}
        for done in closers {
            let _ = done.send(());
        }
    }
}

/// Publishes `messages` in one pipeline, in order.
pub(crate) async fn publish_batch(inner: &Inner, messages: Vec<Message>) -> Result<Vec<MessageId>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let trim = Retention::from_config(&inner.config).args();
    let mut keys = KeyCache::new(inner.namespace());
    let mut pipe = redis::Pipeline::with_capacity(messages.len());
    for m in &messages {
        push_xadd(&mut pipe, keys.get(&m.topic), trim, m);
    }
    let ctx = Ctx {
        breaker: inner.breaker.clone(),
        stats: inner.stats.clone(),
    };
    let mut conn = inner.conn.clone();
    ctx.run(&mut conn, &pipe).await?.into_iter().collect()
}
