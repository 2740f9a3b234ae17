//! The typed layer on top of the adapter: `Bus` with JSON and bincode,
//! payloads that do not decode, and payloads labelled with another codec's
//! content type.

use anyhow::{Context as _, bail, ensure};
use serde::{Deserialize, Serialize};
use switchyard_core::{Bus, Codec, Error, Message, Subscription, header};
use tokio::time::timeout;

use crate::{CaseResult, Ctx};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
    tags: Vec<String>,
    note: Option<String>,
}

fn orders() -> Vec<Order> {
    vec![
        Order {
            id: 1,
            item: "widget".into(),
            tags: vec![],
            note: None,
        },
        Order {
            id: u64::MAX,
            item: "ü ✓ 日本".into(),
            tags: vec!["a".into(), "".into()],
            note: Some("with \"quotes\"".into()),
        },
        Order {
            id: 0,
            item: String::new(),
            tags: vec!["x".repeat(1000)],
            note: Some(String::new()),
        },
    ]
}

async fn round_trip(ctx: &Ctx, codec: Codec) -> CaseResult {
    let tuning = ctx.tuning();
    let bus = Bus::new(ctx.connect().await?).with_codec(codec);
    let topic = ctx.topic(codec.name())?;
    let mut sub = bus
        .subscribe::<Order>(Subscription::new(topic.clone()))
        .await
        .context("typed subscribe")?;
    let sent = orders();
    for o in &sent {
        bus.publish(&topic, o).await.context("typed publish")?;
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match timeout(tuning.recv_timeout, sub.recv()).await {
            Err(_) => bail!(
                "typed {} subscriber: {} of {} values, then nothing for {:?}",
                codec.name(),
                got.len(),
                sent.len(),
                tuning.recv_timeout
            ),
            Ok(None) => bail!("typed {} subscriber ended", codec.name()),
            Ok(Some(Err(e))) => bail!("typed {} subscriber: error item: {e}", codec.name()),
            Ok(Some(Ok(typed))) => {
                let ct = typed.delivery.headers().get(header::CONTENT_TYPE);
                ensure!(
                    ct == Some(codec.content_type()),
                    "typed {}: expected content-type {:?}, got {ct:?}",
                    codec.name(),
                    codec.content_type()
                );
                got.push(typed.value);
            }
        }
    }
    if !ctx.capabilities().per_topic_ordering {
        got.sort_by_key(|o| (o.id, o.item.clone()));
    }
    let mut want = sent;
    if !ctx.capabilities().per_topic_ordering {
        want.sort_by_key(|o| (o.id, o.item.clone()));
    }
    ensure!(
        got == want,
        "typed {} round trip: sent {want:?}, got {got:?}",
        codec.name()
    );
    Ok(())
}

/// The typed Bus round-trips values with JSON.
pub async fn typed_json(ctx: &Ctx) -> CaseResult {
    round_trip(ctx, Codec::Json).await
}

/// The typed Bus round-trips values with bincode (feature `bincode`).
pub async fn typed_bincode(ctx: &Ctx) -> CaseResult {
    #[cfg(feature = "bincode")]
    {
        round_trip(ctx, Codec::Bincode).await
    }
    #[cfg(not(feature = "bincode"))]
    {
        let _ = ctx;
        bail!("switchyard-conformance was built without its `bincode` feature")
    }
}

