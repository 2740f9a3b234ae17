//! The outbox sender's connection: one pipeline of `PUBLISH`es per batch.
//!
//! The commands are encoded by hand into one buffer and the integer
//! replies read straight from the connection (no `redis::Cmd`, no
//! `redis::Value`, no multiplexer task in between); the same code over
//! plain TCP and TLS ([`RedisStream`]).

use std::time::Duration;

use switchyard_core::Result;
use switchyard_redis::RedisClient;
use switchyard_redis::lean::{self, RedisStream, Token, write_flush};
use tokio::io::AsyncReadExt;

use crate::outbox::OutboxEntry;

/// Read buffer size of the lean connection.
const READ_BUF: usize = 16 * 1024;
/// Largest batch buffer kept between batches.
const KEEP_OUT: usize = 8 * 1024 * 1024;

/// What Redis answered to one batch.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    /// Messages Redis took (an integer reply each).
    pub(crate) delivered: usize,
    /// `PUBLISH`es Redis refused (an error reply each).
    pub(crate) refused: usize,
    /// Positions in the batch of the commands answered with a cluster
    /// redirection or a transient cluster error (`MOVED`, `ASK`,
    /// `TRYAGAIN`, `CLUSTERDOWN`): not executed, to be sent again.
    pub(crate) redirected: Vec<usize>,
    /// The first refusal's text.
    pub(crate) first_refusal: Option<String>,
}

/// Why a batch got no answer.
#[derive(Debug)]
pub(crate) struct Failed {
    /// Whether retrying on a new connection may help.
    pub(crate) transient: bool,
    pub(crate) reason: String,
    /// No connection could be opened (not counted as a publish error).
    pub(crate) connect: bool,
}

impl Failed {
    pub(crate) fn transient(reason: String) -> Self {
        Failed {
            transient: true,
            reason,
            connect: false,
        }
    }

    /// No connection could be opened: `reason` says why.
    pub(crate) fn connect(reason: String) -> Self {
        Failed {
            transient: true,
            reason,
            connect: true,
        }
    }
}

/// Appends one `PUBLISH`/`SPUBLISH` (`command`: its encoded name) of `e`.
fn put_publish(out: &mut Vec<u8>, command: &[u8], e: &OutboxEntry) {
    out.reserve(40 + e.channel.len() + e.frame.len());
    lean::put_array_header(out, 3);
    out.extend_from_slice(command);
    lean::put_bulk(out, e.channel.as_bytes());
    lean::put_bulk(out, &e.frame);
}

/// Whether an error reply means "not executed, send it again after the
/// slot map is refreshed": `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`.
pub(crate) fn is_cluster_retry(text: &[u8]) -> bool {
    [&b"MOVED "[..], b"ASK ", b"TRYAGAIN", b"CLUSTERDOWN"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// The sender's connection (TCP or TLS): publishes only.
pub(crate) struct PublishConn {
    stream: RedisStream,
    /// The encoded batch, reused.
    out: Vec<u8>,
    /// Replies read but not parsed yet.
    buf: Vec<u8>,
}

impl PublishConn {
    /// Opens the connection; the server has answered a `PING` (after
    /// `AUTH` and `SELECT`) within the connect timeout, or this fails.
    pub(crate) async fn open(client: &RedisClient) -> Result<Self> {
        Self::open_to(client.config()).await
    }

    /// [`open`](Self::open) to the server of `cfg` (a cluster node).
    pub(crate) async fn open_to(cfg: &switchyard_redis::RedisConfig) -> Result<Self> {
        let stream = lean::connect(cfg).await?;
        Ok(PublishConn {
            stream,
            out: Vec::new(),
            buf: Vec::with_capacity(READ_BUF),
        })
    }

    /// Sends `batch` as one pipeline and reads every reply, all within
    /// `timeout`. A failure leaves the connection unusable.
    pub(crate) async fn publish(
        &mut self,
        batch: &[OutboxEntry],
        timeout: Duration,
    ) -> std::result::Result<Answered, Failed> {
        self.out.clear();
        for e in batch {
            put_publish(&mut self.out, b"$7\r\nPUBLISH\r\n", e);
        }
        self.send(batch.len(), timeout).await
    }

    /// Like [`publish`](Self::publish) with `SPUBLISH` (sharded pub/sub on
    /// a Redis Cluster): the same encoding, another command name.
    pub(crate) async fn spublish(
        &mut self,
        batch: &[&OutboxEntry],
        timeout: Duration,
    ) -> std::result::Result<Answered, Failed> {
        self.out.clear();
        for e in batch {
            put_publish(&mut self.out, b"$8\r\nSPUBLISH\r\n", e);
        }
        self.send(batch.len(), timeout).await
    }

    /// Writes the encoded batch and reads its `replies`, within `timeout`.
    async fn send(
        &mut self,
        replies: usize,
        timeout: Duration,
    ) -> std::result::Result<Answered, Failed> {
        let result = match tokio::time::timeout(timeout, self.exchange(replies)).await {
            Ok(r) => r,
            Err(_) => Err(Failed::transient(format!("no reply within {timeout:?}"))),
        };
        if self.out.capacity() > KEEP_OUT {
            // Do not hold on to the memory of an unusually large batch.
            self.out = Vec::new();
        }
        result
    }

    async fn exchange(&mut self, replies: usize) -> std::result::Result<Answered, Failed> {
        write_flush(&mut self.stream, &self.out)
            .await
            .map_err(|e| Failed::transient(format!("writing PUBLISH: {e}")))?;
        let mut answered = Answered::default();
        let mut got = 0;
        let mut start = 0;
        while got < replies {
            loop {
                match lean::next_token(&self.buf[start..], 0) {
                    Ok(Some((token, used))) => {
                        start += used;
                        got += 1;
                        match token {
                            Token::Int(_) => answered.delivered += 1,
                            Token::Error(text) if is_cluster_retry(text) => {
                                answered.redirected.push(got - 1);
                            }
                            Token::Error(text) => {
                                answered.refused += 1;
                                if answered.first_refusal.is_none() {
                                    answered.first_refusal =
                                        Some(String::from_utf8_lossy(text).into_owned());
                                }
                            }
                            other => {
                                return Err(Failed::transient(format!(
                                    "unexpected reply to PUBLISH: {other:?}"
                                )));
                            }
                        }
                        if got == replies {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(p) => {
                        return Err(Failed::transient(format!(
                            "unreadable reply to PUBLISH: {p}"
                        )));
                    }
                }
            }
            if got == replies {
                break;
            }
            self.buf.drain(..start);
            start = 0;
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_BUF);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(Failed::transient("redis closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(Failed::transient(format!("reading replies: {e}"))),
            }
        }
        self.buf.drain(..start);
        Ok(answered)
    }

    /// Sends a `PING`; true when answered within `timeout`.
    pub(crate) async fn ping(&mut self, timeout: Duration) -> bool {
        self.out.clear();
        lean::put_command(&mut self.out, &[b"PING"]);
        let exchange = async {
            write_flush(&mut self.stream, &self.out).await.ok()?;
            loop {
                match lean::next_token(&self.buf, 0) {
                    Ok(Some((token, used))) => {
                        let pong = matches!(token, Token::Status(_));
                        self.buf.drain(..used);
                        return Some(pong);
                    }
                    Ok(None) => {}
                    Err(_) => return None,
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(n) if n > 0 => {}
                    _ => return None,
                }
            }
        };
        matches!(
            tokio::time::timeout(timeout, exchange).await,
            Ok(Some(true))
        )
    }
}
