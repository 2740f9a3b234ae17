//! The byte stream of a lean connection: plain TCP or TLS over TCP, and
//! its read and write halves. Everything above it (the handshake, the hot
//! paths' RESP code) is written against `AsyncRead + AsyncWrite`, so TCP
//! and TLS run the same code.
//!
//! [`RedisStream::into_split`] keeps TCP's lock-free owned halves (as before
//! TLS shared this code); TLS, one state machine for both directions, is
//! split with `tokio::io::split`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[cfg(feature = "tls")]
type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A connection to Redis: plain TCP or TLS over TCP. Reads and writes go
/// through [`AsyncRead`] and [`AsyncWrite`], the same for both; after a
/// write, `flush` it (TLS may hold the last record until then; on TCP it
/// costs nothing): [`write_flush`](crate::lean::write_flush) does both.
#[derive(Debug)]
pub enum RedisStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (rustls).
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

/// The read half of a [`RedisStream`].
#[derive(Debug)]
pub enum RedisReadHalf {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The write half of a [`RedisStream`].
#[derive(Debug)]
pub enum RedisWriteHalf {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<TlsStream>),
}

impl RedisStream {
    /// Splits the stream into a read half and a write half that can live
    /// in different tasks.
    pub fn into_split(self) -> (RedisReadHalf, RedisWriteHalf) {
        match self {
            RedisStream::Tcp(s) => {
                let (rd, wr) = s.into_split();
                (RedisReadHalf::Tcp(rd), RedisWriteHalf::Tcp(wr))
            }
            #[cfg(feature = "tls")]
            RedisStream::Tls(s) => {
                let (rd, wr) = tokio::io::split(*s);
                (RedisReadHalf::Tls(rd), RedisWriteHalf::Tls(wr))
            }
        }
    }
}

/// `match` over the variants of `$self`, binding the pinned inner stream.
macro_rules! each {
    ($self:expr, $ty:ident, $s:ident => $body:expr) => {
        match $self {
            $ty::Tcp($s) => {
                let $s = Pin::new($s);
                $body
            }
            #[cfg(feature = "tls")]
            $ty::Tls($s) => {
                let $s = Pin::new($s);
                $body
            }
        }
    };
}

impl AsyncRead for RedisStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), RedisStream, s => s.poll_read(cx, buf))
    }
}

impl AsyncRead for RedisReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), RedisReadHalf, s => s.poll_read(cx, buf))
    }
}

/// The same [`AsyncWrite`] delegation for the stream and its write half.
macro_rules! delegate_write {
    ($ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                each!(self.get_mut(), $ty, s => s.poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                each!(self.get_mut(), $ty, s => s.poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::Tcp(s) => s.is_write_vectored(),
                    #[cfg(feature = "tls")]
                    $ty::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each!(self.get_mut(), $ty, s => s.poll_flush(cx))
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                each!(self.get_mut(), $ty, s => s.poll_shutdown(cx))
            }
        }
    };
}

delegate_write!(RedisStream);
delegate_write!(RedisWriteHalf);
