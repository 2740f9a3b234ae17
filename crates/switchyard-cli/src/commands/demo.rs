//! `switchyard demo`: a small typed order pipeline on any transport.
//!
//! 30 `OrderCreated` events are published on `orders.created`. A fan-out
//! "audit" subscriber sees every one; the group `fulfilment` of three workers
//! shares them. Order #7 fails once with a transient error (`Retry::Now`) and
//! succeeds on attempt 2; order #13 is invalid and is dead-lettered
//! (`Retry::DeadLetter`) onto `orders.created:dlq`, where a dead-letter
//! reader shows why. Every wait has a deadline.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use switchyard::{Bus, Retry, Subscription, Topic, Transport, TypedSubscriber, header, redact_url};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::GlobalOpts;
use crate::output::out;

/// Options of `switchyard demo`.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Give up on any single step (publishing, settling, reading dead
    /// letters) after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
}

/// The event of the demo.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct OrderCreated {
    id: u64,
    customer: String,
    amount_cents: u64,
    item: String,
}

/// Orders published.
const ORDERS: u64 = 30;
/// Members of the consumer group.
const WORKERS: usize = 3;
/// The group name.
const GROUP: &str = "fulfilment";
/// This order fails once with a transient error, then succeeds.
const FLAKY_ORDER: u64 = 7;
/// This order is invalid (amount 0) and is dead-lettered.
const POISON_ORDER: u64 = 13;
/// Simulated work per order, so the group members share the load.
const WORK: Duration = Duration::from_millis(3);

const CUSTOMERS: [&str; 5] = ["ada", "grace", "linus", "margaret", "ken"];
const ITEMS: [&str; 4] = ["widget", "gadget", "sprocket", "flux capacitor"];

fn order(id: u64) -> OrderCreated {
    let i = usize::try_from(id).unwrap_or(0);
    OrderCreated {
        id,
        customer: CUSTOMERS[i % CUSTOMERS.len()].to_owned(),
        amount_cents: if id == POISON_ORDER {
            0
        } else {
            499 + 250 * (id % 7)
        },
        item: ITEMS[i % ITEMS.len()].to_owned(),
    }
}

/// What the workers share.
#[derive(Default)]
struct Progress {
    fulfilled: BTreeSet<u64>,
    /// (order id, attempt) of every delivery with attempt > 1.
    redelivered: Vec<(u64, u32)>,
    dead_lettered: Vec<u64>,
    transient_failures: u64,
    decode_errors: u64,
}

/// What one worker did.
struct WorkerReport {
    name: String,
    handled: u64,
}

pub(crate) async fn run(args: DemoArgs, global: &GlobalOpts) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = Duration::from_secs(args.timeout.max(1));
    let shown_url = redact_url(global.url.trim());

    let transport = switchyard::connect(&global.url)
        .await
        .map_err(|e| match e {
            // It names the URL already.
            switchyard::Error::InvalidUrl { .. } => anyhow!(e),
            e => anyhow!(e).context(format!("could not open {shown_url}")),
        })?;
    let result = pipeline(&transport, &shown_url, deadline, started).await;
    let closed = within(deadline, "the transport to close".into(), async {
        transport
            .close()
            .await
            .with_context(|| format!("could not close the {} transport", transport.name()))
    })
    .await;
    let summary = result?;
    closed?;
    out(&summary).context("could not write the summary to stdout")?;
    Ok(())
}

