//! Settling group deliveries: ack, nack now or later, dropping, and dead
//! letters.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use switchyard_core::{Delivery, Message, MessageId, Retry, Start, Subscription, Topic, header};

use crate::support::{Sub, collect, describe, next, quiet, subscribe};
use crate::{CaseResult, Ctx};

/// Slack allowed below a requested redelivery delay (timer and clock
/// granularity, e.g. millisecond server clocks).
const DELAY_TOLERANCE: Duration = Duration::from_millis(10);

/// A group subscription of one member with the tuned ack timeout.
fn member(ctx: &Ctx, topic: &Topic) -> Subscription {
    Subscription::new(topic.clone())
        .group_member("settlers", "only")
        .ack_timeout(ctx.tuning().ack_timeout)
}

/// Checks that a redelivery is the same message as the first delivery.
fn same_message(
    first: &Message,
    first_id: MessageId,
    again: &Delivery,
    attempt: u32,
) -> CaseResult {
    ensure!(
        again.attempt() == attempt,
        "redelivery: expected attempt {attempt}, got {} ({})",
        again.attempt(),
        describe(again)
    );
    ensure!(
        again.id() == first_id,
        "redelivery: expected the same id {first_id}, got {}",
        again.id()
    );
    ensure!(
        again.payload() == &first.payload,
        "redelivery: payload changed ({})",
        describe(again)
    );
    ensure!(
        again.dedup_id() == first.dedup_id,
        "redelivery: dedup id changed from {} to {}",
        first.dedup_id,
        again.dedup_id()
    );
    for (k, v) in first.headers.iter() {
        ensure!(
            again.headers().get(k) == Some(v),
            "redelivery: header {k:?} was {v:?}, is now {:?}",
            again.headers().get(k)
        );
    }
    Ok(())
}

/// Publishes one message with an application header and receives it once.
async fn publish_one(
    ctx: &Ctx,
    suffix: &str,
) -> anyhow::Result<(
    std::sync::Arc<dyn switchyard_core::Transport>,
    Sub,
    Delivery,
)> {
    let t = ctx.connect().await?;
    let topic = ctx.topic(suffix)?;
    let mut sub = subscribe(&t, member(ctx, &topic), "group member").await?;
    t.publish(Message::new(topic, "settle-me").with_header("x-order", "42"))
        .await
        .context("publish")?;
    let d = next(&mut sub, ctx.tuning().recv_timeout, "group member").await?;
    ensure!(
        d.attempt() == 1,
        "first delivery: expected attempt 1, got {}",
        d.attempt()
    );
    ensure!(
        d.needs_ack(),
        "a group delivery must carry an acknowledger (needs_ack() is false)"
    );
    Ok((t, sub, d))
}

/// Acked deliveries are not redelivered after the ack timeout.
pub async fn ack_removes(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("acked")?;
    let mut sub = subscribe(&t, member(ctx, &topic), "group member").await?;
    crate::support::publish_range(&t, &topic, "a", 0..5).await?;
    let got = collect(&mut sub, 5, tuning.recv_timeout, "group member").await?;
    for d in got {
        ensure!(
            d.attempt() == 1 && d.needs_ack(),
            "expected a first group delivery with an acknowledger, got {} (needs_ack {})",
            describe(&d),
            d.needs_ack()
        );
        let shown = describe(&d);
        d.ack().await.with_context(|| format!("ack of {shown}"))?;
    }
    quiet(
        &mut sub,
        tuning.ack_timeout + tuning.quiet_period,
        "group member after acking all 5 (waited past the ack timeout)",
    )
    .await
}

/// `nack(Retry::Now)` redelivers at once with attempt 2.
pub async fn nack_now_redelivers(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let (_t, mut sub, d) = publish_one(ctx, "nack-now").await?;
    let (msg, id) = (d.message().clone(), d.id());
    d.nack(Retry::Now).await.context("nack(Now)")?;
    let again = next(&mut sub, tuning.recv_timeout, "redelivery after nack(Now)").await?;
    same_message(&msg, id, &again, 2)?;
    again.ack().await.context("ack of the redelivery")?;
    quiet(
        &mut sub,
        tuning.ack_timeout + tuning.quiet_period,
        "group member after acking the redelivery",
    )
    .await
}

