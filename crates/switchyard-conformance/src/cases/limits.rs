//! Message limits: every adapter refuses what is over them at publish, with
//! `Error::InvalidMessage`, sending nothing (nothing of a batch), and
//! delivers what is at them intact (dead letters included).

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use switchyard_core::{Error, Headers, Limits, Message, Retry, Start, Subscription, Transport};

use crate::support::{next, quiet, subscribe};
use crate::{CaseResult, Ctx};

/// The adapter's limits, checked against the core's: only the payload
/// bound may be lower.
fn adapter_limits(t: &dyn Transport) -> anyhow::Result<Limits> {
    let l = t.capabilities().limits;
    ensure!(
        l.max_payload <= Limits::MAX_PAYLOAD && l.max_payload > 0,
        "capabilities().limits.max_payload is {}, must be 1 to Limits::MAX_PAYLOAD ({})",
        l.max_payload,
        Limits::MAX_PAYLOAD
    );
    ensure!(
        (l.max_headers, l.max_header_bytes, l.max_header_key)
            == (
                Limits::MAX_HEADERS,
                Limits::MAX_HEADER_BYTES,
                Limits::MAX_HEADER_KEY
            ),
        "capabilities().limits differ from the core's header limits: {l:?}"
    );
    Ok(l)
}

/// `MAX_HEADERS` headers whose keys and values add up to exactly
/// `MAX_HEADER_BYTES`, one of them with a key of `MAX_HEADER_KEY` bytes:
/// every header limit reached at once, none passed. Adapter tests use it
/// for their own limit checks.
pub fn headers_at_bounds() -> Headers {
    let mut h = Headers::new();
    let long_key = "k".repeat(Limits::MAX_HEADER_KEY);
    let mut used = long_key.len();
    h.insert(long_key, "");
    for i in 1..Limits::MAX_HEADERS - 1 {
        let key = format!("h{i:02}");
        used += key.len();
        h.insert(key, "");
    }
    used += 2;
    h.insert("zz", "v".repeat(Limits::MAX_HEADER_BYTES - used));
    h
}

/// Checks that `result` is `InvalidMessage` for `limit` with `actual` and
/// `max`, and that `what` starts as expected.
fn expect_refusal<T>(
    result: switchyard_core::Result<T>,
    limit: &str,
    actual: usize,
    max: usize,
    what_starts: &str,
    case: &str,
) -> CaseResult {
    match result {
        Ok(_) => bail!("{case}: expected Err(InvalidMessage) for {limit}, got Ok"),
        Err(Error::InvalidMessage {
            what,
            actual: a,
            max: m,
            limit: l,
            ..
        }) => {
            ensure!(
                l == limit && a == actual && m == max,
                "{case}: expected InvalidMessage naming {limit} with {actual} > {max}, got {l} with {a} (max {m})"
            );
            ensure!(
                what.starts_with(what_starts),
                "{case}: the error should say {what_starts:?}..., it says {what:?}"
            );
            Ok(())
        }
        Err(e) => bail!("{case}: expected Err(InvalidMessage) for {limit}, got Err({e:?})"),
    }
}

/// Checks that `got` carries every header of `want` unchanged; any other
/// header must be a reserved (`sy-`) one the adapter added.
fn same_headers(got: &Headers, want: &Headers, what: &str) -> CaseResult {
    for (k, v) in want.iter() {
        ensure!(
            got.get(k) == Some(v),
            "{what}: header {k:?} arrived as {:?} ({} bytes expected)",
            got.get(k).map(str::len),
            v.len()
        );
    }
    for (k, _) in got.iter() {
        ensure!(
            want.get(k).is_some() || k.starts_with("sy-"),
            "{what}: unexpected header {k:?}"
        );
    }
    Ok(())
}

/// One past each limit is refused at `publish` and `publish_batch`, and
/// nothing of it reaches a subscriber.
pub async fn limits_refused_at_publish(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let limits = adapter_limits(t.as_ref())?;
    let topic = ctx.topic("over")?;
    let mut sub = subscribe(&t, Subscription::new(topic.clone()), "subscriber").await?;
    let m = |payload: Bytes| Message::new(topic.clone(), payload);

    let over_payload = m(Bytes::from(vec![0u8; limits.max_payload + 1]));
    let many: Headers = (0..=Limits::MAX_HEADERS)
        .map(|i| (format!("k{i:02}"), ""))
        .collect();
    let mut too_big = headers_at_bounds();
    too_big.insert("zz", format!("{}v", too_big.get("zz").unwrap_or("")));
    let bad = [
        (
            over_payload,
            limits.payload_bound,
            limits.max_payload + 1,
            limits.max_payload,
            "payload size in bytes",
        ),
        (
            m(Bytes::from_static(b"x")).with_headers(many),
            "Limits::MAX_HEADERS",
            Limits::MAX_HEADERS + 1,
            Limits::MAX_HEADERS,
            "header count",
        ),
        (
            m(Bytes::from_static(b"x")).with_headers(too_big),
            "Limits::MAX_HEADER_BYTES",
            Limits::MAX_HEADER_BYTES + 1,
            Limits::MAX_HEADER_BYTES,
            "header size in bytes",
        ),
        (
            m(Bytes::from_static(b"x")).with_header("k".repeat(Limits::MAX_HEADER_KEY + 1), ""),
            "Limits::MAX_HEADER_KEY",
            Limits::MAX_HEADER_KEY + 1,
            Limits::MAX_HEADER_KEY,
            "size in bytes of header key",
        ),
        (
            m(Bytes::from_static(b"x")).with_header("", "v"),
            "Limits::MAX_HEADER_KEY",
            0,
            Limits::MAX_HEADER_KEY,
            "size in bytes of header key",
        ),
    ];
    for (message, limit, actual, max, what) in bad {
        expect_refusal(
            t.publish(message.clone()).await,
            limit,
            actual,
            max,
            what,
            "publish",
        )?;
        let batch = vec![
            m(Bytes::from_static(b"batch-ok-0")),
            message,
            m(Bytes::from_static(b"batch-ok-2")),
        ];
        expect_refusal(
            t.publish_batch(batch).await,
            limit,
            actual,
            max,
            &format!("message 1 of 3 in the batch (counting from 0): {what}"),
            "publish_batch",
        )?;
    }
    // Nothing of the refused messages or batches was sent: the first
    // delivery is the marker published now, and nothing follows it.
    let marker = t
        .publish(m(Bytes::from_static(b"marker")))
        .await
        .context("publishing the marker after the refusals")?;
    let d = next(&mut sub, tuning.recv_timeout, "the marker").await?;
    ensure!(
        d.payload().as_ref() == b"marker" && d.id() == marker,
        "the first delivery should be the marker {marker}, got {}: part of a refused message or batch was sent",
        crate::support::describe(&d)
    );
    quiet(&mut sub, tuning.quiet_period, "subscriber after the marker").await
}

