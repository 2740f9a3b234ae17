//! The reader task: `XREADGROUP` on a dedicated connection.
//!
//! For every stream it first re-reads this consumer's own pending entries
//! (`XREADGROUP ... STREAMS key 0`, page by page) — what it held when it
//! last stopped — then blocks for new ones (`>`), `COUNT` at most what fits
//! the local buffer. Blocking reads never use the shared connection.
//!
//! The connection is also kept in the group's [`ReadSlot`], so the closer
//! can make sure no read of this consumer is still blocked in Redis once
//! the subscriber is closed ([`settle`]): a blocked `XREADGROUP` outlives
//! the task that sent it, and would take new entries for a consumer that
//! is gone.
//!
//! On a Redis Cluster one `XREADGROUP` may only name keys of one slot, and
//! every topic's stream has a slot of its own: the reader task then runs
//! one reader per stream ([`run_cluster`]), each on a dedicated connection
//! to the master serving that stream's slot. A `MOVED` (resharding,
//! failover) or a lost connection refreshes the slot map before the reader
//! connects again.
//!
//! Failures never end the reader: connection errors reopen the dedicated
//! connection after a backoff; `NOGROUP` (the server lost its data, e.g. a
//! restart without persistence) recreates the groups at `0` with
//! `MKSTREAM`; warnings are rate-limited.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::Value;
use switchyard_core::{Backoff, MessageId};
use switchyard_redis::lean::{Token, put_array_header, put_bulk, put_command};

use super::fetch::{self, Attempts, FetchedEntry};
use super::keep::millis;
use super::readconn::{ReadConn, ReadError, SharedReadConn};
use super::{Group, Stream, create_group, xread};
use crate::discovery::TopicSource;

/// A reader's dedicated connection, its server-side client id and (on a
/// cluster) the node it is connected to, for the closer ([`settle`]).
pub(crate) struct ReadSlot {
    conn: SharedReadConn,
    client_id: Option<i64>,
    node: Option<switchyard_redis::RedisConfig>,
}

/// The reader's state.
struct Reader {
    g: Arc<Group>,
    /// Which of the group's readers this is (the key of its [`ReadSlot`]).
    id: usize,
    /// On a cluster: the one stream key this reader reads (its slot's
    /// master is where it connects).
    cluster_key: Option<String>,
    conn: Option<SharedReadConn>,
    /// The encoded command, reused.
    cmd: Vec<u8>,
    /// The primary epoch `conn` was opened under (Sentinel).
    conn_epoch: u64,
    /// Streams whose own pending entries are still to be re-read, with
    /// the id to continue after.
    history: Vec<(Arc<Stream>, MessageId)>,
    /// Stream key to stream, for replies.
    by_key: HashMap<String, Arc<Stream>>,
    /// How many topics of the source are registered.
    known: usize,
    backoff: Backoff,
    /// Whether the connection failed since the last successful read.
    failed: bool,
}

/// Runs until the subscriber or transport stops, then closes the local
/// queue so `recv` returns `None`.
pub(crate) async fn run(g: Arc<Group>, topics: TopicSource) {
    if g.inner.client.is_cluster() {
        run_cluster(g, topics).await;
        return;
    }
    run_single(g, topics).await;
}

/// A reader of `streams`; `cluster_key` on a cluster (one stream).
fn reader(
    g: &Arc<Group>,
    id: usize,
    streams: &[Arc<Stream>],
    cluster_key: Option<String>,
) -> Reader {
    Reader {
        id,
        cluster_key,
        history: streams
            .iter()
            .map(|s| (s.clone(), MessageId::default()))
            .collect(),
        by_key: streams.iter().map(|s| (s.key.clone(), s.clone())).collect(),
        known: streams.len(),
        g: g.clone(),
        conn: None,
        cmd: Vec::with_capacity(256),
        conn_epoch: 0,
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
        failed: false,
    }
}

