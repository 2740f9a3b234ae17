//! Per-topic retention rules: the most specific rule caps each topic.

use std::sync::Arc;

use anyhow::{Context, bail};
use switchyard_core::{
    Message, Retention, RetentionRules, Start, Subscription, Topic, TopicFilter, Transport,
};

use crate::support::{collect, in_order, indices, payload, quiet, subscribe};
use crate::{CaseResult, Ctx};

/// Messages published on each topic.
const N: usize = 1000;

async fn publish_all(t: &Arc<dyn Transport>, topic: &Topic) -> anyhow::Result<()> {
    for start in (0..N).step_by(250) {
        let batch: Vec<Message> = (start..(start + 250).min(N))
            .map(|i| Message::new(topic.clone(), payload("r", i)))
            .collect();
        t.publish_batch(batch)
            .await
            .with_context(|| format!("publishing {start}.. on {topic}"))?;
    }
    Ok(())
}

async fn length(t: &Arc<dyn Transport>, topic: &Topic) -> anyhow::Result<usize> {
    let infos = t
        .topics(&TopicFilter::Exact(topic.clone()))
        .await
        .with_context(|| format!("topics() of {topic}"))?;
    let info = infos
        .iter()
        .find(|i| &i.topic == topic)
        .with_context(|| format!("topics() does not list {topic}"))?;
    usize::try_from(info.length).context("length")
}

/// Rules by pattern and exact topic: each topic keeps what its most
/// specific rule says, and replay returns exactly the newest that many.
pub async fn retention_rules(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let p = ctx.prefix();
    let mut rules = RetentionRules::new();
    rules.push(
        TopicFilter::parse(&format!("{p}.>"))?,
        Retention::max_len_of(500),
    )?;
    rules.push(
        TopicFilter::parse(&format!("{p}.*.rgb"))?,
        Retention::max_len_of(50),
    )?;
    rules.push(
        TopicFilter::parse(&format!("{p}.r1.rgb"))?,
        Retention::max_len_of(0),
    )?;
    let t = ctx
        .namespace()
        .connect_with_retention(&rules)
        .await
        .context("connecting a transport with retention rules")?;
    for (suffix, low, high) in [
        ("r7.rgb", 50, 500),
        ("r7.odom", 500, N),
        ("r1.rgb", N, N + 1),
    ] {
        let topic = ctx.topic(suffix)?;
        publish_all(&t, &topic).await?;
        let kept = length(&t, &topic).await?;
        if !(low..high).contains(&kept) {
            bail!(
                "{suffix}: {N} published, {kept} kept; its rule keeps {low} (an approximate backend up to {})",
                high - 1
            );
        }
        let what = format!("Earliest replay of {suffix}");
        let mut sub = subscribe(
            &t,
            Subscription::new(topic.clone()).start(Start::Earliest),
            &what,
        )
        .await?;
        let got = collect(&mut sub, kept, tuning.recv_timeout, &what).await?;
        let mut idx = indices("r", &got)?;
        if !ctx.capabilities().per_topic_ordering {
            idx.sort_unstable();
        }
        in_order(&idx, N - kept..N, &what)?;
        quiet(&mut sub, tuning.quiet_period, &what).await?;
        sub.close().await?;
    }
    t.close().await?;
    Ok(())
}
