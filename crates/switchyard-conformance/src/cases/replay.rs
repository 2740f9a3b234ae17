//! Where a subscription starts: Latest, Earliest, After(id), and refusing
//! replay when the adapter has none.

use anyhow::bail;
use switchyard_core::{Error, MessageId, Start, Subscription};

use crate::support::{collect, exactly_once, in_order, indices, publish_range, quiet, subscribe};
use crate::{CaseResult, Ctx};

/// Latest skips what came before and gets what comes after.
pub async fn latest_skips_history(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("latest")?;
    publish_range(&t, &topic, "l", 0..10).await?;
    let mut sub = subscribe(
        &t,
        Subscription::new(topic.clone()).start(Start::Latest),
        "Latest subscriber",
    )
    .await?;
    publish_range(&t, &topic, "l", 10..15).await?;
    let got = collect(&mut sub, 5, tuning.recv_timeout, "Latest subscriber").await?;
    let mut idx = indices("l", &got)?;
    idx.sort_unstable();
    if idx != [10, 11, 12, 13, 14] {
        bail!(
            "Start::Latest subscriber: expected exactly messages 10..15 (published after subscribe), got {idx:?}"
        );
    }
    quiet(&mut sub, tuning.quiet_period, "Latest subscriber after 5").await
}

/// Earliest gets everything published before, then what follows.
pub async fn replay_earliest(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let ordered = ctx.capabilities().per_topic_ordering;
    let t = ctx.connect().await?;
    let topic = ctx.topic("history")?;
    publish_range(&t, &topic, "h", 0..20).await?;
    let mut sub = subscribe(
        &t,
        Subscription::new(topic.clone()).start(Start::Earliest),
        "Earliest subscriber",
    )
    .await?;
    let old = collect(
        &mut sub,
        20,
        tuning.recv_timeout,
        "Earliest subscriber (history)",
    )
    .await?;
    let old_idx = indices("h", &old)?;
    exactly_once(&old_idx, 20, "Earliest subscriber (history)")?;
    if ordered {
        in_order(&old_idx, 0..20, "Earliest subscriber (history)")?;
    }
    publish_range(&t, &topic, "h", 20..25).await?;
    let new = collect(
        &mut sub,
        5,
        tuning.recv_timeout,
        "Earliest subscriber (live)",
    )
    .await?;
    let mut all = old_idx;
    all.extend(indices("h", &new)?);
    exactly_once(&all, 25, "Earliest subscriber (history + live)")?;
    if ordered {
        in_order(&all, 0..25, "Earliest subscriber (history + live)")?;
    }
    quiet(
        &mut sub,
        tuning.quiet_period,
        "Earliest subscriber after 25",
    )
    .await
}

/// After(id of the 10th) gets the 11th on.
pub async fn replay_after_id(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let topic = ctx.topic("after")?;
    let ids = publish_range(&t, &topic, "a", 0..20).await?;
    let tenth = ids[9];
    let mut sub = subscribe(
        &t,
        Subscription::new(topic.clone()).start(Start::After(tenth)),
        "After(10th) subscriber",
    )
    .await?;
    let got = collect(&mut sub, 10, tuning.recv_timeout, "After(10th) subscriber").await?;
    let idx = indices("a", &got)?;
    let mut sorted = idx.clone();
    sorted.sort_unstable();
    if sorted != (10..20).collect::<Vec<_>>() {
        bail!(
            "Start::After({tenth}) (the 10th message's id): expected exactly messages 10..20, got {idx:?}"
        );
    }
    if ctx.capabilities().per_topic_ordering {
        in_order(&idx, 10..20, "After(10th) subscriber")?;
    }
    publish_range(&t, &topic, "a", 20..21).await?;
    let live = collect(
        &mut sub,
        1,
        tuning.recv_timeout,
        "After(10th) subscriber (live)",
    )
    .await?;
    let live_idx = indices("a", &live)?;
    if live_idx != [20] {
        bail!("After(10th) subscriber: expected the live message 20, got {live_idx:?}");
    }
    quiet(
        &mut sub,
        tuning.quiet_period,
        "After(10th) subscriber after 11",
    )
    .await
}

/// Without replay, Earliest and After are refused.
pub async fn replay_unsupported(ctx: &Ctx) -> CaseResult {
    let t = ctx.connect().await?;
    let topic = ctx.topic("noreplay")?;
    for start in [Start::Earliest, Start::After(MessageId::new(0, 1))] {
        match t
            .subscribe(Subscription::new(topic.clone()).start(start))
            .await
        {
            Ok(_) => bail!(
                "subscribe with {start:?} succeeded although capabilities.replay = false: it must fail with Unsupported or InvalidConfig, not silently start at Latest"
            ),
            Err(Error::Unsupported { .. } | Error::InvalidConfig(_)) => {}
            Err(e) => bail!(
                "subscribe with {start:?}: expected Err(Unsupported) or Err(InvalidConfig), got Err({e:?})"
            ),
        }
    }
    Ok(())
}