/// On a cluster: one reader task per stream, started as streams are
/// found; ends (and stops the subscriber) once they all ended.
async fn run_cluster(g: Arc<Group>, mut topics: TopicSource) {
    let mut children = Vec::new();
    let mut spawn = |stream: Arc<Stream>| {
        let id = children.len();
        let key = stream.key.clone();
        let mut r = reader(&g, id, &[stream], Some(key));
        children.push(tokio::spawn(async move {
            while !r.g.is_stopped() {
                if !r.step().await {
                    break;
                }
            }
            if r.failed {
                r.g.inner.readers.came_back();
            }
            r.g.stop();
        }));
    };
    let initial = g.all_streams();
    let mut known = initial.len();
    for stream in initial {
        spawn(stream);
    }
    while !g.is_stopped() {
        let current = topics.current();
        while let Some(topic) = current.get(known) {
            let key = g.inner.key(topic);
            let mut conn = g.conn();
            if let Err(e) = create_group(&mut conn, &key, &g.cfg.group, "0").await {
                g.note_denied("XGROUP CREATE", "+xgroup|create", &e);
                if let Some(suppressed) = g.warn.check() {
                    tracing::warn!(topic = %topic, error = %e, suppressed, "redis-streams: creating the group on a discovered stream failed; retrying");
                }
                break;
            }
            spawn(g.add_stream(topic));
            known += 1;
        }
        tokio::select! {
            () = topics.changed() => {}
            () = g.stopped() => break,
            () = tokio::time::sleep(Duration::from_secs(1)), if known < current.len() => {}
        }
    }
    for child in children {
        let _ = tokio::time::timeout(super::CLOSE_FLUSH_TIMEOUT, child).await;
    }
    g.stop();
}

/// On one server (or through Sentinel): one reader for every stream.
async fn run_single(g: Arc<Group>, mut topics: TopicSource) {
    let streams = g.all_streams();
    let mut r = reader(&g, 0, &streams, None);
    while !g.is_stopped() {
        r.sync_topics(&mut topics).await;
        if r.by_key.is_empty() {
            // A pattern that matches nothing yet.
            tokio::select! {
                () = topics.changed() => {}
                () = g.stopped() => break,
            }
            continue;
        }
        if !r.step().await {
            break;
        }
    }
    if r.failed {
        g.inner.readers.came_back();
    }
    g.stop();
}

impl Reader {
    /// Registers streams discovered since the last call; their groups are
    /// created at `0` (they appeared after the subscription started).
    async fn sync_topics(&mut self, topics: &mut TopicSource) {
        if self.cluster_key.is_some() {
            return; // run_cluster follows the topics
        }
        let current = topics.current();
        while let Some(topic) = current.get(self.known) {
            let key = self.g.inner.key(topic);
            let mut conn = self.g.conn();
            if let Err(e) = create_group(&mut conn, &key, &self.g.cfg.group, "0").await {
                self.g.note_denied("XGROUP CREATE", "+xgroup|create", &e);
                if let Some(suppressed) = self.g.warn.check() {
                    tracing::warn!(topic = %topic, error = %e, suppressed, "redis-streams: creating the group on a discovered stream failed; retrying");
                }
                return;
            }
            let stream = self.g.add_stream(topic);
            tracing::debug!(topic = %topic, group = %self.g.cfg.group, "redis-streams: following a new stream");
            self.by_key.insert(stream.key.clone(), stream.clone());
            self.history.push((stream, MessageId::default()));
            self.known += 1;
        }
    }

