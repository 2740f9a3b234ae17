//! Publishing and fan-out: payloads, headers, ids, batches, order,
//! isolation, concurrency, a second transport and health.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use switchyard_core::{DedupId, Headers, Message, Subscription, Transport, header};
use tokio::task::JoinSet;

use crate::support::{
    Sub, collect, describe, exactly_once, in_order, increasing, indices, join, payload,
    publish_range, quiet, subscribe, unique_ids,
};
use crate::{CaseResult, Ctx};

/// `health()` is Ok on a fresh transport, and the transport reports the
/// capabilities the harness declared.
pub async fn health(ctx: &Ctx) -> CaseResult {
    let t = ctx.connect().await?;
    let health = t.health().await;
    ensure!(
        health.is_ok(),
        "health() of a fresh transport: expected Health::Ok, got {health:?}"
    );
    ensure!(!t.name().is_empty(), "transport name() is empty");
    ensure!(
        t.capabilities() == ctx.capabilities(),
        "transport capabilities() differ from the harness's: the harness declares {:?}, the transport reports {:?}",
        ctx.capabilities(),
        t.capabilities()
    );
    Ok(())
}

/// Payload bytes (empty, binary, 1 MiB), headers, topic and dedup id arrive
/// unchanged, with the id `publish` returned; ids are unique.
pub async fn round_trip_payloads(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("payloads")?;
    let mut sub = subscribe(&t, Subscription::new(topic.clone()), "fan-out subscriber").await?;

    let binary: Vec<u8> = (0..=255u8).rev().chain([0x00, 0xff, 0xc3, 0x28]).collect();
    let big: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let text_headers: Headers = [
        ("tenant", "acme"),
        ("unicode", "ü ✓ 日本"),
        ("empty-value", ""),
        ("x-json", "{\"a\":[1,2]}"),
        ("x-spaces", "  leading and trailing  "),
    ]
    .into_iter()
    .collect();
    let samples: Vec<(&str, Bytes, Headers)> = vec![
        ("empty", Bytes::new(), Headers::new()),
        (
            "binary",
            Bytes::from(binary),
            [("x-kind", "binary")].into_iter().collect(),
        ),
        ("1 MiB", Bytes::from(big), Headers::new()),
        ("text", Bytes::from("héllo wörld"), text_headers),
    ];

    let mut sent = Vec::new();
    for (label, body, headers) in samples {
        let msg = Message::new(topic.clone(), body)
            .with_headers(headers)
            .with_dedup_id(DedupId(rand::random()));
        let id = t
            .publish(msg.clone())
            .await
            .with_context(|| format!("publishing the {label} message"))?;
        sent.push((label, msg, id));
    }
    let ids: Vec<_> = sent.iter().map(|(_, _, id)| *id).collect();
    unique_ids(&ids, "ids returned by publish")?;

    let got = collect(
        &mut sub,
        sent.len(),
        tuning.recv_timeout,
        "fan-out subscriber",
    )
    .await?;
    if ctx.capabilities().per_topic_ordering {
        let order: Vec<DedupId> = got.iter().map(|d| d.dedup_id()).collect();
        let want: Vec<DedupId> = sent.iter().map(|(_, m, _)| m.dedup_id).collect();
        ensure!(
            order == want,
            "deliveries not in publish order (per_topic_ordering): expected dedup ids {want:?}, got {order:?}"
        );
    }
    for (label, msg, id) in &sent {
        let matching: Vec<_> = got
            .iter()
            .filter(|d| d.dedup_id() == msg.dedup_id)
            .collect();
        let [d] = matching.as_slice() else {
            bail!(
                "the {label} message (dedup id {}) arrived {} times, expected exactly once (dedup id must arrive unchanged)",
                msg.dedup_id,
                matching.len()
            );
        };
        ensure!(
            d.topic() == &msg.topic,
            "the {label} message arrived on topic {}, expected {}",
            d.topic(),
            msg.topic
        );
        check_payload(label, &msg.payload, d.payload())?;
        check_headers(label, &msg.headers, d.headers())?;
        ensure!(
            d.id() == *id,
            "the {label} message arrived with id {}, but publish returned {id}",
            d.id()
        );
        ensure!(
            d.attempt() == 1,
            "the {label} message: expected attempt 1, got {}",
            d.attempt()
        );
        ensure!(
            !d.needs_ack(),
            "the {label} message: a fan-out delivery must carry no acknowledger (needs_ack() is true)"
        );
    }
    quiet(
        &mut sub,
        tuning.quiet_period,
        "fan-out subscriber after 4 messages",
    )
    .await
}

