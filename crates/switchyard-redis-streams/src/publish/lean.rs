//! A lean publishing connection: XADDs encoded by hand, written in one go
//! per batch, replies parsed by a reader task that completes the callers
//! in order. The same code for plain TCP and TLS: the connection is a
//! `RedisStream` opened by `switchyard_redis::lean`, split into halves.
//!
//! Up to `in_flight` batches wait for replies at once (a bounded channel
//! between writer and reader), so the writer prepares the next batch while
//! Redis works on the previous one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_core::{Error, Result};
use switchyard_redis::RedisConfig;
use switchyard_redis::lean::{RedisReadHalf, RedisWriteHalf, write_flush};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};

use super::Pending;
use super::resp;

/// Initial read buffer size.
const READ_BUF: usize = 64 * 1024;

/// One connection: the write half (owned by the writer task) and the
/// channel to its reader task.
pub(super) struct LeanConn {
    wr: RedisWriteHalf,
    to_reader: mpsc::Sender<Pending>,
    dead: Arc<AtomicBool>,
    kill: Arc<Notify>,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl LeanConn {
    /// Connects, authenticates and selects the database, all within the
    /// connect timeout, then starts the reader task.
    pub(super) async fn connect(cfg: &RedisConfig, in_flight: usize) -> Result<LeanConn> {
        let stream = switchyard_redis::lean::connect(cfg).await?;
        let addr = cfg.addr();
        let (rd, wr) = stream.into_split();
        let (to_reader, from_writer) = mpsc::channel(in_flight.max(1));
        let dead = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(Notify::new());
        let reader = Reader {
            rd,
            rx: from_writer,
            dead: dead.clone(),
            kill: kill.clone(),
            timeout: cfg.response_timeout,
            addr: addr.clone(),
        };
        let reader = tokio::spawn(reader.run());
        Ok(LeanConn {
            wr,
            to_reader,
            dead,
            kill,
            timeout: cfg.response_timeout,
            reader,
        })
    }

    /// Waits until every pipeline in flight was answered (or failed), then
    /// closes the connection.
    pub(super) async fn finish(self) {
        let LeanConn {
            wr,
            to_reader,
            reader,
            ..
        } = self;
        drop(to_reader);
        let _ = reader.await;
        drop(wr);
    }

    /// Whether the connection failed; the writer then opens a new one.
    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Hands `pending` to the reader (waiting while `in_flight` batches are
    /// out) and writes `bytes`. On failure the callers in `pending` get the
    /// error (now or from the reader) and the connection is dead.
    pub(super) async fn send(&mut self, bytes: &[u8], pending: Pending) {
        if let Err(mpsc::error::SendError(pending)) = self.to_reader.send(pending).await {
            self.dead.store(true, Ordering::Release);
            pending.fail(Error::Transient(
                "redis XADD: the connection was lost".into(),
            ));
            return;
        }
        let written = tokio::time::timeout(self.timeout, write_flush(&mut self.wr, bytes)).await;
        let failure = match written {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("redis XADD: writing to the connection failed: {e}"),
            Err(_) => format!(
                "redis XADD: writing to the connection did not finish within {:?}",
                self.timeout
            ),
        };
        tracing::debug!(error = %failure, "lean publishing connection failed");
        self.dead.store(true, Ordering::Release);
        // The reader fails everything it still waits for.
        self.kill.notify_one();
    }
}

struct Reader {
    rd: RedisReadHalf,
    rx: mpsc::Receiver<Pending>,
    dead: Arc<AtomicBool>,
    kill: Arc<Notify>,
    timeout: Duration,
    addr: String,
}

impl Reader {
    async fn run(mut self) {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
        let mut start = 0usize;
        let failure = 'outer: loop {
            let Some(mut pending) = self.rx.recv().await else {
                return; // the writer dropped the connection; nothing in flight
            };
            while !pending.is_complete() {
                // Parse what is buffered.
                loop {
                    match resp::parse_reply(&buf[start..]) {
                        Ok(Some((reply, used))) => {
                            start += used;
                            pending.deliver(reply);
                            if pending.is_complete() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(p) => {
                            let e = Error::Backend(format!(
                                "redis XADD: unreadable reply from {}: {}",
                                self.addr, p.0
                            ));
                            pending.fail(e.clone());
                            break 'outer e;
                        }
                    }
                }
                if start == buf.len() {
                    buf.clear();
                    start = 0;
                } else if start > READ_BUF {
                    buf.drain(..start);
                    start = 0;
                }
                if pending.is_complete() {
                    break;
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(READ_BUF);
                }
                let read = tokio::select! {
                    r = tokio::time::timeout(self.timeout, self.rd.read_buf(&mut buf)) => r,
                    () = self.kill.notified() => {
                        let e = Error::Transient("redis XADD: the connection failed while writing".into());
                        pending.fail(e.clone());
                        break 'outer e;
                    }
                };
                let e = match read {
                    Ok(Ok(n)) if n > 0 => continue,
                    Ok(Ok(_)) => {
                        Error::Transient(format!("redis XADD: {} closed the connection", self.addr))
                    }
                    Ok(Err(e)) => {
                        Error::Transient(format!("redis XADD: reading from {}: {e}", self.addr))
                    }
                    Err(_) => Error::Timeout {
                        operation: format!("redis XADD (reply from {})", self.addr),
                        after: self.timeout,
                    },
                };
                pending.fail(e.clone());
                break 'outer e;
            }
            pending.finish();
        };
        self.dead.store(true, Ordering::Release);
        tracing::debug!(error = %failure, "lean publishing connection lost");
        self.rx.close();
        while let Ok(p) = self.rx.try_recv() {
            p.fail(failure.clone());
        }
    }
}
