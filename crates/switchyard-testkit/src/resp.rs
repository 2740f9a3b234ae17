//! A tiny, blocking RESP2 client used to talk to test servers without the
//! `redis` crate.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::TestkitError;
use crate::tls_client::{self, TlsConnect, TlsStream};

/// Default connect/read/write timeout of a [`RespConnection`].
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest accepted simple string / error / integer / length line.
const MAX_LINE: usize = 64 * 1024;
/// Largest accepted bulk string (Redis' own `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Largest accepted array length.
const MAX_ARRAY: usize = 64 * 1024 * 1024;
/// Deepest accepted array nesting.
const MAX_DEPTH: usize = 64;

/// A RESP2 reply value.
#[derive(Clone, PartialEq, Eq)]
pub enum RespValue {
    /// A simple string (`+OK`).
    Simple(String),
    /// An error reply (`-ERR ...`), without the leading `-`.
    Error(String),
    /// An integer (`:42`).
    Integer(i64),
    /// A bulk string (`$3\r\nfoo`).
    Bulk(Vec<u8>),
    /// An array (`*2 ...`).
    Array(Vec<RespValue>),
    /// A null bulk string or null array (`$-1`, `*-1`).
    Null,
}

impl RespValue {
    /// The value as text: a simple string, or a bulk string that is valid
    /// UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RespValue::Simple(s) => Some(s),
            RespValue::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The raw bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            RespValue::Simple(s) => Some(s.as_bytes()),
            RespValue::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an integer: an integer reply, or a simple/bulk string
    /// that parses as one (Redis returns numbers as bulk strings in many
    /// places, e.g. `GET` of a counter).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            RespValue::Integer(i) => Some(*i),
            other => other.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// The elements of an array reply.
    pub fn as_array(&self) -> Option<&[RespValue]> {
        match self {
            RespValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The message of an error reply.
    pub fn as_error(&self) -> Option<&str> {
        match self {
            RespValue::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is a null reply.
    pub fn is_null(&self) -> bool {
        matches!(self, RespValue::Null)
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, RespValue::Error(_))
    }

    /// Whether this is the simple string `OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, RespValue::Simple(s) if s == "OK")
    }

    /// Turns an error reply into [`TestkitError::Reply`]; any other value is
    /// returned unchanged.
    pub fn into_result(self) -> Result<RespValue, TestkitError> {
        match self {
            RespValue::Error(e) => Err(TestkitError::Reply(e)),
            other => Ok(other),
        }
    }
}

impl fmt::Debug for RespValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespValue::Simple(s) => write!(f, "Simple({s:?})"),
            RespValue::Error(e) => write!(f, "Error({e:?})"),
            RespValue::Integer(i) => write!(f, "Integer({i})"),
            RespValue::Bulk(b) => match std::str::from_utf8(b) {
                Ok(s) => write!(f, "Bulk({s:?})"),
                Err(_) => write!(f, "Bulk({b:?})"),
            },
            RespValue::Array(items) => f.debug_tuple("Array").field(items).finish(),
            RespValue::Null => write!(f, "Null"),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub(crate) fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn protocol(msg: impl Into<String>) -> TestkitError {
    TestkitError::Protocol(msg.into())
}

fn eof() -> TestkitError {
    TestkitError::io(
        "reading reply",
        io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by peer"),
    )
}

/// Reads one CRLF-terminated line (without the CRLF).
fn read_line<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, TestkitError> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_LINE + 2).unwrap_or(u64::MAX);
    let n = reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(|e| TestkitError::io("reading reply", e))?;
    if n == 0 {
        return Err(eof());
    }
    if line.last() != Some(&b'\n') {
        if line.len() >= MAX_LINE {
            return Err(protocol("reply line too long"));
        }
        return Err(eof());
    }
    line.pop();
    if line.pop() != Some(b'\r') {
        return Err(protocol("line not terminated by CRLF"));
    }
    Ok(line)
}