fn check_payload(label: &str, sent: &[u8], got: &[u8]) -> CaseResult {
    if sent == got {
        return Ok(());
    }
    let at = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    bail!(
        "the {label} payload changed: sent {} bytes, got {} bytes, first difference at byte {at}",
        sent.len(),
        got.len()
    )
}

fn check_headers(label: &str, sent: &Headers, got: &Headers) -> CaseResult {
    for (k, v) in sent.iter() {
        ensure!(
            got.get(k) == Some(v),
            "the {label} message: header {k:?} sent as {v:?} arrived as {:?} (all headers: {got:?})",
            got.get(k)
        );
    }
    for (k, _) in got.iter() {
        let reserved = k.starts_with(header::RESERVED_PREFIX)
            || k == header::CONTENT_TYPE
            || k == header::TRACEPARENT;
        ensure!(
            reserved || sent.get(k).is_some(),
            "the {label} message: header {k:?} arrived but was never sent; adapters may only add reserved (sy-) headers"
        );
    }
    Ok(())
}

/// `publish_batch` returns one id per message, keeps order, and may mix topics.
pub async fn publish_batch(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let ordered = ctx.capabilities().per_topic_ordering;
    let t = ctx.connect().await?;
    let topic = ctx.topic("batch")?;
    let mut sub = subscribe(&t, Subscription::new(topic.clone()), "batch subscriber").await?;

    let empty = t
        .publish_batch(Vec::new())
        .await
        .context("publish_batch of an empty batch")?;
    ensure!(
        empty.is_empty(),
        "publish_batch(empty) returned {} ids, expected 0",
        empty.len()
    );

    let n = 100;
    let batch: Vec<Message> = (0..n)
        .map(|i| Message::new(topic.clone(), payload("b", i)))
        .collect();
    let ids = t
        .publish_batch(batch)
        .await
        .context("publish_batch of 100")?;
    ensure!(
        ids.len() == n,
        "publish_batch of {n} returned {} ids, expected one per message",
        ids.len()
    );
    unique_ids(&ids, "publish_batch ids")?;
    if ordered {
        increasing(&ids, "publish_batch ids (per_topic_ordering)")?;
    }
    let got = collect(&mut sub, n, tuning.recv_timeout, "batch subscriber").await?;
    let idx = indices("b", &got)?;
    exactly_once(&idx, n, "batch subscriber")?;
    if ordered {
        in_order(&idx, 0..n, "batch subscriber")?;
    }
    for (d, &i) in got.iter().zip(&idx) {
        ensure!(
            d.id() == ids[i],
            "batch message {i} arrived with id {}, but publish_batch returned {} for it",
            d.id(),
            ids[i]
        );
    }
    quiet(&mut sub, tuning.quiet_period, "batch subscriber after 100").await?;

    // One batch over two topics: each subscriber gets its half.
    let other = ctx.topic("batch-other")?;
    let mut sub_other = subscribe(&t, Subscription::new(other.clone()), "second topic").await?;
    let mixed: Vec<Message> = (0..10)
        .map(|i| {
            let to = if i % 2 == 0 { &topic } else { &other };
            Message::new(to.clone(), payload("mix", i))
        })
        .collect();
    let mixed_ids = t
        .publish_batch(mixed)
        .await
        .context("publish_batch over two topics")?;
    ensure!(
        mixed_ids.len() == 10,
        "publish_batch of 10 (two topics) returned {} ids",
        mixed_ids.len()
    );
    let even = collect(
        &mut sub,
        5,
        tuning.recv_timeout,
        "first topic of the mixed batch",
    )
    .await?;
    let odd = collect(
        &mut sub_other,
        5,
        tuning.recv_timeout,
        "second topic of the mixed batch",
    )
    .await?;
    let mut even_idx = indices("mix", &even)?;
    let mut odd_idx = indices("mix", &odd)?;
    even_idx.sort_unstable();
    odd_idx.sort_unstable();
    ensure!(
        even_idx == [0, 2, 4, 6, 8] && odd_idx == [1, 3, 5, 7, 9],
        "mixed batch: expected messages [0,2,4,6,8] on {topic} and [1,3,5,7,9] on {other}, got {even_idx:?} and {odd_idx:?}"
    );
    quiet(
        &mut sub,
        tuning.quiet_period,
        "first topic after the mixed batch",
    )
    .await?;
    quiet(
        &mut sub_other,
        tuning.quiet_period,
        "second topic after the mixed batch",
    )
    .await
}

