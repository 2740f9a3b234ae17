//! The outbox sender's connection: one pipeline of `PUBLISH`es per batch.
//!
//! On plain TCP the commands are encoded by hand into one buffer and the
//! integer replies read straight from the socket (no `redis::Cmd`, no
//! `redis::Value`, no multiplexer task in between); with TLS the batch goes
//! through a redis-rs connection.

use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use switchyard_core::Result;
use switchyard_redis::lean::{self, Token};
use switchyard_redis::{RedisClient, is_transient, redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::outbox::OutboxEntry;

/// Read buffer size of the lean connection.
const READ_BUF: usize = 16 * 1024;
/// Largest batch buffer kept between batches.
const KEEP_OUT: usize = 8 * 1024 * 1024;

/// What Redis answered to one batch.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    /// `PUBLISH`es Redis refused (an error reply each).
    pub(crate) refused: usize,
    /// The first refusal's text.
    pub(crate) first_refusal: Option<String>,
}

/// Why a batch got no answer.
#[derive(Debug)]
pub(crate) struct Failed {
    /// Whether retrying on a new connection may help.
    pub(crate) transient: bool,
    pub(crate) reason: String,
}

impl Failed {
    fn transient(reason: String) -> Self {
        Failed {
            transient: true,
            reason,
        }
    }
}

/// The sender's connection.
pub(crate) enum PublishConn {
    Lean(LeanPublisher),
    Redis(MultiplexedConnection),
}

impl PublishConn {
    /// Opens the lean connection on plain TCP, a redis-rs one with TLS.
    pub(crate) async fn open(client: &RedisClient) -> Result<Self> {
        let cfg = client.config();
        if cfg.tls {
            let conn = client.dedicated(Some(cfg.response_timeout)).await?;
            return Ok(PublishConn::Redis(conn));
        }
        let stream = lean::connect(cfg).await?;
        Ok(PublishConn::Lean(LeanPublisher {
            stream,
            out: Vec::new(),
            buf: Vec::with_capacity(READ_BUF),
        }))
    }

    /// Sends `batch` as one pipeline and reads every reply, all within
    /// `timeout`. A failure leaves the connection unusable.
    pub(crate) async fn publish(
        &mut self,
        batch: &[OutboxEntry],
        timeout: Duration,
    ) -> std::result::Result<Answered, Failed> {
        match self {
            PublishConn::Lean(lean) => lean.publish(batch, timeout).await,
            PublishConn::Redis(conn) => publish_redis_rs(conn, batch, timeout).await,
        }
    }

    /// Sends a `PING`; true when answered within `timeout`.
    pub(crate) async fn ping(&mut self, timeout: Duration) -> bool {
        match self {
            PublishConn::Lean(lean) => lean.ping(timeout).await,
            PublishConn::Redis(conn) => matches!(
                tokio::time::timeout(timeout, redis::cmd("PING").query_async::<Value>(conn)).await,
                Ok(Ok(_))
            ),
        }
    }
}

async fn publish_redis_rs(
    conn: &mut MultiplexedConnection,
    batch: &[OutboxEntry],
    timeout: Duration,
) -> std::result::Result<Answered, Failed> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for e in batch {
        pipe.cmd("PUBLISH").arg(&e.channel).arg(&e.frame[..]);
    }
    match tokio::time::timeout(timeout, pipe.query_async::<Vec<Value>>(conn)).await {
        Ok(Ok(replies)) => {
            let mut answered = Answered::default();
            for v in &replies {
                if let Value::ServerError(e) = v {
                    answered.refused += 1;
                    if answered.first_refusal.is_none() {
                        answered.first_refusal = Some(format!("{e:?}"));
                    }
                }
            }
            Ok(answered)
        }
        Ok(Err(e)) => Err(Failed {
            transient: is_transient(&e),
            reason: e.to_string(),
        }),
        Err(_) => Err(Failed::transient(format!("no reply within {timeout:?}"))),
    }
}

/// A plain TCP connection that only publishes.
pub(crate) struct LeanPublisher {
    stream: TcpStream,
    /// The encoded batch, reused.
    out: Vec<u8>,
    /// Replies read but not parsed yet.
    buf: Vec<u8>,
}

impl LeanPublisher {
    async fn publish(
        &mut self,
        batch: &[OutboxEntry],
        timeout: Duration,
    ) -> std::result::Result<Answered, Failed> {
        self.out.clear();
        for e in batch {
            self.out.reserve(40 + e.channel.len() + e.frame.len());
            lean::put_array_header(&mut self.out, 3);
            self.out.extend_from_slice(b"$7\r\nPUBLISH\r\n");
            lean::put_bulk(&mut self.out, e.channel.as_bytes());
            lean::put_bulk(&mut self.out, &e.frame);
        }
        let result = match tokio::time::timeout(timeout, self.exchange(batch.len())).await {
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
        self.stream
            .write_all(&self.out)
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
                            Token::Int(_) => {}
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

    async fn ping(&mut self, timeout: Duration) -> bool {
        self.out.clear();
        lean::put_command(&mut self.out, &[b"PING"]);
        let exchange = async {
            self.stream.write_all(&self.out).await.ok()?;
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