fn parse_int(bytes: &[u8]) -> Result<i64, TestkitError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            protocol(format!(
                "invalid integer {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

fn utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Reads one RESP2 value. Never panics on malformed input.
pub(crate) fn read_value<R: BufRead>(reader: &mut R) -> Result<RespValue, TestkitError> {
    read_value_at(reader, 0)
}

fn read_value_at<R: BufRead>(reader: &mut R, depth: usize) -> Result<RespValue, TestkitError> {
    if depth > MAX_DEPTH {
        return Err(protocol("arrays nested too deeply"));
    }
    let line = read_line(reader)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(protocol("empty reply line"));
    };
    match kind {
        b'+' => Ok(RespValue::Simple(utf8(rest.to_vec()))),
        b'-' => Ok(RespValue::Error(utf8(rest.to_vec()))),
        b':' => Ok(RespValue::Integer(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            if len == -1 {
                return Ok(RespValue::Null);
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_BULK)
                .ok_or_else(|| protocol(format!("invalid bulk length {len}")))?;
            let mut data = Vec::with_capacity(len.min(64 * 1024));
            let want = u64::try_from(len).unwrap_or(u64::MAX);
            reader
                .by_ref()
                .take(want)
                .read_to_end(&mut data)
                .map_err(|e| TestkitError::io("reading reply", e))?;
            if data.len() != len {
                return Err(eof());
            }
            let mut crlf = [0u8; 2];
            reader
                .read_exact(&mut crlf)
                .map_err(|e| TestkitError::io("reading reply", e))?;
            if &crlf != b"\r\n" {
                return Err(protocol("bulk string not terminated by CRLF"));
            }
            Ok(RespValue::Bulk(data))
        }
        b'*' => {
            let len = parse_int(rest)?;
            if len == -1 {
                return Ok(RespValue::Null);
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_ARRAY)
                .ok_or_else(|| protocol(format!("invalid array length {len}")))?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_value_at(reader, depth + 1)?);
            }
            Ok(RespValue::Array(items))
        }
        other => Err(protocol(format!(
            "unexpected reply type byte 0x{other:02x} (RESP3 is not supported)"
        ))),
    }
}

/// The byte stream under a [`RespConnection`]: plain TCP or TLS.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => tls_client::socket(s),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking RESP2 connection to a Redis server (or anything else that
/// speaks RESP, such as a [`FaultProxy`](crate::FaultProxy) in front of one),
/// over plain TCP or TLS ([`connect_tls`](Self::connect_tls)).
///
/// Every connect, read and write is bounded by a timeout
/// ([`DEFAULT_IO_TIMEOUT`] unless changed with
/// [`set_timeout`](Self::set_timeout)).
#[derive(Debug)]
pub struct RespConnection {
    stream: BufReader<Stream>,
    peer: SocketAddr,
}

impl RespConnection {
    /// Connects to `addr` with the default 5 s timeout.
    pub fn connect(addr: SocketAddr) -> Result<RespConnection, TestkitError> {
        Self::connect_timeout(addr, DEFAULT_IO_TIMEOUT)
    }

    /// Connects to `addr`; `timeout` bounds the connect and every later read
    /// and write.
    pub fn connect_timeout(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<RespConnection, TestkitError> {
        let tcp = tcp_connect(addr, timeout)?;
        Self::over(Stream::Plain(tcp), addr, timeout)
    }

    /// Connects to `addr` with TLS as `tls` says, with the default 5 s
    /// timeout. The handshake is done before this returns: an untrusted,
    /// expired or wrong-name server certificate fails here (an I/O error of
    /// kind `InvalidData` naming the reason). A server that refuses the
    /// client's certificate (or its absence) may only say so on the first
    /// reply (TLS 1.3).
    pub fn connect_tls(addr: SocketAddr, tls: &TlsConnect) -> Result<RespConnection, TestkitError> {
        Self::connect_tls_timeout(addr, tls, DEFAULT_IO_TIMEOUT)
    }

    /// Like [`connect_tls`](Self::connect_tls); `timeout` bounds the
    /// connect, the handshake and every later read and write.
    pub fn connect_tls_timeout(
        addr: SocketAddr,
        tls: &TlsConnect,
        timeout: Duration,
    ) -> Result<RespConnection, TestkitError> {
        let tcp = tcp_connect(addr, timeout)?;
        let stream = tls_client::handshake(tcp, tls).map_err(|e| match e {
            TestkitError::Io { context, source } => TestkitError::Io {
                context: format!("{context} with {addr}"),
                source,
            },
            other => other,
        })?;
        Self::over(Stream::Tls(Box::new(stream)), addr, timeout)
    }

    fn over(
        stream: Stream,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<RespConnection, TestkitError> {
        let conn = RespConnection {
            stream: BufReader::new(stream),
            peer,
        };
        conn.set_timeout(timeout)?;
        Ok(conn)
    }

    /// Whether this connection is encrypted with TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream.get_ref(), Stream::Tls(_))
    }

    /// The address this connection was opened to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sets the read and write timeout of the socket (a zero duration is
    /// treated as 1 ms).
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), TestkitError> {
        let timeout = Some(nonzero(timeout));
        let socket = self.stream.get_ref().socket();
        socket
            .set_read_timeout(timeout)
            .and_then(|()| socket.set_write_timeout(timeout))
            .map_err(|e| TestkitError::io("setting socket timeout", e))
    }