/// 1,000 messages arrive in publish order with increasing ids.
pub async fn per_topic_order(ctx: &Ctx) -> CaseResult {
    let n = 1000;
    let t = ctx.connect().await?;
    let topic = ctx.topic("ordered")?;
    let mut sub = subscribe(&t, Subscription::new(topic.clone()), "subscriber").await?;
    let ids = publish_range(&t, &topic, "o", 0..n).await?;
    increasing(&ids, "ids returned by publish")?;
    let got = collect(&mut sub, n, ctx.tuning().recv_timeout, "subscriber").await?;
    in_order(&indices("o", &got)?, 0..n, "subscriber")?;
    for (k, d) in got.iter().enumerate() {
        ensure!(
            d.id() == ids[k],
            "message {k} arrived with id {}, publish returned {}",
            d.id(),
            ids[k]
        );
    }
    quiet(
        &mut sub,
        ctx.tuning().quiet_period,
        "subscriber after 1,000",
    )
    .await
}

/// Collects `n` deliveries of tag `tag` on a spawned task.
fn spawn_collect(
    set: &mut JoinSet<anyhow::Result<(String, Vec<usize>)>>,
    mut sub: Sub,
    n: usize,
    tag: &'static str,
    ctx: &Ctx,
    name: String,
) {
    let idle = ctx.tuning().recv_timeout;
    let quiet_period = ctx.tuning().quiet_period;
    set.spawn(async move {
        let got = collect(&mut sub, n, idle, &name).await?;
        let idx = indices(tag, &got)?;
        quiet(&mut sub, quiet_period, &name).await?;
        Ok((name, idx))
    });
}

/// 3 fan-out subscribers each get all 1,000 exactly once.
pub async fn fanout_three_subscribers(ctx: &Ctx) -> CaseResult {
    let n = 1000;
    let t = ctx.connect().await?;
    let topic = ctx.topic("fanout")?;
    let mut set = JoinSet::new();
    for k in 0..3 {
        let name = format!("subscriber {k}");
        let sub = subscribe(&t, Subscription::new(topic.clone()), &name).await?;
        spawn_collect(&mut set, sub, n, "f", ctx, name);
    }
    publish_range(&t, &topic, "f", 0..n).await?;
    while let Some(joined) = set.join_next().await {
        let (name, idx) = joined.context("a subscriber task panicked")??;
        exactly_once(&idx, n, &name)?;
    }
    Ok(())
}