/// A message nacked with `Retry::Now` comes back behind the messages that
/// were already published when it was nacked: `a#1, b#1, c#1, a#2`.
///
/// Reproduction (memory before the fix): publish `a`, `b`, `c` to a group
/// member, receive `a` and nack it: memory handed out `a#2` before `b#1`
/// and `c#1`, while redis-streams (and docs/semantics.md) put it after them.
pub async fn nack_now_redelivers_behind_waiting(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("nack-order")?;
    let mut sub = subscribe(&t, member(ctx, &topic), "group member").await?;
    crate::support::publish_range(&t, &topic, "m", 0..3).await?;
    let a = next(&mut sub, tuning.recv_timeout, "first delivery").await?;
    let (first, first_id) = (a.message().clone(), a.id());
    ensure!(
        a.attempt() == 1 && a.payload() == &crate::support::payload("m", 0),
        "first delivery: expected m-000000 with attempt 1, got {}",
        describe(&a)
    );
    a.nack(Retry::Now)
        .await
        .context("nack(Now) of the first message")?;
    let mut seen = Vec::new();
    for i in 0..3 {
        let d = next(
            &mut sub,
            tuning.recv_timeout,
            &format!("delivery {} after the nack (seen so far: {seen:?})", i + 1),
        )
        .await?;
        seen.push(describe(&d));
        let expected = [(1, 1), (2, 1), (0, 2)][i];
        let (index, attempt) = expected;
        if index == 0 {
            same_message(&first, first_id, &d, attempt)?;
        } else {
            ensure!(
                d.payload() == &crate::support::payload("m", index) && d.attempt() == attempt,
                "after nacking m-000000, expected m-{index:06} attempt {attempt} as delivery {}, got {} (order so far: {seen:?})",
                i + 1,
                describe(&d)
            );
        }
        d.ack().await.context("ack")?;
    }
    quiet(
        &mut sub,
        tuning.quiet_period,
        "group member after acking all three",
    )
    .await
}

/// `nack(Retry::After(d))` does not redeliver before `d`.
pub async fn nack_after_delays(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let delay = tuning.quiet_period * 3;
    let (_t, mut sub, d) = publish_one(ctx, "nack-after").await?;
    let (msg, id) = (d.message().clone(), d.id());
    let nacked_at = Instant::now();
    d.nack(Retry::After(delay)).await.context("nack(After)")?;
    let again = next(
        &mut sub,
        delay + tuning.recv_timeout,
        &format!("redelivery after nack(After({delay:?}))"),
    )
    .await?;
    let waited = nacked_at.elapsed();
    ensure!(
        waited + DELAY_TOLERANCE >= delay,
        "nack(After({delay:?})) redelivered after only {waited:?}"
    );
    same_message(&msg, id, &again, 2)?;
    again.ack().await.context("ack of the redelivery")?;
    quiet(&mut sub, tuning.quiet_period, "group member after the ack").await
}

/// A delivery dropped unsettled comes back with attempt 2.
pub async fn dropped_delivery_redelivered(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let (_t, mut sub, d) = publish_one(ctx, "dropped").await?;
    let (msg, id) = (d.message().clone(), d.id());
    drop(d);
    let again = next(
        &mut sub,
        tuning.ack_timeout + tuning.recv_timeout,
        "redelivery of a dropped delivery",
    )
    .await?;
    same_message(&msg, id, &again, 2)?;
    again.ack().await.context("ack of the redelivery")?;
    quiet(&mut sub, tuning.quiet_period, "group member after the ack").await
}

/// A fan-out subscription to the dead-letter topic of `topic`, from the
/// start when the adapter can replay.
async fn dlq_subscriber(
    ctx: &Ctx,
    t: &std::sync::Arc<dyn switchyard_core::Transport>,
    topic: &Topic,
) -> anyhow::Result<Sub> {
    let dlq = topic.dead_letter()?;
    let start = if ctx.capabilities().replay {
        Start::Earliest
    } else {
        Start::Latest
    };
    subscribe(
        t,
        Subscription::new(dlq).start(start),
        "dead-letter subscriber",
    )
    .await
}