/// A payload that does not decode is one `Err(Codec)` item; the stream goes on.
pub async fn typed_malformed_payload(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let bus = Bus::new(ctx.connect().await?);
    let topic = ctx.topic("malformed")?;
    let mut sub = bus
        .subscribe::<Order>(Subscription::new(topic.clone()))
        .await
        .context("typed subscribe")?;
    bus.transport()
        .publish(Message::new(topic.clone(), &b"{not json \xff"[..]))
        .await
        .context("raw publish of a malformed payload")?;
    let good = orders().remove(0);
    bus.publish(&topic, &good).await.context("typed publish")?;
    match timeout(tuning.recv_timeout, sub.recv()).await {
        Err(_) => bail!(
            "typed subscriber: nothing within {:?}, expected an Err(Codec) item",
            tuning.recv_timeout
        ),
        Ok(None) => bail!("typed subscriber ended; expected an Err(Codec) item"),
        Ok(Some(Ok(t))) => bail!(
            "typed subscriber: the malformed payload decoded as {:?}; expected Err(Codec)",
            t.value
        ),
        Ok(Some(Err(Error::Codec { .. }))) => {}
        Ok(Some(Err(e))) => bail!("typed subscriber: expected Err(Codec), got Err({e:?})"),
    }
    match timeout(tuning.recv_timeout, sub.recv()).await {
        Err(_) => bail!(
            "typed subscriber: after the malformed payload, the good message did not arrive within {:?}",
            tuning.recv_timeout
        ),
        Ok(None) => bail!("typed subscriber ended after the malformed payload; it must go on"),
        Ok(Some(Err(e))) => {
            bail!("typed subscriber: a second error item ({e}); expected exactly one")
        }
        Ok(Some(Ok(t))) => ensure!(
            t.value == good,
            "typed subscriber: expected {good:?} after the malformed payload, got {:?}",
            t.value
        ),
    }
    let stats = sub.stats();
    ensure!(
        stats.decode_errors == 1,
        "typed subscriber: stats().decode_errors = {}, expected 1",
        stats.decode_errors
    );
    match timeout(tuning.quiet_period, sub.recv()).await {
        Err(_) => Ok(()),
        Ok(None) => bail!("typed subscriber ended unexpectedly"),
        Ok(Some(Ok(t))) => bail!("typed subscriber: unexpected extra value {:?}", t.value),
        Ok(Some(Err(e))) => bail!("typed subscriber: unexpected extra error item {e}"),
    }
}

/// A message labelled with another codec's content type is refused, not
/// misread: its bytes are valid JSON, yet a JSON subscriber yields one
/// `Err(Codec)` naming both types; the next message still arrives.
pub async fn typed_content_type_mismatch(ctx: &Ctx) -> CaseResult {
    const OTHER: &str = "application/x-bincode";
    let tuning = ctx.tuning();
    let bus = Bus::new(ctx.connect().await?);
    let topic = ctx.topic("content-type")?;
    let mut sub = bus
        .subscribe::<u64>(Subscription::new(topic.clone()))
        .await
        .context("typed subscribe")?;
    bus.transport()
        .publish(Message::new(topic.clone(), &b"7"[..]).with_header(header::CONTENT_TYPE, OTHER))
        .await
        .context("raw publish of a payload labelled application/x-bincode")?;
    bus.publish(&topic, &8u64).await.context("typed publish")?;
    match timeout(tuning.recv_timeout, sub.recv()).await {
        Err(_) => bail!(
            "typed subscriber: nothing within {:?}, expected an Err(Codec) item",
            tuning.recv_timeout
        ),
        Ok(None) => bail!("typed subscriber ended; expected an Err(Codec) item"),
        Ok(Some(Ok(t))) => bail!(
            "typed JSON subscriber: a message labelled {OTHER} decoded as {:?}; expected Err(Codec)",
            t.value
        ),
        Ok(Some(Err(e @ Error::Codec { .. }))) => {
            let text = e.to_string();
            ensure!(
                text.contains(OTHER) && text.contains(Codec::Json.content_type()),
                "typed subscriber: the codec error does not name both content types: {text}"
            );
        }
        Ok(Some(Err(e))) => bail!("typed subscriber: expected Err(Codec), got Err({e:?})"),
    }
    match timeout(tuning.recv_timeout, sub.recv()).await {
        Err(_) => bail!(
            "typed subscriber: after the mislabelled message, the good one did not arrive within {:?}",
            tuning.recv_timeout
        ),
        Ok(None) => bail!("typed subscriber ended after the mislabelled message; it must go on"),
        Ok(Some(Err(e))) => {
            bail!("typed subscriber: a second error item ({e}); expected exactly one")
        }
        Ok(Some(Ok(t))) => ensure!(
            t.value == 8,
            "typed subscriber: expected 8 after the mislabelled message, got {}",
            t.value
        ),
    }
    let stats = sub.stats();
    ensure!(
        stats.decode_errors == 1,
        "typed subscriber: stats().decode_errors = {}, expected 1",
        stats.decode_errors
    );
    match timeout(tuning.quiet_period, sub.recv()).await {
        Err(_) => Ok(()),
        Ok(None) => bail!("typed subscriber ended unexpectedly"),
        Ok(Some(Ok(t))) => bail!("typed subscriber: unexpected extra value {}", t.value),
        Ok(Some(Err(e))) => bail!("typed subscriber: unexpected extra error item {e}"),
    }
}