    /// Sends a command and returns its reply; an error reply becomes
    /// [`TestkitError::Reply`].
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<RespValue, TestkitError> {
        self.command_raw(args)?.into_result()
    }

    /// Sends a command and returns its reply as is (an error reply is
    /// `Ok(RespValue::Error(..))`).
    pub fn command_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<RespValue, TestkitError> {
        self.send(args)?;
        self.read_reply()
    }

    /// Sends a command without waiting for its reply (for pipelining, or for
    /// commands such as `SUBSCRIBE` whose replies are read with
    /// [`read_reply`](Self::read_reply)).
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), TestkitError> {
        if args.is_empty() {
            return Err(protocol("empty command"));
        }
        let bytes = encode_command(args);
        let writer = self.stream.get_mut();
        writer
            .write_all(&bytes)
            .and_then(|()| writer.flush())
            .map_err(|e| TestkitError::io("sending command", e))
    }

    /// Reads the next reply (error replies are returned as values).
    pub fn read_reply(&mut self) -> Result<RespValue, TestkitError> {
        read_value(&mut self.stream)
    }

    /// Authenticates: `AUTH password` when `user` is `None`, else
    /// `AUTH user password`.
    pub fn auth(&mut self, user: Option<&str>, password: &str) -> Result<(), TestkitError> {
        match user {
            Some(user) => self.command(&["AUTH", user, password])?,
            None => self.command(&["AUTH", password])?,
        };
        Ok(())
    }
}

/// Opens a TCP connection with `timeout` and `TCP_NODELAY`.
fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, TestkitError> {
    let tcp = TcpStream::connect_timeout(&addr, nonzero(timeout))
        .map_err(|e| TestkitError::io(format!("connecting to {addr}"), e))?;
    let _ = tcp.set_nodelay(true);
    // Bounds the TLS handshake too; `over` sets the same again.
    let timeout = Some(nonzero(timeout));
    tcp.set_read_timeout(timeout)
        .and_then(|()| tcp.set_write_timeout(timeout))
        .map_err(|e| TestkitError::io("setting socket timeout", e))?;
    Ok(tcp)
}

fn nonzero(d: Duration) -> Duration {
    if d.is_zero() {
        Duration::from_millis(1)
    } else {
        d
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<RespValue, TestkitError> {
        read_value(&mut &bytes[..])
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn parses_all_types() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), RespValue::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR bad\r\n").unwrap(),
            RespValue::Error("ERR bad".into())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), RespValue::Integer(-42));
        assert_eq!(
            parse(b"$3\r\na\r\n\r\n").unwrap(),
            RespValue::Bulk(b"a\r\n".to_vec())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), RespValue::Null);
        assert_eq!(parse(b"*-1\r\n").unwrap(), RespValue::Null);
        assert_eq!(
            parse(b"*2\r\n:1\r\n*1\r\n$0\r\n\r\n").unwrap(),
            RespValue::Array(vec![
                RespValue::Integer(1),
                RespValue::Array(vec![RespValue::Bulk(Vec::new())])
            ])
        );
    }

    #[test]
    fn accessors() {
        assert_eq!(RespValue::Bulk(b"12".to_vec()).as_int(), Some(12));
        assert_eq!(RespValue::Simple("PONG".into()).as_str(), Some("PONG"));
        assert!(RespValue::Simple("OK".into()).is_ok());
        assert!(RespValue::Error("x".into()).into_result().is_err());
    }

    #[test]
    fn rejects_bad_bytes_without_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"?x\r\n",
            b":abc\r\n",
            b"$5\r\nab",
            b"$2\r\nabXY",
            b"$-7\r\n",
            b"$99999999999999999999\r\n",
            b"*3\r\n:1\r\n",
            b"*-2\r\n",
            b"+OK\n",
            b"+OK",
            b"%1\r\n",
            b"\xff\xfe\r\n",
        ];
        for case in cases {
            assert!(parse(case).is_err(), "{case:?} should fail");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
        let long = format!("+{}\r\n", "a".repeat(MAX_LINE + 10));
        assert!(parse(long.as_bytes()).is_err());
    }

    #[test]
    fn truncated_input_is_eof() {
        assert!(parse(b"$5\r\nab").unwrap_err().is_disconnect());
        assert!(parse(b"").unwrap_err().is_disconnect());
    }
}
