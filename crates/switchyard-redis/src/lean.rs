//! Lean RESP2 plumbing for the adapters' hot paths: commands encoded by
//! hand into one buffer, replies read as flat tokens straight from the
//! bytes (no `redis::Cmd`, no `redis::Value`), and a connect that
//! authenticates, selects the database and checks the server answers
//! `PING`, all within the connect timeout.
//!
//! One code path for TCP and TLS: [`connect`] returns a [`RedisStream`],
//! plain TCP or TLS (rustls, with the trust and identity of the config's
//! `tls_*` settings, see [`crate::tls`]), and everything above it works on
//! any `AsyncRead + AsyncWrite` byte stream.

use std::io;

use switchyard_core::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::stream::{RedisReadHalf, RedisStream, RedisWriteHalf};

use crate::RedisConfig;
use crate::connect::{connect_failed, no_reply, not_redis, refused};

/// Appends the decimal digits of `n`.
pub fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // A digit, always below 10.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        digits[i] = b'0' + digit;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends one bulk string `$len\r\nbytes\r\n`.
pub fn put_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    put_uint(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends the array header `*n\r\n` of a command with `n` arguments.
pub fn put_array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    put_uint(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends any command given as arguments.
pub fn put_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    put_array_header(out, args.len());
    for a in args {
        put_bulk(out, a);
    }
}

/// One RESP2 token: a simple value, or the header of an array whose
/// elements follow as further tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// `+text`
    Status(&'a [u8]),
    /// `-CODE detail`
    Error(&'a [u8]),
    /// `:n`
    Int(i64),
    /// `$len` and its bytes.
    Bulk(&'a [u8]),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n`: the next `n` tokens (each possibly an array) are its elements.
    Array(usize),
}

/// The bytes do not follow RESP2: the connection must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Largest line (status, error, length) accepted before its `\r\n`.
const MAX_LINE: usize = 64 * 1024;

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn parse_int(b: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ProtocolError("a length or integer is not a number"))
}

/// Parses one token from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the token and how many bytes it took. `max_bulk`
/// bounds the bulk strings accepted.
pub fn next_token(
    buf: &[u8],
    max_bulk: usize,
) -> Result<Option<(Token<'_>, usize)>, ProtocolError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(eol) = find_crlf(buf) else {
        if buf.len() > MAX_LINE {
            return Err(ProtocolError("reply line too long"));
        }
        return Ok(None);
    };
    // Empty when the buffer starts with `\r\n` (eol 0): the type byte is
    // then `\r`, refused below.
    let line = buf.get(1..eol).unwrap_or_default();
    let after = eol + 2;
    match kind {
        b'+' => Ok(Some((Token::Status(line), after))),
        b'-' => Ok(Some((Token::Error(line), after))),
        b':' => Ok(Some((Token::Int(parse_int(line)?), after))),
        b'*' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Ok(Some((Token::Nil, after)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError("bad array length"))?;
            Ok(Some((Token::Array(n), after)))
        }
        b'$' => {
            let len = parse_int(line)?;
            if len < 0 {
                return Ok(Some((Token::Nil, after)));
            }
            let len = usize::try_from(len).map_err(|_| ProtocolError("bad bulk length"))?;
            if len > max_bulk {
                return Err(ProtocolError("bulk reply larger than expected"));
            }
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk reply not terminated"));
            }
            Ok(Some((Token::Bulk(&buf[after..end]), end + 2)))
        }
        _ => Err(ProtocolError("unexpected reply type")),
    }
}

