//! The peers users would pick instead of switchyard, on the same payloads
//! and the same machine: omniqueue's Redis Streams backend and async-nats
//! JetStream against a local `nats-server` (compiled with the `peers`
//! feature).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;

use crate::harness::{Kind, Row, payload, share};
use crate::raw::rand_suffix;

type OmniProducer =
    omniqueue::backends::RedisProducer<omniqueue::backends::redis::RedisConnectionManager>;
type OmniConsumer =
    omniqueue::backends::RedisConsumer<omniqueue::backends::redis::RedisConnectionManager>;

/// omniqueue's producer and consumer on `redis_url`, queue `key`, with its
/// consumer group created (`XGROUP CREATE … 0 MKSTREAM`; omniqueue expects
/// the group to exist).
async fn omniqueue_pair(
    redis_url: &str,
    key: &str,
    connections: u16,
) -> Result<(OmniProducer, OmniConsumer)> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut conn)
        .await?;
    let config = omniqueue::backends::RedisConfig {
        dsn: redis_url.to_owned(),
        max_connections: connections,
        reinsert_on_nack: false,
        queue_key: key.to_owned(),
        delayed_queue_key: format!("{key}:delayed"),
        delayed_lock_key: format!("{key}:delayed_lock"),
        consumer_group: "g".into(),
        consumer_name: "c".into(),
        payload_key: "payload".into(),
        ack_deadline_ms: 30_000,
        dlq_config: None,
        sentinel_config: None,
    };
    Ok(omniqueue::backends::RedisBackend::builder(config)
        .use_redis_streams(true)
        .build_pair()
        .await?)
}

/// omniqueue `send_raw` from `publishers` tasks.
pub(crate) async fn omniqueue_publish(
    redis_url: &str,
    size: usize,
    n: u64,
    publishers: u64,
) -> Result<Row> {
    let key = format!("omni:pub:{}", rand_suffix());
    let connections = u16::try_from(publishers.clamp(1, 64)).unwrap_or(64);
    let (producer, _consumer) = omniqueue_pair(redis_url, &key, connections).await?;
    let producer = Arc::new(producer);
    let body = payload(size);
    let started = Instant::now();
    let mut joins = Vec::new();
    for i in 0..publishers {
        let (producer, body) = (producer.clone(), body.clone());
        let mine = share(n, publishers, i);
        joins.push(tokio::spawn(async move {
            for _ in 0..mine {
                producer.send_raw(&body).await?;
            }
            Ok::<_, omniqueue::QueueError>(())
        }));
    }
    for j in joins {
        j.await.context("an omniqueue publisher panicked")??;
    }
    Ok(Row {
        section: "streams-publish",
        name: format!("omniqueue 0.3 (Redis Streams), {publishers} publisher(s)"),
        kind: Kind::Peer,
        messages: n,
        size,
        secs: started.elapsed().as_secs_f64(),
        runs: Vec::new(),
        latency: None,
        note: format!("send_raw; a bb8 pool of {connections} connections"),
    })
}

/// A backlog of `n` entries sent with omniqueue, then one omniqueue
/// consumer receiving batches (`receive_all` of up to 500) and acking each.
pub(crate) async fn omniqueue_consume(redis_url: &str, size: usize, n: u64) -> Result<Row> {
    let key = format!("omni:group:{}", rand_suffix());
    let (producer, mut consumer) = omniqueue_pair(redis_url, &key, 8).await?;
    let producer = Arc::new(producer);
    let body = payload(size);
    let mut joins = Vec::new();
    for i in 0..8 {
        let (producer, body) = (producer.clone(), body.clone());
        let mine = share(n, 8, i);
        joins.push(tokio::spawn(async move {
            for _ in 0..mine {
                producer.send_raw(&body).await?;
            }
            Ok::<_, omniqueue::QueueError>(())
        }));
    }
    for j in joins {
        j.await.context("an omniqueue publisher panicked")??;
    }
    let started = Instant::now();
    let mut got = 0;
    while got < n {
        let batch = consumer
            .receive_all(500, Duration::from_millis(100))
            .await?;
        if batch.is_empty() && started.elapsed() > Duration::from_secs(60) {
            bail!("omniqueue consumer stalled at {got} of {n}");
        }
        // The batch's acks at once (omniqueue acks one entry per call, each
        // an XACK + XDEL round trip); awaiting them one by one would measure
        // round trips rather than the library.
        got += batch.len() as u64;
        for result in futures::future::join_all(batch.into_iter().map(|d| d.ack())).await {
            result.map_err(|(e, _)| e)?;
        }
    }
    Ok(Row {
        section: "streams-consume",
        name: "omniqueue 0.3 (Redis Streams), 1 consumer, consume + ack".into(),
        kind: Kind::Peer,
        messages: n,
        size,
        secs: started.elapsed().as_secs_f64(),
        runs: Vec::new(),
        latency: None,
        note: "receive_all(500); the batch's acks concurrently (each an XACK + XDEL)".into(),
    })
}

