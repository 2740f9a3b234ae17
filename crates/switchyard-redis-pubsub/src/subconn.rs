//! The subscribing connection, as the receiving loop sees it.
//!
//! The loop owns the connection (plain TCP or TLS, the same code over a
//! [`RedisStream`]): push frames are parsed straight from the read buffer
//! into channel and payload slices (no `redis::Value`, no `redis::Msg`, no
//! task in between), and subscription confirmations and `PING` replies
//! arrive in the same stream.
//!
//! The loop's interface: change subscriptions (waiting for Redis to confirm
//! each name, handing over messages that arrive meanwhile), start a
//! liveness probe, and wait for the next [`Incoming`].

use std::time::Duration;

use switchyard_core::Result;
use switchyard_redis::RedisClient;
use switchyard_redis::lean::{self, RedisStream, Token, write_flush};
use tokio::io::AsyncReadExt;

mod sharded;

#[allow(unused_imports)]
pub(crate) use sharded::ShardedOutcome;

/// Initial read buffer of the lean connection.
const READ_BUF: usize = 64 * 1024;
/// Largest read buffer kept once everything in it was handled.
const KEEP_BUF: usize = 1024 * 1024;
/// Largest bulk string accepted in a push frame (Redis' own default
/// `proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// A subscription change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Subscribe,
    PSubscribe,
    Unsubscribe,
    PUnsubscribe,
    /// Sharded pub/sub (Redis Cluster).
    SSubscribe,
    SUnsubscribe,
}

impl Change {
    pub(crate) fn command(self) -> &'static str {
        match self {
            Change::Subscribe => "SUBSCRIBE",
            Change::PSubscribe => "PSUBSCRIBE",
            Change::Unsubscribe => "UNSUBSCRIBE",
            Change::PUnsubscribe => "PUNSUBSCRIBE",
            Change::SSubscribe => "SSUBSCRIBE",
            Change::SUnsubscribe => "SUNSUBSCRIBE",
        }
    }
}

/// Why a subscription change did not go through.
#[derive(Debug)]
pub(crate) enum ChangeError {
    /// Redis answered with an error reply (e.g. `NOPERM` for a channel the
    /// ACL user may not use); the connection stays usable.
    Refused(String),
    /// No confirmation in time, or the connection failed: it is unusable.
    Failed(String),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Refused(e) | ChangeError::Failed(e) => f.write_str(e),
        }
    }
}

/// What arrived on the connection.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// A `message` or `pmessage`.
    Message {
        channel: &'a [u8],
        payload: &'a [u8],
    },
    /// The liveness probe was answered.
    ProbeAnswered,
    /// Redis ended a sharded subscription by itself (`sunsubscribe`): the
    /// channel's slot moved to another node (resharding or failover).
    Unsubscribed(&'a [u8]),
    /// Redis closed the connection.
    Closed,
    /// The connection is unusable.
    Failed(String),
}

/// The subscribing connection (one kind: the lean one, over TCP or TLS).
pub(crate) enum SubConn {
    Lean(Box<LeanSub>),
}

impl SubConn {
    /// Opens the connection (TCP or TLS); the server has answered a
    /// `PING` (after `AUTH` and `SELECT`) within the connect timeout, or
    /// this fails.
    pub(crate) async fn open(client: &RedisClient) -> Result<SubConn> {
        Self::open_to(client.config()).await
    }

    /// [`open`](Self::open) to the server of `cfg` (a cluster node).
    pub(crate) async fn open_to(cfg: &switchyard_redis::RedisConfig) -> Result<SubConn> {
        let stream = lean::connect(cfg).await?;
        Ok(SubConn::Lean(Box::new(LeanSub {
            stream,
            buf: Vec::with_capacity(READ_BUF),
            start: 0,
            out: Vec::new(),
            probing: false,
            answered: false,
        })))
    }