    /// One read (pending re-read or blocking read) and its handling.
    /// `false` when the subscriber is closed.
    async fn step(&mut self) -> bool {
        let epoch = self.g.inner.client.primary_epoch();
        if self.conn.is_some() && epoch != self.conn_epoch {
            // The sentinels name a new primary: read there (the old one
            // may accept reads for seconds before it is demoted).
            self.fail("the sentinels name a new primary", true).await;
            return !self.g.is_stopped();
        }
        let conn = match &self.conn {
            Some(c) => c.clone(),
            None => {
                self.conn_epoch = epoch;
                match self.connect().await {
                    Ok((mut c, node)) => {
                        if self.failed {
                            count_reconnect(&self.g);
                        }
                        let client_id = client_id(&self.g, &mut c).await;
                        let c: SharedReadConn = Arc::new(tokio::sync::Mutex::new(c));
                        self.g.reading.lock().insert(
                            self.id,
                            ReadSlot {
                                conn: c.clone(),
                                client_id,
                                node,
                            },
                        );
                        self.conn = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        self.fail(&format!("{e}"), false).await;
                        return !self.g.is_stopped();
                    }
                }
            }
        };
        let result = if self.history.is_empty() {
            self.read_new(conn).await
        } else {
            self.read_history(conn).await
        };
        match result {
            Ok(open) => {
                self.backoff.reset();
                if self.failed {
                    self.g.inner.readers.came_back();
                }
                self.failed = false;
                open
            }
            Err(e) if e.is_nogroup() => {
                self.recreate_groups(&e).await;
                !self.g.is_stopped()
            }
            Err(e) if e.is_noperm() => {
                // Reported by health(); retried at the backoff's pace
                // only, so a fixed ACL resumes the subscriber.
                let text = self.g.inner.denied.record("XREADGROUP", &e.to_string());
                self.fail(&format!("permission denied: {text}"), false)
                    .await;
                !self.g.is_stopped()
            }
            Err(e) => {
                let transient = e.is_transient();
                self.fail(&e.to_string(), transient).await;
                !self.g.is_stopped()
            }
        }
    }

    /// After a failure: drop the connection, re-read own pending entries
    /// once reconnected (a reply lost with the connection may have handed
    /// entries to this consumer), and back off.
    /// A dedicated connection for blocking reads: on a cluster to the
    /// master serving this reader's stream (also returned), else to the
    /// server (or the primary the sentinels name).
    async fn connect(
        &self,
    ) -> switchyard_core::Result<(ReadConn, Option<switchyard_redis::RedisConfig>)> {
        let timeout = self.g.inner.config.blocking_response_timeout();
        let client = &self.g.inner.client;
        match &self.cluster_key {
            Some(key) => {
                let node = client.config_for_key(key.as_bytes()).await?;
                let conn = ReadConn::connect(&node, timeout).await?;
                Ok((conn, Some(node)))
            }
            None => {
                // With Sentinel settings: the primary the sentinels name now.
                let cfg = client.config_for_key(b"").await?;
                Ok((ReadConn::connect(&cfg, timeout).await?, None))
            }
        }
    }

    async fn fail(&mut self, error: &str, transient: bool) {
        self.conn = None;
        self.g.reading.lock().remove(&self.id);
        if let Some(router) = self.g.inner.client.router() {
            // MOVED, a failover or a lost node: the map may be stale.
            let _ = router.refresh().await;
        }
        if !self.failed {
            self.g.inner.readers.went_down(error);
        }
        self.failed = true;
        self.history = self
            .by_key
            .values()
            .map(|s| (s.clone(), MessageId::default()))
            .collect();
        if let Some(suppressed) = self.g.warn.check() {
            tracing::warn!(
                group = %self.g.cfg.group, consumer = %self.g.cfg.consumer, error, transient, suppressed,
                "redis-streams: group read failed; reconnecting with backoff"
            );
        }
        let pause = self.backoff.next_delay();
        self.g.sleep(pause).await;
    }

    /// The server lost the group (and probably the stream): recreate both
    /// at `0` and resume, after a backoff pause.
    async fn recreate_groups(&mut self, e: &ReadError) {
        if let Some(suppressed) = self.g.warn.check() {
            tracing::warn!(
                group = %self.g.cfg.group, error = %e, suppressed,
                "redis-streams: consumer group missing (server restarted without persistence?); recreating it"
            );
        }
        let mut conn = self.g.conn();
        for stream in self.by_key.values() {
            if let Err(e) = create_group(&mut conn, &stream.key, &self.g.cfg.group, "0").await {
                tracing::debug!(topic = %stream.topic, error = %e, "recreating the group failed");
                break;
            }
        }
        self.history.clear();
        let pause = self.backoff.next_delay();
        self.g.sleep(pause).await;
    }