/// A `nats-server -js` on a free loopback port with its store in a temp
/// directory; killed on drop.
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    pub(crate) fn start() -> Result<NatsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("bench-compare-nats-{}", rand_suffix()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start nats-server (install the Debian package nats-server)")?;
        let server = NatsServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JetStream context with a fresh file-backed stream on `subject`.
async fn jetstream(
    server: &NatsServer,
    subject: &str,
) -> Result<(
    async_nats::jetstream::Context,
    async_nats::jetstream::stream::Stream,
)> {
    let client = async_nats::connect(server.url()).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: subject.replace('.', "_"),
            subjects: vec![subject.to_owned()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    Ok((js, stream))
}

/// JetStream publish from `publishers` tasks, each awaiting the server's
/// ack (a durable publish) before its next message.
pub(crate) async fn nats_publish(
    server: &NatsServer,
    size: usize,
    n: u64,
    publishers: u64,
) -> Result<Row> {
    let subject = format!("pub.{}", rand_suffix());
    let (js, _stream) = jetstream(server, &subject).await?;
    let body = payload(size);
    let started = Instant::now();
    let mut joins = Vec::new();
    for i in 0..publishers {
        let (js, body, subject) = (js.clone(), body.clone(), subject.clone());
        let mine = share(n, publishers, i);
        joins.push(tokio::spawn(async move {
            for _ in 0..mine {
                js.publish(subject.clone(), body.clone()).await?.await?;
            }
            Ok::<_, async_nats::Error>(())
        }));
    }
    for j in joins {
        j.await
            .context("a JetStream publisher panicked")?
            .map_err(|e| anyhow::anyhow!("JetStream publish: {e}"))?;
    }
    Ok(Row {
        section: "streams-publish",
        name: format!("async-nats 0.51 JetStream, {publishers} publisher(s)"),
        kind: Kind::Peer,
        messages: n,
        size,
        secs: started.elapsed().as_secs_f64(),
        runs: Vec::new(),
        latency: None,
        note: "file storage; each publish awaits its PubAck".into(),
    })
}

/// A backlog of `n` messages, then one durable pull consumer (`messages()`)
/// acking each.
pub(crate) async fn nats_consume(server: &NatsServer, size: usize, n: u64) -> Result<Row> {
    let subject = format!("group.{}", rand_suffix());
    let (js, stream) = jetstream(server, &subject).await?;
    let body = payload(size);
    let mut acks = Vec::with_capacity(1024);
    for _ in 0..n {
        acks.push(js.publish(subject.clone(), body.clone()).await?);
        if acks.len() == 1024 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks.drain(..) {
        a.await?;
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("g".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut got = 0;
    while got < n {
        let next = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .with_context(|| format!("JetStream consumer stalled at {got} of {n}"))?;
        let Some(m) = next else {
            bail!("JetStream consumer ended at {got} of {n}");
        };
        // A missed idle heartbeat (a starved task on a busy machine) is
        // reported in the stream and is not fatal: the stall timeout
        // above catches a consumer that really stopped.
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                eprintln!("  (JetStream consumer: {e}; going on)");
                continue;
            }
        };
        m.ack()
            .await
            .map_err(|e| anyhow::anyhow!("JetStream ack: {e}"))?;
        got += 1;
    }
    Ok(Row {
        section: "streams-consume",
        name: "async-nats 0.51 JetStream, 1 durable pull consumer, consume + ack".into(),
        kind: Kind::Peer,
        messages: n,
        size,
        secs: started.elapsed().as_secs_f64(),
        runs: Vec::new(),
        latency: None,
        note: "backlog pre-filled; explicit ack per message (not awaited by the server)".into(),
    })
}