    /// Changes subscriptions for `names` and waits until Redis confirmed
    /// each, at most `timeout`; messages arriving meanwhile go to `on_msg`.
    pub(crate) async fn change(
        &mut self,
        change: Change,
        names: &[String],
        timeout: Duration,
        on_msg: &mut (dyn FnMut(&[u8], &[u8]) + Send),
    ) -> std::result::Result<(), ChangeError> {
        let what = change.command();
        match self {
            SubConn::Lean(l) => {
                let confirmed =
                    tokio::time::timeout(timeout, l.change(change, names, on_msg)).await;
                match confirmed {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(ChangeError::Refused(e))) => {
                        Err(ChangeError::Refused(format!("{what}: {e}")))
                    }
                    Ok(Err(ChangeError::Failed(e))) => {
                        Err(ChangeError::Failed(format!("{what}: {e}")))
                    }
                    Err(_) => Err(ChangeError::Failed(format!(
                        "{what}: not confirmed within {timeout:?}"
                    ))),
                }
            }
        }
    }

    /// Sends a liveness `PING`; its answer comes as
    /// [`Incoming::ProbeAnswered`].
    pub(crate) async fn start_probe(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        match self {
            SubConn::Lean(l) => match tokio::time::timeout(timeout, l.start_probe_now()).await {
                Ok(r) => r,
                Err(_) => Err(format!("PING: could not be sent within {timeout:?}")),
            },
        }
    }

    /// Waits for the next event. Cancel-safe: dropping the future loses
    /// nothing.
    pub(crate) async fn next(&mut self) -> Incoming<'_> {
        match self {
            SubConn::Lean(l) => l.next().await,
        }
    }

    /// The next event if one is ready without waiting (bytes already read).
    pub(crate) fn next_ready(&mut self) -> Option<Incoming<'_>> {
        match self {
            SubConn::Lean(l) => l.next_buffered(),
        }
    }
}

/// One parsed frame, as positions in the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Message {
        channel: (usize, usize),
        payload: (usize, usize),
    },
    /// A `subscribe`, `psubscribe`, `unsubscribe`, `punsubscribe`,
    /// `ssubscribe` or `sunsubscribe` confirmation, for one name (its
    /// position).
    Confirmed(Change, (usize, usize)),
    Pong,
    /// An error reply (to a command the connection sent).
    Error((usize, usize)),
}

/// The bytes are not what a subscribed connection sends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unexpected(pub(crate) &'static str);

/// The next token of `buf` at `*pos` and where it began; moves `*pos` past it.
fn token<'b>(
    buf: &'b [u8],
    pos: &mut usize,
) -> std::result::Result<Option<(Token<'b>, usize)>, Unexpected> {
    match lean::next_token(&buf[*pos..], MAX_BULK) {
        Ok(Some((t, used))) => {
            let begin = *pos;
            *pos += used;
            Ok(Some((t, begin)))
        }
        Ok(None) => Ok(None),
        Err(p) => Err(Unexpected(p.0)),
    }
}

/// Parses one frame from `buf[at..]`: `Ok(None)` when more bytes are
/// needed, else the frame (positions relative to `buf`) and the offset
/// after it.
pub(crate) fn parse_frame(
    buf: &[u8],
    at: usize,
) -> std::result::Result<Option<(Frame, usize)>, Unexpected> {
    let mut pos = at;
    let Some((head, _)) = token(buf, &mut pos)? else {
        return Ok(None);
    };
    let n = match head {
        Token::Array(n) => n,
        Token::Error(text) => {
            let begin = pos - text.len() - 2;
            return Ok(Some((Frame::Error((begin, begin + text.len())), pos)));
        }
        // The answer to a PING sent before anything was subscribed.
        Token::Status(b"PONG") => return Ok(Some((Frame::Pong, pos))),
        _ => return Err(Unexpected("a reply that is not a push frame")),
    };
    if !(2..=4).contains(&n) {
        return Err(Unexpected("a push frame of an unexpected length"));
    }
    // Every element is a bulk string or (the subscription count) an integer.
    let mut parts: [(usize, usize); 4] = [(0, 0); 4];
    for part in parts.iter_mut().take(n) {
        let Some((t, begin)) = token(buf, &mut pos)? else {
            return Ok(None);
        };
        *part = match t {
            Token::Bulk(b) => {
                let end = pos - 2;
                (end - b.len(), end)
            }
            Token::Int(_) => (begin, begin),
            _ => return Err(Unexpected("a push frame element of an unexpected type")),
        };
    }
    let kind = &buf[parts[0].0..parts[0].1];
    let frame = match (kind, n) {
        (b"message" | b"smessage", 3) => Frame::Message {
            channel: parts[1],
            payload: parts[2],
        },
        (b"pmessage", 4) => Frame::Message {
            channel: parts[2],
            payload: parts[3],
        },
        (b"subscribe", 3) => Frame::Confirmed(Change::Subscribe, parts[1]),
        (b"psubscribe", 3) => Frame::Confirmed(Change::PSubscribe, parts[1]),
        (b"unsubscribe", 3) => Frame::Confirmed(Change::Unsubscribe, parts[1]),
        (b"punsubscribe", 3) => Frame::Confirmed(Change::PUnsubscribe, parts[1]),
        (b"ssubscribe", 3) => Frame::Confirmed(Change::SSubscribe, parts[1]),
        (b"sunsubscribe", 3) => Frame::Confirmed(Change::SUnsubscribe, parts[1]),
        (b"pong", 2) => Frame::Pong,
        _ => return Err(Unexpected("an unknown push frame")),
    };
    Ok(Some((frame, pos)))
}

