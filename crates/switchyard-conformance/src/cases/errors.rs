//! Errors instead of panics: invalid names and settings, work after close.

use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_core::{Error, Message, Subscription, Topic, TopicFilter};
use tokio::time::timeout;

use crate::support::{expect_err, subscribe};
use crate::{CaseResult, Ctx};

fn invalid_topic(e: &Error) -> bool {
    matches!(e, Error::InvalidTopic { .. })
}

fn invalid_config(e: &Error) -> bool {
    matches!(e, Error::InvalidConfig(_))
}

fn closed(e: &Error) -> bool {
    matches!(e, Error::Closed)
}

/// Invalid topic names and filters are `Err(InvalidTopic)`.
pub async fn invalid_topics(_ctx: &Ctx) -> CaseResult {
    let long = "a".repeat(300);
    for name in ["a..b", "", ".a", "a.", "a b", "a.*", long.as_str()] {
        expect_err(
            Topic::new(name),
            invalid_topic,
            "InvalidTopic",
            &format!("Topic::new({:?})", crate::support::preview(name.as_bytes())),
        )?;
    }
    expect_err(
        Message::to("a b", "x"),
        invalid_topic,
        "InvalidTopic",
        "Message::to(\"a b\", ..)",
    )?;
    for filter in ["a.>.b", "a..*", "", "a.b,", "*x"] {
        expect_err(
            Subscription::to(filter),
            invalid_topic,
            "InvalidTopic",
            &format!("Subscription::to({filter:?})"),
        )?;
        expect_err(
            TopicFilter::parse(filter),
            invalid_topic,
            "InvalidTopic",
            &format!("TopicFilter::parse({filter:?})"),
        )?;
    }
    Ok(())
}

/// `subscribe` validates its settings.
pub async fn invalid_subscription(ctx: &Ctx) -> CaseResult {
    let t = ctx.connect().await?;
    let topic = ctx.topic("config")?;
    let base = Subscription::new(topic);
    let bad = [
        ("buffer(0)", base.clone().buffer(0)),
        (
            "buffer(MAX_BUFFER + 1)",
            base.clone().buffer(Subscription::MAX_BUFFER + 1),
        ),
        ("max_attempts(0)", base.clone().max_attempts(0)),
        ("ack_timeout(0)", base.clone().ack_timeout(Duration::ZERO)),
    ];
    for (what, sub) in bad {
        expect_err(
            t.subscribe(sub).await,
            invalid_config,
            "InvalidConfig",
            &format!("subscribe with {what}"),
        )?;
    }
    Ok(())
}

/// After `close()`, new work is refused with `Err(Closed)`.
pub async fn publish_after_close(ctx: &Ctx) -> CaseResult {
    let wait = ctx.tuning().recv_timeout;
    let t = ctx.connect().await?;
    let topic = ctx.topic("closed")?;
    t.publish(Message::new(topic.clone(), "before"))
        .await
        .context("publish before close")?;
    timeout(wait, t.close())
        .await
        .with_context(|| format!("close() did not return within {wait:?}"))?
        .context("close()")?;
    expect_err(
        t.publish(Message::new(topic.clone(), "after")).await,
        closed,
        "Closed",
        "publish after close()",
    )?;
    expect_err(
        t.publish_batch(vec![Message::new(topic.clone(), "after")])
            .await,
        closed,
        "Closed",
        "publish_batch after close()",
    )?;
    expect_err(
        t.subscribe(Subscription::new(topic)).await,
        closed,
        "Closed",
        "subscribe after close()",
    )?;
    if timeout(wait, t.close()).await.is_err() {
        bail!("a second close() did not return within {wait:?}");
    }
    Ok(())
}

/// A subscriber ends (`recv()` is `None`) when its transport closes.
pub async fn recv_after_close(ctx: &Ctx) -> CaseResult {
    let wait = ctx.tuning().recv_timeout;
    let t = ctx.connect().await?;
    let topic = ctx.topic("ending")?;
    let mut sub = subscribe(&t, Subscription::new(topic), "subscriber").await?;
    timeout(wait, t.close())
        .await
        .with_context(|| format!("close() did not return within {wait:?}"))?
        .context("close()")?;
    match timeout(wait, sub.recv()).await {
        Err(_) => {
            bail!("recv() after the transport closed did not return within {wait:?}; expected None")
        }
        Ok(None) => Ok(()),
        Ok(Some(Ok(d))) => bail!(
            "recv() after the transport closed returned a delivery ({}); expected None",
            crate::support::describe(&d)
        ),
        Ok(Some(Err(e))) => {
            bail!("recv() after the transport closed returned an error item ({e}); expected None")
        }
    }
}
