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

/// `topics()` lists what the backend keeps: lengths, ids, groups, and a
/// topic's dead letters with it.
pub async fn topics_catalog(ctx: &Ctx) -> CaseResult {
    use anyhow::{Context as _, ensure};
    use switchyard_core::{Pattern, TopicFilter};
    let t = ctx.connect().await?;
    let a = ctx.topic("cat.a")?;
    let b = ctx.topic("cat.b")?;
    let other = ctx.topic("elsewhere")?;
    let ids_a = publish_range(&t, &a, "a", 0..3).await?;
    let ids_b = publish_range(&t, &b, "b", 0..5).await?;
    publish_range(&t, &other, "o", 0..1).await?;
    let groups = ctx.capabilities().consumer_groups;
    if groups {
        // A group on b: 2 delivered and acked, 1 delivered and held.
        let mut sub = subscribe(
            &t,
            Subscription::new(b.clone())
                .group("billing")
                .start(Start::Earliest)
                .buffer(1),
            "group member on b (buffer 1)",
        )
        .await?;
        let got = collect(&mut sub, 3, ctx.tuning().recv_timeout, "group member on b").await?;
        let mut held = None;
        for (i, d) in got.into_iter().enumerate() {
            if i < 2 {
                d.ack().await.context("ack")?;
            } else {
                held = Some(d);
            }
        }
        // Settled acks reach the backend before the listing (bounded).
        let deadline = tokio::time::Instant::now() + ctx.tuning().recv_timeout;
        loop {
            let infos = t.topics(&TopicFilter::Exact(b.clone())).await?;
            let pending = infos
                .first()
                .and_then(|i| i.groups.first())
                .map(|g| g.pending);
            // The held delivery, plus what was read ahead: the member's
            // buffer of 1 and one read waiting for room (Redis counts them
            // as delivered).
            if pending.is_some_and(|p| (1..=3).contains(&p)) {
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the group's pending count stays {pending:?} (want 1 to 3 with read-ahead, after 2 acks of 3)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(held);
        sub.close().await?;
    }
    let prefix = a.as_str().trim_end_matches(".cat.a");
    let filter = TopicFilter::Pattern(Pattern::new(&format!("{prefix}.cat.*"))?);
    let infos = t.topics(&filter).await?;
    let names: Vec<&str> = infos.iter().map(|i| i.topic.as_str()).collect();
    ensure!(
        names == [a.as_str(), b.as_str()],
        "topics({filter}) listed {names:?}, want exactly [{a}, {b}] in order"
    );
    ensure!(
        infos[0].length == 3 && infos[1].length == 5,
        "lengths {} and {} (want 3 and 5)",
        infos[0].length,
        infos[1].length
    );
    ensure!(
        infos[0].first_id == ids_a.first().copied() && infos[0].last_id == ids_a.last().copied(),
        "ids of {a}: first {:?} last {:?}, published {:?}..{:?}",
        infos[0].first_id,
        infos[0].last_id,
        ids_a.first(),
        ids_a.last()
    );
    ensure!(infos[1].last_id == ids_b.last().copied(), "last id of {b}");
    if groups {
        let g = infos[1]
            .groups
            .first()
            .context("the group on b is not listed")?;
        ensure!(g.name == "billing", "group name {:?}", g.name);
        ensure!(
            (1..=3).contains(&g.pending),
            "pending {} (want 1 to 3 with read-ahead)",
            g.pending
        );
        let read_ahead = usize::try_from(g.pending - 1).unwrap_or(0);
        ensure!(
            g.last_delivered == ids_b.get(2 + read_ahead).copied(),
            "last delivered {:?} with {read_ahead} read ahead",
            g.last_delivered
        );
        if let Some(lag) = g.lag {
            let want = 2 - read_ahead as u64;
            ensure!(lag == want, "lag {lag} (want {want} of 5 not delivered)");
        }
        ensure!(infos[0].groups.is_empty(), "a has no group");
        if ctx.capabilities().dead_letters {
            // A dead letter of a, listed with a.
            let mut sub = subscribe(
                &t,
                Subscription::new(a.clone())
                    .group("fix")
                    .start(Start::Earliest),
                "group member on a",
            )
            .await?;
            let d = collect(&mut sub, 1, ctx.tuning().recv_timeout, "group member on a").await?;
            for d in d {
                d.nack(switchyard_core::Retry::DeadLetter("bad".into()))
                    .await?;
            }
            sub.close().await?;
            let dlq = a.dead_letter()?;
            let deadline = tokio::time::Instant::now() + ctx.tuning().recv_timeout;
            loop {
                let infos = t.topics(&filter).await?;
                if infos.iter().any(|i| i.topic == dlq && i.length == 1) {
                    break;
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "the dead-letter topic {dlq} is not listed with its origin"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    let none = t
        .topics(&TopicFilter::Pattern(Pattern::new(&format!(
            "{prefix}.nothing.*"
        ))?))
        .await?;
    ensure!(
        none.is_empty(),
        "a filter that matches nothing listed {none:?}"
    );
    Ok(())
}

/// Without replay (nothing kept), `topics()` is `Error::Unsupported`.
pub async fn topics_unsupported(ctx: &Ctx) -> CaseResult {
    use switchyard_core::TopicFilter;
    let t = ctx.connect().await?;
    let topic = ctx.topic("x")?;
    match t.topics(&TopicFilter::Exact(topic)).await {
        Err(Error::Unsupported { .. }) => Ok(()),
        other => bail!("topics() without replay: want Error::Unsupported, got {other:?}"),
    }
}
