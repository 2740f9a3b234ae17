//! Pattern subscriptions: following topics created later, never matching
//! dead-letter topics; refusing patterns when the adapter has none.

use anyhow::{bail, ensure};
use switchyard_core::{Error, Subscription, Topic};

use crate::support::{Sub, collect, publish_range, quiet, subscribe};
use crate::{CaseResult, Ctx};

/// Receives `n` and returns the sorted `topic:payload` pairs.
async fn topics_of(sub: &mut Sub, n: usize, ctx: &Ctx, what: &str) -> anyhow::Result<Vec<String>> {
    let got = collect(sub, n, ctx.tuning().recv_timeout, what).await?;
    let mut seen: Vec<String> = got
        .iter()
        .map(|d| format!("{}:{}", d.topic(), String::from_utf8_lossy(d.payload())))
        .collect();
    seen.sort();
    Ok(seen)
}

/// ROS-style rooted topics (`/robot-1/camera/rgb`): a rooted pattern
/// (`/*/camera/rgb`) gets exactly the rooted topics, an unrooted one exactly
/// the unrooted ones, and `/scan` and `scan` are two topics.
///
/// Reproduction (before): `Topic::new("/scan")` failed with "empty segment
/// at byte 0", so robot software had to rename every topic.
pub async fn rooted_topics(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let p = ctx.prefix();
    let mut rooted = subscribe(
        &t,
        Subscription::to(&format!("/{p}/*/camera/rgb"))?,
        "`/<p>/*/camera/rgb` subscriber",
    )
    .await?;
    let mut plain = subscribe(
        &t,
        Subscription::to(&format!("{p}/*/camera/rgb"))?,
        "`<p>/*/camera/rgb` subscriber",
    )
    .await?;
    let scan = Topic::new(format!("/{p}/scan"))?;
    let mut exact = subscribe(
        &t,
        Subscription::new(scan.clone()),
        "`/<p>/scan` subscriber",
    )
    .await?;

    let r1 = Topic::new(format!("/{p}/robot-1/camera/rgb"))?;
    let r2 = Topic::new(format!("/{p}/robot-2/camera/rgb"))?;
    let r3 = Topic::new(format!("{p}/robot-3/camera/rgb"))?;
    publish_range(&t, &r1, "f", 0..2).await?;
    publish_range(&t, &r2, "f", 0..3).await?;
    publish_range(&t, &r3, "f", 0..1).await?;
    publish_range(&t, &Topic::new(format!("{p}/scan"))?, "s", 0..2).await?;
    publish_range(&t, &scan, "s", 0..1).await?;

    let mut want: Vec<String> = (0..2)
        .map(|i| format!("{r1}:f-{i:06}"))
        .chain((0..3).map(|i| format!("{r2}:f-{i:06}")))
        .collect();
    want.sort();
    let got = topics_of(&mut rooted, want.len(), ctx, "rooted pattern subscriber").await?;
    ensure!(
        got == want,
        "`/{p}/*/camera/rgb`: expected {want:?}, got {got:?}"
    );
    let want_plain = vec![format!("{r3}:f-000000")];
    let got = topics_of(&mut plain, 1, ctx, "unrooted pattern subscriber").await?;
    ensure!(
        got == want_plain,
        "`{p}/*/camera/rgb`: expected {want_plain:?}, got {got:?}"
    );
    let want_scan = vec![format!("{scan}:s-000000")];
    let got = topics_of(&mut exact, 1, ctx, "`/<p>/scan` subscriber").await?;
    ensure!(
        got == want_scan,
        "`{scan}`: expected {want_scan:?}, got {got:?}"
    );
    quiet(
        &mut rooted,
        tuning.quiet_period,
        "rooted pattern subscriber after its 5",
    )
    .await?;
    quiet(
        &mut plain,
        tuning.quiet_period,
        "unrooted pattern subscriber after its 1",
    )
    .await?;
    quiet(
        &mut exact,
        tuning.quiet_period,
        "`/<p>/scan` subscriber after its 1 (`<p>/scan` is another topic)",
    )
    .await
}