/// A message at every limit at once (payload at the adapter's bound,
/// `MAX_HEADERS` headers of `MAX_HEADER_BYTES`, a key of `MAX_HEADER_KEY`)
/// arrives intact, from `publish` and from `publish_batch`.
pub async fn limits_at_bounds_delivered(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let limits = adapter_limits(t.as_ref())?;
    let topic = ctx.topic("at-bounds")?;
    let mut sub = subscribe(&t, Subscription::new(topic.clone()), "subscriber").await?;
    let big = Message::new(topic.clone(), Bytes::from(vec![0x5au8; limits.max_payload]))
        .with_headers(headers_at_bounds());
    let small = Message::new(topic.clone(), Bytes::from_static(b"batched"))
        .with_headers(headers_at_bounds());
    limits
        .check_batch(&[big.clone(), small.clone()])
        .context("the test messages are within the limits")?;
    let id = t
        .publish(big.clone())
        .await
        .context("publishing a message at every limit")?;
    let ids = t
        .publish_batch(vec![small.clone()])
        .await
        .context("publish_batch of a message at the header limits")?;
    ensure!(
        ids.len() == 1,
        "publish_batch returned {} ids for 1",
        ids.len()
    );
    let mut seen = 0;
    for _ in 0..2 {
        let d = next(&mut sub, tuning.recv_timeout, "a message at the limits").await?;
        let (want, want_id) = if d.dedup_id() == big.dedup_id {
            (&big, id)
        } else {
            (&small, ids[0])
        };
        ensure!(
            d.id() == want_id && d.dedup_id() == want.dedup_id,
            "unexpected delivery {}",
            crate::support::describe(&d)
        );
        ensure!(
            d.payload() == &want.payload,
            "payload of {} bytes arrived as {} bytes",
            want.payload.len(),
            d.payload().len()
        );
        same_headers(d.headers(), &want.headers, "message at the limits")?;
        seen += 1;
    }
    ensure!(seen == 2, "received {seen} of 2");
    quiet(&mut sub, tuning.quiet_period, "subscriber after both").await
}

/// The dead letter of a message at the header limits (its headers plus the
/// four `sy-dlq-*` ones) arrives intact.
pub async fn limits_at_bounds_dead_lettered(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("at-bounds-dlq")?;
    let start = if ctx.capabilities().replay {
        Start::Earliest
    } else {
        Start::Latest
    };
    let mut dlq = subscribe(
        &t,
        Subscription::new(topic.dead_letter()?).start(start),
        "dead-letter subscriber",
    )
    .await?;
    let member = Subscription::new(topic.clone())
        .group_member("limits", "only")
        .ack_timeout(tuning.ack_timeout);
    let mut sub = subscribe(&t, member, "group member").await?;
    let original = Message::new(topic.clone(), Bytes::from_static(b"poison"))
        .with_headers(headers_at_bounds());
    t.publish(original.clone())
        .await
        .context("publishing a message at the header limits")?;
    let d = next(&mut sub, tuning.recv_timeout, "group delivery").await?;
    same_headers(d.headers(), &original.headers, "group delivery")?;
    d.nack(Retry::DeadLetter("r".repeat(1000)))
        .await
        .context("nack(DeadLetter)")?;
    let dl = next(&mut dlq, tuning.recv_timeout, "the dead letter").await?;
    ensure!(
        dl.payload() == &original.payload && dl.dedup_id() == original.dedup_id,
        "dead letter differs from the original: {}",
        crate::support::describe(&dl)
    );
    same_headers(dl.headers(), &original.headers, "dead letter")?;
    ensure!(
        dl.headers().len() == Limits::MAX_HEADERS + 4,
        "dead letter has {} headers, expected {} + the 4 sy-dlq-* ones",
        dl.headers().len(),
        Limits::MAX_HEADERS
    );
    quiet(
        &mut sub,
        tuning.quiet_period,
        "group member after the dead letter",
    )
    .await?;
    quiet(&mut dlq, tuning.quiet_period, "dead-letter subscriber").await
}
