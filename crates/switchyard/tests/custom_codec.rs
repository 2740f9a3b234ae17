//! A custom codec end to end on `memory://`: MessagePack through
//! `rmp-serde`, written as an application would (only the facade's public
//! API). Also the `content-type` check on decode and `TypedSubscriber` as a
//! `futures::Stream`.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeSeed;
use switchyard::prelude::*;
use switchyard::{CodecError, CustomCodec};

/// MessagePack (`rmp-serde`), structs as maps with field names.
struct MsgPack;

impl CustomCodec for MsgPack {
    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn content_type(&self) -> &'static str {
        "application/msgpack"
    }

    fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(rmp_serde::to_vec_named(value)?)
    }

    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        bytes: &'de [u8],
        seed: S,
    ) -> Result<S::Value, CodecError> {
        // Reading from a slice: a length prefix can never make the decoder
        // allocate more than the payload holds.
        let mut rest = bytes;
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        let value = seed.deserialize(&mut de)?;
        let trailing = de.get_ref().len();
        if trailing > 0 {
            return Err(format!("{trailing} trailing bytes after the value").into());
        }
        Ok(value)
    }
}

const MSGPACK: Codec = Codec::custom(&MsgPack);

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(100);

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    item: String,
    tags: Vec<String>,
    blob: Vec<u8>,
}

fn orders() -> Vec<Order> {
    (0..3)
        .map(|i| Order {
            id: u64::MAX - i,
            item: format!("widget ü {i}"),
            tags: vec!["a".into(); i as usize],
            blob: vec![i as u8; 4],
        })
        .collect()
}

async fn next<T: serde::de::DeserializeOwned>(sub: &mut TypedSubscriber<T>) -> Result<Typed<T>> {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("nothing within 5 s")
        .expect("subscriber ended")
}

#[tokio::test]
async fn msgpack_round_trip_on_memory() {
    let transport = switchyard::connect("memory://").await.unwrap();
    let bus = Bus::new(transport.clone()).with_codec(MSGPACK);
    assert_eq!(bus.codec(), MSGPACK);
    let topic = Topic::new("orders.msgpack").unwrap();
    let mut sub = bus
        .subscribe::<Order>(Subscription::new(topic.clone()))
        .await
        .unwrap();
    let mut raw = transport
        .subscribe(Subscription::new(topic.clone()))
        .await
        .unwrap();
    for o in orders() {
        bus.publish(&topic, &o).await.unwrap();
    }
    for want in orders() {
        let got = next(&mut sub).await.unwrap();
        assert_eq!(got.value, want);
        assert_eq!(
            got.delivery.headers().get(header::CONTENT_TYPE),
            Some("application/msgpack")
        );
        // The payload is MessagePack: rmp-serde alone reads it, JSON does not.
        let d = tokio::time::timeout(WAIT, raw.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let direct: Order = rmp_serde::from_slice(d.payload()).unwrap();
        assert_eq!(direct, want);
        assert!(Codec::Json.decode::<Order>(d.payload()).is_err());
    }
    assert!(tokio::time::timeout(QUIET, sub.recv()).await.is_err());
    assert_eq!(sub.stats().decode_errors, 0);

    // Bad MessagePack is a codec error naming the codec, not a panic.
    let e = MSGPACK.decode::<Order>(&[0xdc, 0xff]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Codec {
                codec: "msgpack",
                ..
            }
        ),
        "{e}"
    );
    let mut trailing = MSGPACK.encode(&orders()[0]).unwrap().to_vec();
    trailing.push(0);
    let e = MSGPACK.decode::<Order>(&trailing).unwrap_err();
    assert!(e.to_string().contains("1 trailing bytes"), "{e}");
    // A length prefix claiming 4 GiB of string is refused without allocating.
    let e = MSGPACK
        .decode::<String>(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'x'])
        .unwrap_err();
    assert!(matches!(e, Error::Codec { .. }), "{e}");
}

/// Issue 17: a JSON subscriber decoded a message labelled
/// `application/x-bincode` when its bytes happened to be valid JSON. Now a
/// labelled message of another type is an error naming both types; an
/// unlabelled one is decoded as before.
#[tokio::test]
async fn a_mismatched_content_type_is_a_codec_error() {
    let transport = switchyard::connect("memory://").await.unwrap();
    let json = Bus::new(transport.clone());
    let msgpack = Bus::new(transport.clone()).with_codec(MSGPACK);
    let topic = Topic::new("orders.mixed").unwrap();
    let mut sub = json
        .subscribe::<u64>(Subscription::new(topic.clone()))
        .await
        .unwrap();

    // 1. valid JSON labelled bincode; 2. MessagePack; 3. unlabelled JSON;
    // 4. JSON with parameters in the label; 5. the JSON bus.
    transport
        .publish(
            Message::new(topic.clone(), "7")
                .with_header(header::CONTENT_TYPE, "application/x-bincode"),
        )
        .await
        .unwrap();
    msgpack.publish(&topic, &8u64).await.unwrap();
    transport
        .publish(Message::new(topic.clone(), "9"))
        .await
        .unwrap();
    transport
        .publish(
            Message::new(topic.clone(), "10")
                .with_header(header::CONTENT_TYPE, "Application/JSON; charset=utf-8"),
        )
        .await
        .unwrap();
    json.publish(&topic, &11u64).await.unwrap();

    let e = next(&mut sub).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Codec { codec: "json", .. }), "{e}");
    assert!(text.contains("\"application/x-bincode\""), "{text}");
    assert!(text.contains("\"application/json\""), "{text}");

    let e = next(&mut sub).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("\"application/msgpack\""), "{text}");
    assert!(text.contains("\"application/json\""), "{text}");

    for want in [9, 10, 11] {
        assert_eq!(next(&mut sub).await.unwrap().value, want);
    }
    assert!(tokio::time::timeout(QUIET, sub.recv()).await.is_err());
    assert_eq!(sub.stats().decode_errors, 2);

    // The other way round: a MessagePack subscriber refuses JSON.
    let mut packed = msgpack
        .subscribe::<u64>(Subscription::new(topic.clone()))
        .await
        .unwrap();
    json.publish(&topic, &12u64).await.unwrap();
    msgpack.publish(&topic, &13u64).await.unwrap();
    let e = next(&mut packed).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Codec {
                codec: "msgpack",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("\"application/json\""), "{e}");
    assert_eq!(next(&mut packed).await.unwrap().value, 13);
    assert_eq!(packed.stats().decode_errors, 1);
}