/// Opens a connection to `cfg`'s host and port, with `TCP_NODELAY`; with
/// TLS (`rediss`) runs the TLS handshake (trust and identity from the
/// config's `tls_*` settings); sends `AUTH` and `SELECT` when the config
/// asks for them, then `PING`, and reads every reply; all within the
/// connect timeout. So a port that accepts and never answers, a server that
/// is not Redis, a peer that closes at once, a frozen Redis, a missing
/// password (`NOAUTH`), wrong credentials (`WRONGPASS`), a user without the
/// right (`NOPERM`) and a refused certificate ([`Error::Tls`](switchyard_core::Error::Tls)
/// with its kind) all fail here. Errors name the address and the cause,
/// e.g. `could not connect to redis at 127.0.0.1:6390 within 2s: connection
/// refused`, and never show the password.
///
/// With Sentinel settings, connects to the primary the sentinels name now.
pub async fn connect(cfg: &RedisConfig) -> Result<RedisStream> {
    let resolved;
    let cfg = if cfg.sentinel.is_some() {
        resolved = crate::sentinel::resolve(cfg).await?;
        &resolved
    } else {
        cfg
    };
    #[cfg(not(feature = "tls"))]
    if cfg.tls {
        return Err(switchyard_core::Error::FeatureNotEnabled("tls"));
    }
    #[cfg(feature = "tls")]
    let tls = if cfg.tls {
        let name = rustls::pki_types::ServerName::try_from(cfg.host.clone()).map_err(|e| {
            switchyard_core::Error::InvalidConfig(format!(
                "redis host {:?} is not a valid TLS server name: {e}",
                cfg.host
            ))
        })?;
        Some((crate::tls::client_config(cfg)?, name))
    } else {
        None
    };
    crate::tls::warn_if_insecure(cfg);
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let opened =
        tokio::time::timeout_at(deadline, TcpStream::connect((cfg.host.as_str(), cfg.port))).await;
    let tcp = match opened {
        Err(_) => return Err(connect_failed(cfg, "timed out".into())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(connect_failed(cfg, "connection refused".into()));
        }
        Ok(Err(e)) => return Err(connect_failed(cfg, e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    #[cfg(feature = "tls")]
    let mut stream = match tls {
        None => RedisStream::Tcp(tcp),
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
                Err(_) => return Err(no_reply(cfg, "the TLS handshake")),
                Ok(Err(e)) => return Err(handshake_failed(cfg, &e)),
                Ok(Ok(s)) => RedisStream::Tls(Box::new(s)),
            }
        }
    };
    #[cfg(not(feature = "tls"))]
    let mut stream = RedisStream::Tcp(tcp);
    let mut waiting = "the reply to PING";
    match tokio::time::timeout_at(deadline, handshake(cfg, &mut stream, &mut waiting)).await {
        Err(_) => Err(no_reply(cfg, waiting)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(stream),
    }
}

/// The error of a failed TLS handshake: [`Error::Tls`](switchyard_core::Error::Tls)
/// with its kind when rustls says why, else a connect failure.
#[cfg(feature = "tls")]
fn handshake_failed(cfg: &RedisConfig, e: &io::Error) -> switchyard_core::Error {
    let text = e.to_string();
    match crate::tls::tls_failure(cfg, &text) {
        Some((kind, reason)) => crate::tls::tls_error(cfg, kind, reason),
        None => connect_failed(
            cfg,
            crate::connect::closed_early(cfg, &format!("TLS handshake: {text}")),
        ),
    }
}

/// Sends `AUTH` (if configured), `SELECT` (if not db 0) and `PING` in one
/// write and checks each reply; `waiting` names the reply still awaited.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    cfg: &RedisConfig,
    stream: &mut S,
    waiting: &mut &'static str,
) -> Result<()> {
    let mut out = Vec::new();
    let mut expected: Vec<(&'static str, &'static str, &'static [u8])> = Vec::new();
    if let Some(pw) = &cfg.password {
        match &cfg.username {
            Some(user) => put_command(
                &mut out,
                &[b"AUTH", user.as_bytes(), pw.expose().as_bytes()],
            ),
            None => put_command(&mut out, &[b"AUTH", pw.expose().as_bytes()]),
        }
        expected.push(("AUTH", "the reply to AUTH", b"OK"));
    }
    if cfg.db != 0 {
        let db = cfg.db.to_string();
        put_command(&mut out, &[b"SELECT", db.as_bytes()]);
        expected.push(("SELECT", "the reply to SELECT", b"OK"));
    }
    put_command(&mut out, &[b"PING"]);
    expected.push(("PING", "the reply to PING", b"PONG"));
    let closed = |command: &str, detail: &dyn std::fmt::Display| {
        connect_failed(
            cfg,
            crate::connect::closed_early(cfg, &format!("{command}: {detail}")),
        )
    };
    if let Err(e) = write_flush(stream, &out).await {
        return Err(closed(expected[0].0, &e));
    }
    let mut buf = Vec::with_capacity(256);
    for &(command, what, ok) in &expected {
        *waiting = what;
        loop {
            match next_token(&buf, 1024) {
                Ok(Some((Token::Status(text), used))) if text == ok => {
                    buf.drain(..used);
                    break;
                }
                Ok(Some((Token::Error(text), _))) => {
                    return Err(refused(cfg, command, &String::from_utf8_lossy(text)));
                }
                Ok(Some((other, _))) => {
                    return Err(not_redis(cfg, command, &format!("{other:?}")));
                }
                Ok(None) => {}
                Err(p) => {
                    return Err(not_redis(cfg, command, &format!("{p}: {}", snippet(&buf))));
                }
            }
            let mut chunk = [0u8; 256];
            match stream.read(&mut chunk).await {
                Ok(0) => return Err(closed(command, &"end of stream")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    // With TLS 1.3 a refused client certificate shows here,
                    // at the first read after the handshake.
                    if cfg.tls
                        && let Some((kind, reason)) = crate::tls::tls_failure(cfg, &e.to_string())
                    {
                        return Err(crate::tls::tls_error(cfg, kind, reason));
                    }
                    return Err(closed(command, &e));
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `bytes` and flushes (TLS may hold the last record until
/// a flush; on TCP the flush costs nothing).
pub async fn write_flush<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The first bytes of an unexpected reply, quoted and escaped.
fn snippet(buf: &[u8]) -> String {
    let shown = &buf[..buf.len().min(40)];
    let mut s = format!("{:?}", String::from_utf8_lossy(shown));
    if buf.len() > shown.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(
            next_token(b"$3\r\nabc\r\n+OK", 16).unwrap(),
            Some((Token::Bulk(b"abc"), 9))
        );
        assert_eq!(next_token(b"$3\r\nabc\r", 16).unwrap(), None);
        assert_eq!(next_token(b"$3\r\na", 16).unwrap(), None);
        assert_eq!(next_token(b"$3", 16).unwrap(), None);
        assert_eq!(next_token(b"", 16).unwrap(), None);
        assert_eq!(
            next_token(b"+OK\r\n", 16).unwrap(),
            Some((Token::Status(b"OK"), 5))
        );
        assert_eq!(
            next_token(b"-ERR a\rb\r\n", 16).unwrap(),
            Some((Token::Error(b"ERR a\rb"), 10))
        );
        assert_eq!(
            next_token(b":-12\r\n", 16).unwrap(),
            Some((Token::Int(-12), 6))
        );
        assert_eq!(next_token(b"$-1\r\n", 16).unwrap(), Some((Token::Nil, 5)));
        assert_eq!(next_token(b"*-1\r\n", 16).unwrap(), Some((Token::Nil, 5)));
        assert_eq!(
            next_token(b"*3\r\n", 16).unwrap(),
            Some((Token::Array(3), 4))
        );
        assert!(next_token(b"$17\r\n", 16).is_err());
        assert!(next_token(b"$x\r\n", 16).is_err());
        assert!(next_token(b":1.5\r\n", 16).is_err());
        assert!(next_token(b"$2\r\nabcd", 16).is_err());
        assert!(next_token(b"?\r\n", 16).is_err());
        assert!(next_token(&vec![b'+'; MAX_LINE + 1], 16).is_err());
    }

    #[test]
    fn encoding() {
        let mut n = Vec::new();
        put_uint(&mut n, 0);
        put_uint(&mut n, u64::MAX);
        assert_eq!(n, b"018446744073709551615");
        let mut c = Vec::new();
        put_command(&mut c, &[b"PUBLISH", b"ch", b""]);
        assert_eq!(
            c,
            redis::cmd("PUBLISH")
                .arg("ch")
                .arg(b"")
                .get_packed_command()
        );
    }
}
