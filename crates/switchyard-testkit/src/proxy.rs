//! A fault-injecting TCP proxy.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Size of each direction's copy buffer.
const BUFFER_SIZE: usize = 16 * 1024;

/// State shared by the proxy handle, its accept loop and its connections.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    refuse: AtomicBool,
    live: AtomicUsize,
    stall: watch::Sender<bool>,
    /// Bumped by every `cut()`; each connection watches it.
    cuts: watch::Sender<u64>,
    /// Set to true when the proxy is dropped.
    shutdown: watch::Sender<bool>,
}

/// A TCP proxy on a free loopback port in front of `upstream` (typically a
/// [`RedisServer`](crate::RedisServer)) that can cut, stall and refuse
/// connections on demand.
///
/// It runs on the Tokio runtime that [`start`](Self::start) is awaited on
/// (a multi-threaded runtime if blocking clients such as
/// [`RespConnection`](crate::RespConnection) talk through it from the same
/// process). Dropping it closes the listener and every proxied connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and starts proxying every accepted connection to
    /// `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            refuse: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            stall: watch::Sender::new(false),
            cuts: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, %upstream, "fault proxy started");
        Ok(FaultProxy {
            addr,
            shared,
            accept_task,
        })
    }

    /// The proxy's listening address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Abruptly closes (TCP reset) every connection proxied right now, on
    /// both sides. New connections are still accepted.
    pub fn cut(&self) {
        tracing::debug!(addr = %self.addr, "fault proxy: cut");
        self.shared.cuts.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// While `true`, no byte is forwarded in either direction; connections
    /// stay open (a black-holed, half-open link). Bytes already read are
    /// held (at most one 16 KiB buffer per direction) and forwarded once the
    /// stall ends.
    pub fn stall(&self, stalled: bool) {
        tracing::debug!(addr = %self.addr, stalled, "fault proxy: stall");
        self.shared.stall.send_replace(stalled);
    }

    /// Whether the proxy is stalled.
    pub fn is_stalled(&self) -> bool {
        *self.shared.stall.borrow()
    }

    /// While `true`, new connections are closed (reset) right after they are
    /// accepted; existing ones are untouched.
    pub fn set_refuse(&self, refuse: bool) {
        tracing::debug!(addr = %self.addr, refuse, "fault proxy: refuse");
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// The number of live proxied connections.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Polls (every 10 ms) until [`connections`](Self::connections) equals
    /// `n` or `timeout` passes; returns whether it did.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.connections() == n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.accept_task.abort();
    }
}

/// Decrements the live-connection count when a connection ends.
struct LiveGuard(Arc<Shared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes a socket with a TCP reset instead of an orderly FIN.
fn reset(stream: TcpStream) {
    // A zero linger makes close() send RST without blocking; that is the one
    // use `set_linger` is still fine for.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|down| *down) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                if shared.refuse.load(Ordering::SeqCst) {
                    tracing::debug!(%peer, "fault proxy: refusing connection");
                    reset(client);
                    continue;
                }
                shared.live.fetch_add(1, Ordering::SeqCst);
                let guard = LiveGuard(Arc::clone(&shared));
                // Subscribe before spawning, so a cut() from now on reaches
                // this connection.
                let cuts = shared.cuts.subscribe();
                tokio::spawn(handle_connection(client, Arc::clone(&shared), cuts, guard));
            }
            Err(e) => {
                // E.g. EMFILE; back off briefly instead of spinning.
                tracing::warn!(error = %e, "fault proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle_connection(
    mut client: TcpStream,
    shared: Arc<Shared>,
    mut cuts: watch::Receiver<u64>,
    _guard: LiveGuard,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let upstream = tokio::select! {
        _ = cuts.changed() => { reset(client); return; }
        _ = shutdown.wait_for(|down| *down) => { reset(client); return; }
        upstream = TcpStream::connect(shared.upstream) => upstream,
    };
    let mut upstream = match upstream {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::debug!(error = %e, upstream = %shared.upstream, "fault proxy: upstream connect failed");
            reset(client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let graceful = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let to_upstream = pump(
            &mut client_read,
            &mut upstream_write,
            shared.stall.subscribe(),
        );
        let to_client = pump(
            &mut upstream_read,
            &mut client_write,
            shared.stall.subscribe(),
        );
        tokio::select! {
            _ = cuts.changed() => false,
            _ = shutdown.wait_for(|down| *down) => false,
            result = async { tokio::try_join!(to_upstream, to_client) } => result.is_ok(),
        }
    };
    if !graceful {
        reset(client);
        reset(upstream);
    }
}

/// Copies bytes from `reader` to `writer` through one fixed buffer, holding
/// them while the proxy is stalled. On EOF it half-closes `writer`.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    mut stall: watch::Receiver<bool>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER_SIZE].into_boxed_slice();
    loop {
        // An error only means the proxy is gone; shutdown handles that.
        let _ = stall.wait_for(|stalled| !*stalled).await;
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            let _ = writer.shutdown().await;
            return Ok(());
        }
        let _ = stall.wait_for(|stalled| !*stalled).await;
        writer.write_all(&buf[..n]).await?;
    }
}