/// In group mode a mismatched message is dead-lettered with the error as
/// reason, like a payload that does not decode.
#[tokio::test]
async fn a_mismatched_group_delivery_is_dead_lettered() {
    let transport = switchyard::connect("memory://").await.unwrap();
    let json = Bus::new(transport.clone());
    let msgpack = Bus::new(transport.clone()).with_codec(MSGPACK);
    let topic = Topic::new("orders.grouped").unwrap();
    let mut workers = json
        .subscribe::<u64>(Subscription::new(topic.clone()).group("workers"))
        .await
        .unwrap();
    let mut dead = transport
        .subscribe(Subscription::new(topic.dead_letter().unwrap()))
        .await
        .unwrap();

    let id = msgpack.publish(&topic, &1u64).await.unwrap();
    json.publish(&topic, &2u64).await.unwrap();

    let e = next(&mut workers).await.unwrap_err();
    assert!(e.to_string().contains("\"application/msgpack\""), "{e}");
    let ok = next(&mut workers).await.unwrap();
    assert_eq!(ok.value, 2);
    ok.ack().await.unwrap();

    let letter = tokio::time::timeout(WAIT, dead.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let h = letter.headers();
    let reason = h.get(header::DLQ_REASON).unwrap();
    assert!(reason.starts_with("decode error: "), "{reason}");
    assert!(reason.contains("\"application/msgpack\""), "{reason}");
    assert!(reason.contains("\"application/json\""), "{reason}");
    assert_eq!(h.get(header::DLQ_ID), Some(id.to_string().as_str()));
    assert_eq!(MSGPACK.decode::<u64>(letter.payload()).unwrap(), 1);
    assert!(tokio::time::timeout(QUIET, dead.recv()).await.is_err());
    assert!(tokio::time::timeout(QUIET, workers.recv()).await.is_err());
    assert_eq!(workers.stats().decode_errors, 1);
}

/// `TypedSubscriber<T>` is a `futures::Stream` of the same items as `recv`.
#[tokio::test]
async fn a_typed_subscriber_is_a_stream() {
    let bus = Bus::new(switchyard::connect("memory://").await.unwrap()).with_codec(MSGPACK);
    let topic = Topic::new("orders.stream").unwrap();
    let mut sub = bus
        .subscribe::<Order>(Subscription::new(topic.clone()).group("g"))
        .await
        .unwrap();
    for o in orders() {
        bus.publish(&topic, &o).await.unwrap();
    }
    bus.transport()
        .publish(
            Message::new(topic.clone(), "not msgpack")
                .with_header(header::CONTENT_TYPE, "application/msgpack"),
        )
        .await
        .unwrap();
    bus.publish(&topic, &orders()[0]).await.unwrap();

    // StreamExt::next
    let first = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.value, orders()[0]);
    first.ack().await.unwrap();

    // StreamExt::take + collect: two orders, the bad payload, the last order.
    let rest: Vec<Result<Typed<Order>>> = tokio::time::timeout(WAIT, (&mut sub).take(4).collect())
        .await
        .unwrap();
    assert_eq!(rest.len(), 4);
    let mut values = Vec::new();
    let mut errors = 0;
    for item in rest {
        match item {
            Ok(t) => {
                values.push(t.value.clone());
                t.ack().await.unwrap();
            }
            Err(Error::Codec {
                codec: "msgpack", ..
            }) => errors += 1,
            Err(e) => panic!("unexpected error item {e}"),
        }
    }
    assert_eq!(
        values,
        [
            orders()[1].clone(),
            orders()[2].clone(),
            orders()[0].clone()
        ]
    );
    assert_eq!(errors, 1);
    assert_eq!(sub.stats().decode_errors, 1);
    assert!(tokio::time::timeout(QUIET, sub.next()).await.is_err());

    // The stream ends (None) once the subscriber is closed.
    bus.transport().close().await.unwrap();
    let end = tokio::time::timeout(WAIT, sub.next()).await.unwrap();
    assert!(end.is_none());
}