/// The lean subscribing connection (plain TCP or TLS).
pub(crate) struct LeanSub {
    stream: RedisStream,
    /// Bytes read; `buf[start..]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    /// Commands being written, reused.
    out: Vec<u8>,
    /// A liveness `PING` is unanswered.
    probing: bool,
    /// Its answer came while a subscription change was waiting.
    answered: bool,
}

/// What one step of reading gave.
enum Step {
    Frame(Frame),
    Closed,
    Failed(String),
}

impl LeanSub {
    async fn start_probe_now(&mut self) -> std::result::Result<(), String> {
        self.out.clear();
        lean::put_command(&mut self.out, &[b"PING"]);
        write_flush(&mut self.stream, &self.out)
            .await
            .map_err(|e| format!("PING: writing failed: {e}"))?;
        self.probing = true;
        Ok(())
    }

    /// The next frame from what is buffered, if complete.
    fn parse_buffered(&mut self) -> Option<Step> {
        match parse_frame(&self.buf, self.start) {
            Ok(Some((frame, next))) => {
                self.start = next;
                Some(Step::Frame(frame))
            }
            Ok(None) => None,
            Err(Unexpected(what)) => {
                Some(Step::Failed(format!("unreadable frame from redis: {what}")))
            }
        }
    }

    /// The next frame, reading as needed. Cancel-safe.
    async fn step(&mut self) -> Step {
        loop {
            if let Some(step) = self.parse_buffered() {
                return step;
            }
            if self.start == self.buf.len() {
                if self.buf.capacity() > KEEP_BUF {
                    // A large frame has been handled: give its memory back.
                    self.buf = Vec::with_capacity(READ_BUF);
                }
                self.buf.clear();
                self.start = 0;
            } else if self.start >= READ_BUF {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_BUF);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Step::Closed,
                Ok(_) => {}
                Err(e) => return Step::Failed(format!("reading from redis: {e}")),
            }
        }
    }

    /// Turns a frame into what the loop sees.
    fn incoming(&mut self, frame: Frame) -> Incoming<'_> {
        match frame {
            Frame::Message { channel, payload } => Incoming::Message {
                channel: &self.buf[channel.0..channel.1],
                payload: &self.buf[payload.0..payload.1],
            },
            Frame::Pong if self.probing => {
                self.probing = false;
                Incoming::ProbeAnswered
            }
            Frame::Pong => Incoming::Failed("an unexpected PING reply".into()),
            Frame::Confirmed(Change::SUnsubscribe, name) => {
                Incoming::Unsubscribed(&self.buf[name.0..name.1])
            }
            Frame::Confirmed(c, _) => {
                Incoming::Failed(format!("an unexpected {} confirmation", c.command()))
            }
            Frame::Error((a, b)) => Incoming::Failed(format!(
                "redis answered with an error: {}",
                String::from_utf8_lossy(&self.buf[a..b])
            )),
        }
    }

    async fn next(&mut self) -> Incoming<'_> {
        if std::mem::take(&mut self.answered) {
            self.probing = false;
            return Incoming::ProbeAnswered;
        }
        match self.step().await {
            Step::Frame(f) => self.incoming(f),
            Step::Closed => Incoming::Closed,
            Step::Failed(e) => Incoming::Failed(e),
        }
    }

    fn next_buffered(&mut self) -> Option<Incoming<'_>> {
        if std::mem::take(&mut self.answered) {
            self.probing = false;
            return Some(Incoming::ProbeAnswered);
        }
        match self.parse_buffered()? {
            Step::Frame(f) => Some(self.incoming(f)),
            Step::Closed => Some(Incoming::Closed),
            Step::Failed(e) => Some(Incoming::Failed(e)),
        }
    }

    async fn change(
        &mut self,
        change: Change,
        names: &[String],
        on_msg: &mut (dyn FnMut(&[u8], &[u8]) + Send),
    ) -> std::result::Result<(), ChangeError> {
        if names.is_empty() {
            return Ok(());
        }
        self.out.clear();
        lean::put_array_header(&mut self.out, names.len() + 1);
        lean::put_bulk(&mut self.out, change.command().as_bytes());
        for n in names {
            lean::put_bulk(&mut self.out, n.as_bytes());
        }
        write_flush(&mut self.stream, &self.out)
            .await
            .map_err(|e| ChangeError::Failed(format!("writing failed: {e}")))?;
        let mut confirmed = 0;
        while confirmed < names.len() {
            match self.step().await {
                Step::Frame(Frame::Confirmed(c, _)) if c == change => confirmed += 1,
                Step::Frame(Frame::Message { channel, payload }) => {
                    on_msg(
                        &self.buf[channel.0..channel.1],
                        &self.buf[payload.0..payload.1],
                    );
                }
                Step::Frame(Frame::Pong) if self.probing => self.answered = true,
                Step::Frame(Frame::Error((a, b))) => {
                    // Redis refuses a whole command (no name of it is
                    // confirmed); the connection stays usable.
                    return Err(ChangeError::Refused(
                        String::from_utf8_lossy(&self.buf[a..b]).into_owned(),
                    ));
                }
                Step::Frame(other) => {
                    return Err(ChangeError::Failed(format!("unexpected frame {other:?}")));
                }
                Step::Closed => return Err(ChangeError::Failed("the connection closed".into())),
                Step::Failed(e) => return Err(ChangeError::Failed(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8]) -> Option<(Frame, usize)> {
        parse_frame(bytes, 0).unwrap()
    }

    #[test]
    fn push_frames() {
        let m = b"*3\r\n$7\r\nmessage\r\n$4\r\nns:a\r\n$3\r\nxyz\r\n";
        let Some((Frame::Message { channel, payload }, used)) = frame(m) else {
            panic!("not a message");
        };
        assert_eq!(&m[channel.0..channel.1], b"ns:a");
        assert_eq!(&m[payload.0..payload.1], b"xyz");
        assert_eq!(used, m.len());
        for cut in 0..m.len() {
            assert_eq!(parse_frame(&m[..cut], 0), Ok(None), "cut at {cut}");
        }
        let p = b"*4\r\n$8\r\npmessage\r\n$4\r\nns:*\r\n$4\r\nns:b\r\n$0\r\n\r\n";
        let Some((Frame::Message { channel, payload }, _)) = frame(p) else {
            panic!("not a pmessage");
        };
        assert_eq!(&p[channel.0..channel.1], b"ns:b");
        assert_eq!(payload.0, payload.1);
        assert_eq!(
            frame(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nns:a\r\n:1\r\n"),
            Some((Frame::Confirmed(Change::Subscribe, (23, 27)), 33))
        );
        assert_eq!(
            frame(b"*3\r\n$12\r\npunsubscribe\r\n$4\r\nns:*\r\n:0\r\n").map(|f| f.0),
            Some(Frame::Confirmed(Change::PUnsubscribe, (27, 31)))
        );
        let s = b"*3\r\n$8\r\nsmessage\r\n$4\r\nns:a\r\n$1\r\nx\r\n";
        assert!(matches!(frame(s), Some((Frame::Message { .. }, _))));
        let u = b"*3\r\n$12\r\nsunsubscribe\r\n$4\r\nns:a\r\n:0\r\n";
        let Some((Frame::Confirmed(Change::SUnsubscribe, name), _)) = frame(u) else {
            panic!("not a sunsubscribe");
        };
        assert_eq!(&u[name.0..name.1], b"ns:a");
        assert_eq!(
            frame(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            Some((Frame::Pong, 20))
        );
        assert_eq!(frame(b"+PONG\r\n"), Some((Frame::Pong, 7)));
        let e = b"-NOPERM no\r\n";
        assert_eq!(frame(e), Some((Frame::Error((1, 10)), 12)));
        // Two frames back to back: the second starts where the first ended.
        let mut two = m.to_vec();
        two.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        assert_eq!(
            parse_frame(&two, m.len()).unwrap().map(|f| f.0),
            Some(Frame::Pong)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"+OK\r\n"[..],
            b":1\r\n",
            b"*5\r\n",
            b"*1\r\n",
            b"*3\r\n*1\r\n",
            b"*3\r\n$3\r\nfoo\r\n$1\r\na\r\n$1\r\nb\r\n",
            b"*2\r\n$7\r\nmessage\r\n$1\r\na\r\n",
            b"*3\r\n$x\r\n",
            b"!\r\n",
        ] {
            assert!(parse_frame(bad, 0).is_err(), "{bad:?}");
        }
    }
}