/// `prefix.*` and `prefix.>` follow topics created after subscribing, with
/// exact counts, and skip dead-letter topics.
pub async fn pattern_follows_new_topics(ctx: &Ctx) -> CaseResult {
    let tuning = ctx.tuning();
    let t = ctx.connect().await?;
    let prefix = format!("{}.sensors", ctx.prefix());
    let mut star = subscribe(
        &t,
        Subscription::to(&format!("{prefix}.*"))?,
        "`*` subscriber",
    )
    .await?;
    let mut tail = subscribe(
        &t,
        Subscription::to(&format!("{prefix}.>"))?,
        "`>` subscriber",
    )
    .await?;

    let t1 = Topic::new(format!("{prefix}.t1"))?;
    let t2 = Topic::new(format!("{prefix}.t2"))?;
    let deep = Topic::new(format!("{prefix}.t1.deep"))?;
    let dlq = Topic::new(format!("{prefix}.t3:dlq"))?;
    let outside = ctx.topic("elsewhere.t1")?;
    publish_range(&t, &t1, "x", 0..3).await?;
    publish_range(&t, &t2, "x", 0..4).await?;
    publish_range(&t, &deep, "x", 0..1).await?;
    publish_range(&t, &dlq, "x", 0..2).await?;
    publish_range(&t, &outside, "x", 0..1).await?;

    let mut want_star: Vec<String> = (0..3)
        .map(|i| format!("{t1}:x-{i:06}"))
        .chain((0..4).map(|i| format!("{t2}:x-{i:06}")))
        .collect();
    want_star.sort();
    let mut want_tail = want_star.clone();
    want_tail.push(format!("{deep}:x-000000"));
    want_tail.sort();

    let got_star = topics_of(&mut star, want_star.len(), ctx, "`*` subscriber").await?;
    ensure!(
        got_star == want_star,
        "`{prefix}.*` subscriber: expected {want_star:?}, got {got_star:?}"
    );
    let got_tail = topics_of(&mut tail, want_tail.len(), ctx, "`>` subscriber").await?;
    ensure!(
        got_tail == want_tail,
        "`{prefix}.>` subscriber: expected {want_tail:?}, got {got_tail:?}"
    );
    quiet(
        &mut star,
        tuning.quiet_period,
        "`*` subscriber after its 7 (dead-letter and deeper topics must not match)",
    )
    .await?;
    quiet(
        &mut tail,
        tuning.quiet_period,
        "`>` subscriber after its 8 (dead-letter topics must not match)",
    )
    .await
}

/// Without patterns, a pattern subscription is refused.
pub async fn patterns_unsupported(ctx: &Ctx) -> CaseResult {
    let t = ctx.connect().await?;
    let filter = format!("{}.*", ctx.prefix());
    match t.subscribe(Subscription::to(&filter)?).await {
        Ok(_) => bail!(
            "subscribe to {filter:?} succeeded although capabilities.patterns = false: it must fail with Unsupported or InvalidConfig"
        ),
        Err(Error::Unsupported { .. } | Error::InvalidConfig(_)) => Ok(()),
        Err(e) => bail!(
            "subscribe to {filter:?}: expected Err(Unsupported) or Err(InvalidConfig), got Err({e:?})"
        ),
    }
}

/// A dead-letter pattern (`<prefix>.*:dlq`) follows the dead letters of
/// every topic its wildcard part matches, and nothing else.
pub async fn dead_letter_pattern(ctx: &Ctx) -> CaseResult {
    use anyhow::{Context as _, ensure};
    use switchyard_core::{Pattern, Retry, Start, Subscription, TopicFilter};
    let tuning = ctx.tuning().clone();
    let t = ctx.connect().await?;
    let a = ctx.topic("dl.a")?;
    let b = ctx.topic("dl.b")?;
    let prefix = a.as_str().trim_end_matches(".dl.a");
    let filter = TopicFilter::Pattern(Pattern::new(&format!("{prefix}.dl.*:dlq"))?);
    // Dead letters of a and b.
    for (topic, tag) in [(&a, "a"), (&b, "b")] {
        let mut sub = crate::support::subscribe(
            &t,
            Subscription::new(topic.clone())
                .group("fix")
                .start(Start::Earliest),
            "group member",
        )
        .await?;
        crate::support::publish_range(&t, topic, tag, 0..2).await?;
        for _ in 0..2 {
            let d = crate::support::next(&mut sub, tuning.recv_timeout, "to dead-letter").await?;
            d.nack(Retry::DeadLetter("bad".into())).await?;
        }
        sub.close().await?;
    }
    // Something that is no dead letter, on a matching name.
    crate::support::publish_range(&t, &a, "live", 0..1).await?;
    let mut dead = crate::support::subscribe(
        &t,
        Subscription::new(filter.clone()).start(Start::Earliest),
        "dead-letter pattern subscriber",
    )
    .await?;
    let mut topics = Vec::new();
    for _ in 0..4 {
        let d = crate::support::next(&mut dead, tuning.recv_timeout, "the 4 dead letters").await?;
        ensure!(
            d.topic().is_dead_letter(),
            "the dead-letter pattern delivered {} (not a dead letter)",
            d.topic()
        );
        topics.push(d.topic().to_string());
    }
    topics.sort();
    let want = vec![
        a.dead_letter()?.to_string(),
        a.dead_letter()?.to_string(),
        b.dead_letter()?.to_string(),
        b.dead_letter()?.to_string(),
    ];
    ensure!(
        topics == want,
        "dead letters from {topics:?}, want {want:?}"
    );
    crate::support::quiet(&mut dead, tuning.quiet_period, "after the 4 dead letters")
        .await
        .context("nothing else arrives")?;
    dead.close().await?;
    Ok(())
}
