//! The group reader's dedicated connection: a lean RESP2 connection
//! (`switchyard_redis::lean`, the one the publishing path uses: TCP or
//! TLS, `AUTH`/`SELECT`/`PING` at connect, Sentinel resolved there, a
//! cluster node given as its own settings) on which one command at a time
//! is sent and its reply read straight from the bytes.
//!
//! A read may be cut short (the subscriber closes while `XREADGROUP`
//! blocks): the connection remembers that a reply is still owed and skips
//! it before the next reply it reads, so the closer's `PING` on this
//! connection returns only once the cut-short read has ended in Redis.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use switchyard_redis::RedisConfig;
use switchyard_redis::lean::{RedisStream, Token, write_flush};
use tokio::io::AsyncReadExt;

use super::xread::{MAX_BULK, Scan};

/// Initial read buffer size.
const READ_BUF: usize = 64 * 1024;

/// A reader connection shared with the closer (see `reader::settle`).
pub(crate) type SharedReadConn = Arc<tokio::sync::Mutex<ReadConn>>;

/// Why a command on the reading connection failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The server answered with an error reply (`NOGROUP ...`, `MOVED ...`).
    Server(String),
    /// The connection is unusable (lost, closed, timed out, unreadable);
    /// `transient` when reconnecting may help.
    Conn { text: String, transient: bool },
}

impl ReadError {
    /// `NOGROUP`: the group (or its stream) is gone.
    pub(crate) fn is_nogroup(&self) -> bool {
        matches!(self, ReadError::Server(t) if t.contains("NOGROUP"))
    }

    /// `NOPERM` (or a script denial): the user may not run the command.
    pub(crate) fn is_noperm(&self) -> bool {
        matches!(self, ReadError::Server(t) if switchyard_redis::denied::is_noperm_text(t))
    }

    /// Whether reconnecting (after a backoff) may help: a lost connection,
    /// or a transient server code (`LOADING`, `MOVED`, `TRYAGAIN`, ...).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ReadError::Server(t) => {
                switchyard_redis::is_transient_code(t.split_whitespace().next().unwrap_or_default())
            }
            ReadError::Conn { transient, .. } => *transient,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Server(t) => write!(f, "{t}"),
            ReadError::Conn { text, .. } => f.write_str(text),
        }
    }
}

/// One dedicated reading connection.
pub(crate) struct ReadConn {
    stream: RedisStream,
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    start: usize,
    scan: Scan,
    /// Replies the server still owes for commands whose reading was cut
    /// short.
    owed: usize,
    /// A write was cut short or the connection failed: it is unusable.
    broken: bool,
    /// How long a reply may take (the blocking response timeout).
    timeout: Duration,
    addr: String,
}

impl ReadConn {
    /// Connects to `cfg` (TLS, authentication, database and Sentinel as
    /// it says), within its connect timeout; replies may take `timeout`.
    pub(crate) async fn connect(
        cfg: &RedisConfig,
        timeout: Duration,
    ) -> switchyard_core::Result<ReadConn> {
        let stream = switchyard_redis::lean::connect(cfg).await?;
        Ok(ReadConn {
            stream,
            buf: Vec::with_capacity(READ_BUF),
            start: 0,
            scan: Scan::default(),
            owed: 0,
            broken: false,
            timeout,
            addr: cfg.addr(),
        })
    }