    /// Sends the encoded read on `conn` and parses its reply; `None` when
    /// the subscriber closed meanwhile.
    async fn query(
        &self,
        conn: &SharedReadConn,
    ) -> Result<Option<Vec<(Arc<Stream>, Vec<FetchedEntry>)>>, ReadError> {
        let mut c = conn.lock().await;
        let reply = tokio::select! {
            r = c.request("XREADGROUP", &self.cmd) => r?,
            () = self.g.stopped() => return Ok(None),
        };
        let parsed = xread::parse_streams(reply, |key| {
            self.by_key.get(key).map(|s| (s.clone(), s.topic.clone()))
        });
        Ok(Some(match parsed {
            Ok(v) => v,
            Err(e) => {
                // Logged and skipped, as an unparsable reply always was.
                if let Some(suppressed) = self.g.warn.check() {
                    tracing::warn!(error = %e, suppressed, "redis-streams: unexpected XREADGROUP reply");
                }
                Vec::new()
            }
        }))
    }

    /// Re-reads a page of own pending entries of every stream still in
    /// its history phase.
    async fn read_history(&mut self, conn: SharedReadConn) -> Result<bool, ReadError> {
        let count = self.g.fetch_count();
        if count == 0 {
            // At max_in_flight: read again once something is settled.
            self.g.wait_for_room().await;
            return Ok(!self.g.is_stopped());
        }
        let ids: Vec<String> = self
            .history
            .iter()
            .map(|(_, after)| after.to_string())
            .collect();
        encode_read(
            &mut self.cmd,
            (&self.g.cfg.group, &self.g.cfg.consumer),
            count,
            None,
            self.history.iter().map(|(s, _)| s.key.as_str()),
            ids.iter().map(String::as_bytes),
        );
        let Some(reply) = self.query(&conn).await? else {
            return Ok(false);
        };
        let touched = Instant::now();
        let mut replied: HashMap<String, Vec<FetchedEntry>> = reply
            .into_iter()
            .map(|(s, entries)| (s.key.clone(), entries))
            .collect();
        let mut still = Vec::with_capacity(self.history.len());
        for (stream, after) in std::mem::take(&mut self.history) {
            let entries = replied.remove(&stream.key).unwrap_or_default();
            let Some(last) = entries.last().map(|e| e.id) else {
                continue; // Nothing (more) pending here: on to new entries.
            };
            if !fetch::accept(&self.g, &stream, entries, Attempts::Lookup, touched).await {
                return Ok(false);
            }
            still.push((stream, last.max(after)));
        }
        self.history = still;
        Ok(true)
    }