/// Runs the pipeline and returns the summary text.
async fn pipeline(
    transport: &Arc<dyn Transport>,
    shown_url: &str,
    deadline: Duration,
    started: Instant,
) -> anyhow::Result<String> {
    let caps = transport.capabilities();
    if !caps.consumer_groups || !caps.dead_letters {
        bail!(
            "the demo needs consumer groups and dead letters, which the {} adapter does not have: use memory:// or redis+streams://HOST:PORT",
            transport.name()
        );
    }
    // memory:// is fresh in every run; on a shared backend (Redis) a run id
    // keeps reruns from seeing each other's orders and groups.
    let prefix = if transport.name() == "memory" {
        String::new()
    } else {
        format!("demo-{:08x}.", rand::random::<u32>())
    };
    let topic = Topic::new(format!("{prefix}orders.created"))?;
    let dlq = topic.dead_letter()?;
    let bus = Bus::new(transport.clone());

    // Subscribe everything before publishing (Start::Latest).
    let (audit, mut dead_letters, members) = within(deadline, "the subscriptions".into(), async {
        let audit = bus
            .subscribe::<OrderCreated>(Subscription::new(topic.clone()))
            .await
            .context("could not subscribe the audit reader")?;
        let dead_letters = transport
            .subscribe(Subscription::new(dlq.clone()))
            .await
            .context("could not subscribe the dead-letter reader")?;
        let mut members = Vec::new();
        for n in 1..=WORKERS {
            let name = format!("worker-{n}");
            let subscription = Subscription::new(topic.clone())
                .group_member(GROUP, name.clone())
                .max_attempts(3)
                .buffer(4);
            let sub = bus
                .subscribe::<OrderCreated>(subscription)
                .await
                .with_context(|| format!("could not join group {GROUP:?} as {name}"))?;
            members.push((name, sub));
        }
        Ok((audit, dead_letters, members))
    })
    .await?;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let (settled_tx, mut settled_rx) = watch::channel(0_u64);
    let settled_tx = Arc::new(settled_tx);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = JoinSet::new();
    for (name, sub) in members {
        workers.spawn(worker(
            name,
            sub,
            progress.clone(),
            settled_tx.clone(),
            stop_rx.clone(),
        ));
    }
    let audit_task = tokio::spawn(audit_reader(audit, ORDERS));

    // Publish.
    within(deadline, format!("publishing {ORDERS} orders"), async {
        for id in 1..=ORDERS {
            bus.publish(&topic, &order(id))
                .await
                .with_context(|| format!("could not publish order #{id} on {topic}"))?;
        }
        Ok(())
    })
    .await?;

    // Wait until the group settled every order (acked or dead-lettered),
    // noticing a worker that fails on the way.
    let waited = tokio::time::timeout(deadline, async {
        tokio::select! {
            done = settled_rx.wait_for(|n| *n >= ORDERS) => {
                done.map(|_| ()).map_err(|_| anyhow!("the workers stopped before settling every order"))
            }
            Some(joined) = workers.join_next() => match joined {
                Ok(Err(e)) => Err(e),
                Ok(Ok(report)) => Err(anyhow!("{}'s subscription ended before every order was settled", report.name)),
                Err(e) => Err(anyhow!("a worker crashed: {e}")),
            },
        }
    })
    .await;
    match waited {
        Ok(result) => result?,
        Err(_) => bail!(
            "timed out after {deadline:?} waiting for group {GROUP:?} to settle {ORDERS} orders ({} settled); rerun with -v for details",
            *settled_rx.borrow()
        ),
    }

    // The audit reader must have seen every order.
    let audited = match tokio::time::timeout(deadline, audit_task).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => bail!("the audit reader crashed: {e}"),
        Err(_) => bail!(
            "timed out after {deadline:?} waiting for the audit reader to see {ORDERS} orders"
        ),
    };

    // The dead-letter reader shows the poison order and why.
    let dead = within(deadline, format!("the dead letter on {dlq}"), async {
        match dead_letters.recv().await {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(anyhow!(e).context(format!("could not read {dlq}"))),
            None => Err(anyhow!("the dead-letter subscription on {dlq} closed")),
        }
    })
    .await?;
    let reason = dead
        .headers()
        .get(header::DLQ_REASON)
        .unwrap_or("(none)")
        .to_owned();
    let attempts = dead
        .headers()
        .get(header::DLQ_ATTEMPTS)
        .unwrap_or("?")
        .to_owned();
    let dead_order = serde_json::from_slice::<OrderCreated>(dead.payload())
        .map(|o| {
            format!(
                "#{} ({} x {}, {} cents)",
                o.id, o.customer, o.item, o.amount_cents
            )
        })
        .unwrap_or_else(|e| format!("(payload does not decode: {e})"));
    dead.ack().await.context("could not ack the dead letter")?;

    // Stop the workers and collect what each did.
    let _ = stop_tx.send(true);
    let mut reports = Vec::new();
    while let Some(joined) = tokio::time::timeout(deadline, workers.join_next())
        .await
        .map_err(|_| anyhow!("timed out after {deadline:?} waiting for the workers to stop"))?
    {
        reports.push(joined.map_err(|e| anyhow!("a worker crashed: {e}"))??);
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    dead_letters
        .close()
        .await
        .context("could not close the dead-letter reader")?;

    let p = progress
        .lock()
        .map_err(|_| anyhow!("a worker panicked while holding the progress lock"))?;
    let mut s = String::new();
    let mut line = |label: &str, rest: String| {
        let _ = writeln!(s, "{label:<18}{rest}");
    };
    line(
        &format!(
            "switchyard demo on {shown_url} ({} adapter)",
            transport.name()
        ),
        String::new(),
    );
    line(
        &format!(
            "{ORDERS} orders published on {topic}; fan-out reader \"audit\"; group {GROUP:?} with {WORKERS} workers"
        ),
        String::new(),
    );
    line("", String::new());
    line(
        "audited",
        format!("{audited:>3} orders (the fan-out reader saw every order)"),
    );
    line(
        "fulfilled",
        format!("{:>3} orders (acked by group {GROUP:?})", p.fulfilled.len()),
    );
    for r in &reports {
        line(
            &format!("  {}", r.name),
            format!("{:>3} deliveries", r.handled),
        );
    }
    let retried = p
        .redelivered
        .iter()
        .map(|(id, attempt)| format!("#{id} succeeded on attempt {attempt}"))
        .collect::<Vec<_>>()
        .join(", ");
    line(
        "redelivered",
        format!(
            "{:>3} order  ({retried}, after {} transient failure nacked with Retry::Now)",
            p.redelivered.len(),
            p.transient_failures
        ),
    );
    let dead_ids = p
        .dead_lettered
        .iter()
        .map(|id| format!("#{id}"))
        .collect::<Vec<_>>()
        .join(", ");
    line(
        "dead-lettered",
        format!(
            "{:>3} order  ({dead_ids}, nacked with Retry::DeadLetter) -> {dlq}",
            p.dead_lettered.len()
        ),
    );
    line("  order", dead_order);
    line(&format!("  {}", header::DLQ_REASON), reason);
    line(&format!("  {}", header::DLQ_ATTEMPTS), attempts);
    if p.decode_errors > 0 {
        line("decode errors", format!("{:>3}", p.decode_errors));
    }
    line("", String::new());
    line(
        &format!("done in {} ms", started.elapsed().as_millis()),
        String::new(),
    );
    let s = s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n";

    if p.fulfilled.len() as u64 != ORDERS - 1 || p.dead_lettered.len() != 1 || audited != ORDERS {
        out(&s)?;
        bail!(
            "the demo ended with unexpected counts: {} fulfilled, {} dead-lettered, {audited} audited (expected {}, 1, {ORDERS})",
            p.fulfilled.len(),
            p.dead_lettered.len(),
            ORDERS - 1
        );
    }
    Ok(s)
}