    /// Sends one encoded command and returns its whole reply (RESP2 bytes,
    /// never an error reply: that is [`ReadError::Server`]). Replies owed
    /// by reads cut short are skipped first. Cancelling this (dropping the
    /// future) leaves the connection usable unless it happened while
    /// writing.
    pub(crate) async fn request(&mut self, what: &str, command: &[u8]) -> Result<&[u8], ReadError> {
        if self.broken {
            return Err(self.conn_error(what, "the connection was left unusable".into(), true));
        }
        while self.owed > 0 {
            self.next_reply(what).await?;
            self.owed -= 1;
        }
        self.compact();
        self.broken = true;
        let written =
            tokio::time::timeout(self.timeout, write_flush(&mut self.stream, command)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.conn_error(what, format!("writing failed: {e}"), true)),
            Err(_) => {
                let text = format!("writing did not finish within {:?}", self.timeout);
                return Err(self.conn_error(what, text, true));
            }
        }
        self.broken = false;
        self.owed = 1;
        let (from, to) = self.next_reply(what).await?;
        self.owed = 0;
        let reply = &self.buf[from..to];
        if let Ok(Some((Token::Error(text), _))) =
            switchyard_redis::lean::next_token(reply, MAX_BULK)
        {
            return Err(ReadError::Server(
                String::from_utf8_lossy(text).into_owned(),
            ));
        }
        Ok(reply)
    }

    /// Reads until one whole reply is buffered; returns its range in
    /// `buf` and moves past it.
    async fn next_reply(&mut self, what: &str) -> Result<(usize, usize), ReadError> {
        loop {
            let complete = self.scan.complete(&self.buf[self.start..]);
            match complete {
                Ok(Some(len)) => {
                    let from = self.start;
                    self.start += len;
                    return Ok((from, self.start));
                }
                Ok(None) => {}
                Err(p) => {
                    let text = format!("unreadable reply: {p}");
                    return Err(self.conn_error(what, text, false));
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_BUF.max(self.buf.len() / 2));
            }
            let read =
                tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => {
                    return Err(self.conn_error(
                        what,
                        "the server closed the connection".into(),
                        true,
                    ));
                }
                Ok(Err(e)) => {
                    return Err(self.conn_error(what, format!("reading failed: {e}"), true));
                }
                Err(_) => {
                    let text = format!("no reply within {:?}", self.timeout);
                    return Err(self.conn_error(what, text, true));
                }
            }
        }
    }

    /// Drops the bytes already read, keeping a partial reply's.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > 4 * READ_BUF {
                // A huge reply came through: give the memory back.
                self.buf.shrink_to(READ_BUF);
            }
        } else if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Marks the connection unusable and names what failed.
    fn conn_error(&mut self, what: &str, cause: String, transient: bool) -> ReadError {
        self.broken = true;
        ReadError::Conn {
            text: format!("redis {what} on {}: {cause}", self.addr),
            transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_redis::lean::put_command;
    use switchyard_testkit::RedisServer;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        put_command(&mut out, args);
        out
    }

    async fn open(server: &RedisServer, timeout: Duration) -> ReadConn {
        let cfg = RedisConfig::from_url(&server.url()).unwrap();
        ReadConn::connect(&cfg, timeout).await.unwrap()
    }

    #[tokio::test]
    async fn replies_errors_and_a_cut_short_read() {
        let server = RedisServer::start().expect("redis-server starts");
        let mut c = open(&server, Duration::from_secs(10)).await;
        let pong = c.request("PING", &cmd(&[b"PING"])).await.unwrap();
        assert_eq!(pong, b"+PONG\r\n");
        // An error reply is classified, and the connection stays usable.
        let e = c
            .request(
                "XREADGROUP",
                &cmd(&[b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"k", b">"]),
            )
            .await
            .unwrap_err();
        assert!(e.is_nogroup(), "{e}");
        assert!(!e.is_noperm());
        let id = c
            .request("CLIENT ID", &cmd(&[b"CLIENT", b"ID"]))
            .await
            .unwrap();
        let id = std::str::from_utf8(&id[1..id.len() - 2])
            .unwrap()
            .to_owned();
        // A blocked read cut short: its reply is still owed.
        let mut other = open(&server, Duration::from_secs(10)).await;
        other
            .request(
                "XGROUP",
                &cmd(&[b"XGROUP", b"CREATE", b"k", b"g", b"$", b"MKSTREAM"]),
            )
            .await
            .unwrap();
        let read = cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c",
            b"BLOCK",
            b"60000",
            b"STREAMS",
            b"k",
            b">",
        ]);
        let cut =
            tokio::time::timeout(Duration::from_millis(200), c.request("XREADGROUP", &read)).await;
        assert!(cut.is_err(), "the read blocks");
        assert_eq!(c.owed, 1);
        other
            .request(
                "CLIENT UNBLOCK",
                &cmd(&[b"CLIENT", b"UNBLOCK", id.as_bytes()]),
            )
            .await
            .unwrap();
        // PING returns PONG, after skipping the unblocked read's nil reply.
        let started = std::time::Instant::now();
        let pong = c.request("PING", &cmd(&[b"PING"])).await.unwrap();
        assert_eq!(pong, b"+PONG\r\n");
        assert_eq!(c.owed, 0);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn huge_entries_and_a_closed_connection() {
        let server = RedisServer::start().expect("redis-server starts");
        let mut c = open(&server, Duration::from_secs(30)).await;
        let payload = vec![0x5au8; 16 * 1024 * 1024];
        c.request(
            "XGROUP",
            &cmd(&[b"XGROUP", b"CREATE", b"k", b"g", b"0", b"MKSTREAM"]),
        )
        .await
        .unwrap();
        for _ in 0..2 {
            c.request(
                "XADD",
                &cmd(&[
                    b"XADD",
                    b"k",
                    b"*",
                    b"v",
                    b"1",
                    b"d",
                    b"0000000000000000000000000000002a",
                    b"p",
                    &payload,
                ]),
            )
            .await
            .unwrap();
        }
        let read = cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c",
            b"COUNT",
            b"10",
            b"STREAMS",
            b"k",
            b">",
        ]);
        let topic = switchyard_core::Topic::new("k").unwrap();
        let reply = c.request("XREADGROUP", &read).await.unwrap();
        let parsed =
            crate::group::xread::parse_streams(reply, |k| Some((k.to_owned(), topic.clone())))
                .unwrap();
        assert_eq!(parsed[0].1.len(), 2);
        for e in &parsed[0].1 {
            match &e.body {
                Some(crate::group::fetch::Body::Decoded(Ok(m))) => {
                    assert_eq!(m.payload.len(), payload.len());
                }
                other => panic!("not decoded: {other:?}"),
            }
        }
        // The server closes the connection: a transient connection error,
        // and the connection is not used again.
        let _ = c.request("CLIENT KILL", &cmd(&[b"QUIT"])).await;
        let e = c.request("PING", &cmd(&[b"PING"])).await.unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::Conn {
                    transient: true,
                    ..
                }
            ),
            "{e}"
        );
        let e = c.request("PING", &cmd(&[b"PING"])).await.unwrap_err();
        assert!(e.to_string().contains("unusable"), "{e}");
    }
}