/// Checks a dead letter against the original message.
fn check_dead_letter(
    dl: &Delivery,
    original: &Message,
    id: MessageId,
    reason: Option<&str>,
    attempts: u32,
) -> CaseResult {
    let dlq = original.topic.dead_letter()?;
    ensure!(
        dl.topic() == &dlq,
        "dead letter arrived on {}, expected {dlq}",
        dl.topic()
    );
    ensure!(
        dl.payload() == &original.payload,
        "dead letter payload differs from the original ({})",
        describe(dl)
    );
    ensure!(
        dl.dedup_id() == original.dedup_id,
        "dead letter dedup id {} differs from the original {}",
        dl.dedup_id(),
        original.dedup_id
    );
    let h = dl.headers();
    let got_reason = h.get(header::DLQ_REASON).unwrap_or("");
    match reason {
        Some(want) => ensure!(
            got_reason == want,
            "dead letter header {}: expected {want:?}, got {got_reason:?} (headers {h:?})",
            header::DLQ_REASON
        ),
        None => ensure!(
            !got_reason.is_empty(),
            "dead letter header {} is missing or empty (headers {h:?})",
            header::DLQ_REASON
        ),
    }
    let want_topic = original.topic.as_str();
    let want_id = id.to_string();
    let want_attempts = attempts.to_string();
    for (key, want) in [
        (header::DLQ_TOPIC, want_topic),
        (header::DLQ_ID, want_id.as_str()),
        (header::DLQ_ATTEMPTS, want_attempts.as_str()),
        ("x-order", "42"),
    ] {
        ensure!(
            h.get(key) == Some(want),
            "dead letter header {key}: expected {want:?}, got {:?} (headers {h:?})",
            h.get(key)
        );
    }
    Ok(())
}

/// After `max_attempts` nacks the message is on `{topic}:dlq`, once, and
/// not redelivered.
pub async fn dead_letter_after_max_attempts(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("poison")?;
    let mut dlq = dlq_subscriber(ctx, &t, &topic).await?;
    let mut sub = subscribe(&t, member(ctx, &topic).max_attempts(3), "group member").await?;
    let original = Message::new(topic.clone(), "poison-pill").with_header("x-order", "42");
    let id = t.publish(original.clone()).await.context("publish")?;
    for attempt in 1..=3 {
        let d = next(
            &mut sub,
            tuning.recv_timeout,
            &format!("delivery attempt {attempt}"),
        )
        .await?;
        same_message(&original, id, &d, attempt)?;
        d.nack(Retry::Now)
            .await
            .with_context(|| format!("nack of attempt {attempt}"))?;
    }
    let dl = next(
        &mut dlq,
        tuning.recv_timeout,
        "dead letter after 3 nacked attempts (max_attempts 3)",
    )
    .await?;
    check_dead_letter(&dl, &original, id, None, 3)?;
    quiet(
        &mut sub,
        tuning.ack_timeout + tuning.quiet_period,
        "group member after the message was dead-lettered (it must not be redelivered)",
    )
    .await?;
    quiet(
        &mut dlq,
        tuning.quiet_period,
        "dead-letter subscriber after one dead letter",
    )
    .await
}

/// `nack(Retry::DeadLetter(reason))` dead-letters at once with that reason.
pub async fn dead_letter_on_request(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("reject")?;
    let mut dlq = dlq_subscriber(ctx, &t, &topic).await?;
    let mut sub = subscribe(&t, member(ctx, &topic), "group member").await?;
    let original = Message::new(topic.clone(), "reject-me").with_header("x-order", "42");
    let id = t.publish(original.clone()).await.context("publish")?;
    let d = next(&mut sub, tuning.recv_timeout, "group member").await?;
    same_message(&original, id, &d, 1)?;
    d.nack(Retry::DeadLetter("poison".into()))
        .await
        .context("nack(DeadLetter)")?;
    let dl = next(
        &mut dlq,
        tuning.recv_timeout,
        "dead letter after nack(DeadLetter(\"poison\"))",
    )
    .await?;
    check_dead_letter(&dl, &original, id, Some("poison"), 1)?;
    quiet(
        &mut sub,
        tuning.ack_timeout + tuning.quiet_period,
        "group member after nack(DeadLetter) (it must not be redelivered)",
    )
    .await?;
    quiet(
        &mut dlq,
        tuning.quiet_period,
        "dead-letter subscriber after one dead letter",
    )
    .await
}