/// A subscriber on topic A sees nothing of topic B.
pub async fn topic_isolation(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let a = ctx.topic("a")?;
    let b = ctx.topic("b")?;
    let mut sub_a = subscribe(&t, Subscription::new(a.clone()), "subscriber of A").await?;
    let mut sub_b = subscribe(&t, Subscription::new(b.clone()), "subscriber of B").await?;
    publish_range(&t, &b, "B", 0..10).await?;
    publish_range(&t, &a, "A", 0..10).await?;
    let got_a = collect(&mut sub_a, 10, tuning.recv_timeout, "subscriber of A").await?;
    exactly_once(&indices("A", &got_a)?, 10, "subscriber of A")?;
    quiet(
        &mut sub_a,
        tuning.quiet_period,
        "subscriber of A after A's 10",
    )
    .await?;
    let got_b = collect(&mut sub_b, 10, tuning.recv_timeout, "subscriber of B").await?;
    exactly_once(&indices("B", &got_b)?, 10, "subscriber of B")?;
    quiet(
        &mut sub_b,
        tuning.quiet_period,
        "subscriber of B after B's 10",
    )
    .await
}

/// Two namespaces with the same topic names do not see each other.
pub async fn namespace_isolation(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let other = ctx.other_namespace().await?;
    let t1 = ctx.connect().await?;
    let t2 = other
        .connect()
        .await
        .context("connecting to the second namespace")?;
    let topic = ctx.topic("shared-name")?;
    let mut s1 = subscribe(&t1, Subscription::new(topic.clone()), "namespace 1").await?;
    let mut s2 = subscribe(&t2, Subscription::new(topic.clone()), "namespace 2").await?;
    publish_range(&t1, &topic, "n1", 0..5).await?;
    publish_range(&t2, &topic, "n2", 0..7).await?;
    let got1 = collect(&mut s1, 5, tuning.recv_timeout, "subscriber in namespace 1").await?;
    exactly_once(&indices("n1", &got1)?, 5, "subscriber in namespace 1")?;
    let got2 = collect(&mut s2, 7, tuning.recv_timeout, "subscriber in namespace 2").await?;
    exactly_once(&indices("n2", &got2)?, 7, "subscriber in namespace 2")?;
    quiet(&mut s1, tuning.quiet_period, "namespace 1 after its 5").await?;
    quiet(&mut s2, tuning.quiet_period, "namespace 2 after its 7").await
}

/// 8 concurrent publishers × 1,000: the subscriber gets 8,000, exactly once.
pub async fn concurrent_publishers(ctx: &Ctx) -> CaseResult {
    const PUBLISHERS: usize = 8;
    const EACH: usize = 1000;
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("concurrent")?;
    let mut subscription = Subscription::new(topic.clone());
    if ctx.capabilities().lossy_block {
        // `Block` does not hold the publishers back here: a buffer for all
        // of them, so a reader that falls behind loses nothing (what a
        // full buffer does is `backpressure_block`'s business).
        subscription = subscription.buffer(PUBLISHERS * EACH);
    }
    let mut sub = subscribe(&t, subscription, "subscriber").await?;
    let idle = tuning.recv_timeout;
    let collector = tokio::spawn(async move {
        let got = collect(&mut sub, PUBLISHERS * EACH, idle, "subscriber").await?;
        let per: Vec<(String, usize)> = got
            .iter()
            .map(|d| {
                let text = String::from_utf8_lossy(d.payload()).into_owned();
                match text
                    .split_once('-')
                    .and_then(|(p, i)| Some((p.to_owned(), i.parse().ok()?)))
                {
                    Some(pi) => Ok(pi),
                    None => bail!("unexpected delivery ({})", describe(d)),
                }
            })
            .collect::<anyhow::Result<_>>()?;
        Ok((sub, per))
    });
    let mut publishers = JoinSet::new();
    for p in 0..PUBLISHERS {
        let t: Arc<dyn Transport> = t.clone();
        let topic = topic.clone();
        publishers.spawn(async move { publish_range(&t, &topic, &format!("p{p}"), 0..EACH).await });
    }
    while let Some(joined) = publishers.join_next().await {
        joined.context("a publisher task panicked")??;
    }
    let (mut sub, per) = join(collector, "collecting 8,000").await?;
    let mut by_publisher: HashMap<String, Vec<usize>> = HashMap::new();
    for (p, i) in per {
        by_publisher.entry(p).or_default().push(i);
    }
    for p in 0..PUBLISHERS {
        let name = format!("p{p}");
        let got = by_publisher.remove(&name).unwrap_or_default();
        exactly_once(&got, EACH, &format!("messages of publisher {name}"))?;
        if ctx.capabilities().per_topic_ordering {
            in_order(&got, 0..EACH, &format!("messages of publisher {name}"))?;
        }
    }
    ensure!(
        by_publisher.is_empty(),
        "messages from unknown publishers arrived: {:?}",
        by_publisher.keys().collect::<Vec<_>>()
    );
    quiet(&mut sub, tuning.quiet_period, "subscriber after 8,000").await
}