/// One member of the group: processes orders until told to stop.
async fn worker(
    name: String,
    mut sub: TypedSubscriber<OrderCreated>,
    progress: Arc<Mutex<Progress>>,
    settled: Arc<watch::Sender<u64>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<WorkerReport> {
    let mut handled = 0;
    loop {
        let item = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            item = sub.recv() => item,
        };
        let Some(item) = item else { break };
        let order = match item {
            Ok(order) => order,
            Err(e) if matches!(e, switchyard::Error::Codec { .. }) => {
                // The typed layer already dead-lettered it.
                tracing::warn!(worker = %name, error = %e, "undecodable order");
                lock(&progress)?.decode_errors += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "receive error");
                continue;
            }
        };
        handled += 1;
        let id = order.value.id;
        let attempt = order.delivery.attempt();
        if attempt > 1 {
            lock(&progress)?.redelivered.push((id, attempt));
        }
        tokio::time::sleep(WORK).await;
        if order.value.amount_cents == 0 {
            let reason = format!("order #{id} rejected: amount_cents is 0, must be positive");
            order
                .nack(Retry::DeadLetter(reason))
                .await
                .with_context(|| format!("{name} could not dead-letter order #{id}"))?;
            lock(&progress)?.dead_lettered.push(id);
            settled.send_modify(|n| *n += 1);
        } else if id == FLAKY_ORDER && attempt == 1 {
            tracing::debug!(worker = %name, id, "simulated transient failure");
            order
                .nack(Retry::Now)
                .await
                .with_context(|| format!("{name} could not nack order #{id}"))?;
            lock(&progress)?.transient_failures += 1;
        } else {
            order
                .ack()
                .await
                .with_context(|| format!("{name} could not ack order #{id}"))?;
            if lock(&progress)?.fulfilled.insert(id) {
                settled.send_modify(|n| *n += 1);
            }
        }
    }
    sub.close()
        .await
        .with_context(|| format!("{name} could not close its subscription"))?;
    Ok(WorkerReport { name, handled })
}

/// The fan-out reader: counts the distinct orders it sees.
async fn audit_reader(mut sub: TypedSubscriber<OrderCreated>, expect: u64) -> anyhow::Result<u64> {
    let mut seen = BTreeSet::new();
    while (seen.len() as u64) < expect {
        match sub.recv().await {
            Some(Ok(order)) => {
                seen.insert(order.value.id);
                order
                    .ack()
                    .await
                    .context("the audit reader could not ack")?;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "audit reader: receive error"),
            None => bail!("the audit subscription closed after {} orders", seen.len()),
        }
    }
    sub.close()
        .await
        .context("could not close the audit reader")?;
    Ok(seen.len() as u64)
}

fn lock(progress: &Mutex<Progress>) -> anyhow::Result<std::sync::MutexGuard<'_, Progress>> {
    progress
        .lock()
        .map_err(|_| anyhow!("a worker panicked while holding the progress lock"))
}

/// Runs `fut` with a deadline; the error names what was awaited.
async fn within<T>(
    deadline: Duration,
    what: String,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!(
            "timed out after {deadline:?} waiting for {what}; rerun with -v for details"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_poison_order_is_invalid() {
        for id in 1..=ORDERS {
            assert_eq!(order(id).amount_cents == 0, id == POISON_ORDER, "{id}");
        }
        assert_ne!(FLAKY_ORDER, POISON_ORDER);
    }
}