    /// Blocks for new entries of every stream.
    async fn read_new(&mut self, conn: SharedReadConn) -> Result<bool, ReadError> {
        let count = self.g.fetch_count();
        if count == 0 {
            // At max_in_flight: read again once something is settled.
            self.g.wait_for_room().await;
            return Ok(!self.g.is_stopped());
        }
        let block = millis(self.g.inner.config.block).max(1);
        encode_read(
            &mut self.cmd,
            (&self.g.cfg.group, &self.g.cfg.consumer),
            count,
            Some(block),
            self.by_key.keys().map(String::as_str),
            std::iter::repeat_n(b">".as_slice(), self.by_key.len()),
        );
        let Some(reply) = self.query(&conn).await? else {
            return Ok(false);
        };
        let touched = Instant::now();
        for (stream, entries) in reply {
            if !fetch::accept(&self.g, &stream, entries, Attempts::First, touched).await {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Encodes `XREADGROUP GROUP group consumer COUNT n [BLOCK ms] STREAMS
/// keys... ids...` into `cmd` (cleared first); `ids` gives one id per key.
fn encode_read<'a>(
    cmd: &mut Vec<u8>,
    (group, consumer): (&str, &str),
    count: usize,
    block: Option<u64>,
    keys: impl ExactSizeIterator<Item = &'a str>,
    ids: impl Iterator<Item = &'a [u8]>,
) {
    cmd.clear();
    let n = keys.len();
    put_array_header(cmd, 7 + if block.is_some() { 2 } else { 0 } + 2 * n);
    put_bulk(cmd, b"XREADGROUP");
    put_bulk(cmd, b"GROUP");
    put_bulk(cmd, group.as_bytes());
    put_bulk(cmd, consumer.as_bytes());
    put_bulk(cmd, b"COUNT");
    put_bulk(cmd, count.to_string().as_bytes());
    if let Some(ms) = block {
        put_bulk(cmd, b"BLOCK");
        put_bulk(cmd, ms.to_string().as_bytes());
    }
    put_bulk(cmd, b"STREAMS");
    for key in keys {
        put_bulk(cmd, key.as_bytes());
    }
    for id in ids.take(n) {
        put_bulk(cmd, id);
    }
}

/// `CLIENT ID` of a new reading connection, `None` when the user may not
/// ask (then [`settle`] waits for a blocked read instead of ending it; the
/// transport stops asking after the first refusal).
async fn client_id(g: &Group, conn: &mut ReadConn) -> Option<i64> {
    if g.inner.no_unblock.load(Ordering::Relaxed) {
        return None;
    }
    let mut cmd = Vec::with_capacity(32);
    put_command(&mut cmd, &[b"CLIENT", b"ID"]);
    match conn.request("CLIENT ID", &cmd).await {
        Ok(reply) => match switchyard_redis::lean::next_token(reply, 64) {
            Ok(Some((Token::Int(id), _))) => Some(id),
            other => {
                tracing::debug!(reply = ?other, "redis-streams: unexpected CLIENT ID reply; closing waits for blocked reads");
                None
            }
        },
        Err(e) => {
            if e.is_noperm() {
                g.inner.no_unblock.store(true, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, "redis-streams: CLIENT ID failed; closing waits for blocked reads");
            None
        }
    }
}

/// On close, after the reader task ended: makes sure no `XREADGROUP` of
/// this consumer is still blocked (or still on its way) in Redis, then
/// drops the reading connection. `CLIENT UNBLOCK <id>` ends a blocked read
/// at once; a `PING` on the reading connection then returns only after
/// every command sent before it on that connection, so a read that was
/// still in flight has ended and whatever it took is pending for this
/// consumer, where the closer's hand-back finds it. Without `CLIENT
/// UNBLOCK` (not granted) the `PING` waits for the read's `block` time;
/// the connection's response timeout (`block` + 2 s) bounds it.
pub(crate) async fn settle(g: &Group) {
    let slots: Vec<ReadSlot> = std::mem::take(&mut *g.reading.lock())
        .into_values()
        .collect();
    futures::future::join_all(slots.into_iter().map(|slot| settle_one(g, slot))).await;
}

/// [`settle`] for one reader's connection.
async fn settle_one(g: &Group, slot: ReadSlot) {
    let ReadSlot {
        conn,
        client_id,
        node,
    } = slot;
    if let Some(id) = client_id
        && !g.inner.no_unblock.load(Ordering::Relaxed)
    {
        let mut unblock = redis::cmd("CLIENT");
        unblock.arg("UNBLOCK").arg(id);
        let unblocked: redis::RedisResult<Value> = match node {
            // On a cluster: on the node the reader is connected to.
            Some(node) => match g.conn().to_node(&node.host, node.port) {
                Some(mut c) => unblock.query_async(&mut c).await,
                None => Ok(Value::Nil),
            },
            None => unblock.query_async(&mut g.conn()).await,
        };
        if let Err(e) = unblocked {
            if switchyard_redis::denied::is_noperm(&e) {
                g.inner.no_unblock.store(true, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, "redis-streams: CLIENT UNBLOCK failed; waiting for the blocked read");
        }
    }
    // An error (the connection broke) also means no read is left. The
    // reply of a read cut short is skipped before PING's.
    let mut ping = Vec::with_capacity(16);
    put_command(&mut ping, &[b"PING"]);
    let mut conn = conn.lock().await;
    if let Err(e) = conn.request("PING", &ping).await {
        tracing::debug!(error = %e, "redis-streams: PING on the reading connection failed on close");
    }
}

/// Counts a reconnection of a reader in the transport's stats.
fn count_reconnect(g: &Group) {
    g.inner
        .stats
        .reconnects
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