/// A message published on one transport reaches a subscriber on another
/// transport of the same namespace, both ways.
pub async fn second_transport(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t1 = ctx.connect().await?;
    let t2 = ctx.connect().await?;
    let topic = ctx.topic("cross")?;
    let mut s1 = subscribe(
        &t1,
        Subscription::new(topic.clone()),
        "subscriber on transport 1",
    )
    .await?;
    let mut s2 = subscribe(
        &t2,
        Subscription::new(topic.clone()),
        "subscriber on transport 2",
    )
    .await?;
    t1.publish(Message::new(topic.clone(), "from-1"))
        .await
        .context("publish on transport 1")?;
    t2.publish(Message::new(topic.clone(), "from-2"))
        .await
        .context("publish on transport 2")?;
    for (sub, name) in [(&mut s1, "transport 1"), (&mut s2, "transport 2")] {
        let got = collect(
            sub,
            2,
            tuning.recv_timeout,
            &format!("subscriber on {name}"),
        )
        .await?;
        let mut bodies: Vec<Bytes> = got.iter().map(|d| d.payload().clone()).collect();
        bodies.sort();
        ensure!(
            bodies == [Bytes::from("from-1"), Bytes::from("from-2")],
            "subscriber on {name}: expected \"from-1\" and \"from-2\", got {bodies:?}"
        );
        quiet(
            sub,
            tuning.quiet_period,
            &format!("subscriber on {name} after 2"),
        )
        .await?;
    }
    Ok(())
}

/// `subscribers()` counts who listens on a topic: exact and pattern
/// subscribers of this transport, fan-out and group members, and drops
/// the ones that closed; across a backplane `remote` counts the replicas.
pub async fn subscriber_counts(ctx: &Ctx) -> CaseResult {
    use anyhow::ensure;
    use switchyard_core::{Pattern, Subscription, TopicFilter};
    let t = ctx.connect().await?;
    let room = ctx.topic("room.a")?;
    let other = ctx.topic("room.b")?;
    let counts = t.subscribers(&room).await?;
    ensure!(
        counts.local == 0,
        "nobody subscribed yet, local = {}",
        counts.local
    );
    let exact = t.subscribe(Subscription::new(room.clone())).await?;
    let prefix = room.as_str().trim_end_matches(".room.a");
    let pattern = t
        .subscribe(Subscription::new(TopicFilter::Pattern(Pattern::new(
            &format!("{prefix}.room.*"),
        )?)))
        .await?;
    let mut held = vec![exact, pattern];
    if ctx.capabilities().consumer_groups {
        held.push(
            t.subscribe(Subscription::new(room.clone()).group("g"))
                .await?,
        );
    }
    let want = held.len() as u64;
    let counts = t.subscribers(&room).await?;
    ensure!(
        counts.local == want,
        "local = {} with {want} subscribers on {room}",
        counts.local
    );
    if let Some(remote) = counts.remote {
        // This replica's subscribing connection holds the channel.
        ensure!(
            remote >= 1,
            "remote = {remote} while this replica is subscribed"
        );
    }
    let on_other = t.subscribers(&other).await?;
    ensure!(
        on_other.local == 1,
        "only the pattern matches {other}: local = {}",
        on_other.local
    );
    for sub in held.drain(..) {
        sub.close().await?;
    }
    let counts = t.subscribers(&room).await?;
    ensure!(
        counts.local == 0,
        "everyone closed, local = {}",
        counts.local
    );
    Ok(())
}
