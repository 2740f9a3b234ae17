//! Quick start: typed publish and subscribe with a consumer group.
//!
//! ```sh
//! cargo run -p switchyard-examples --example quickstart
//! SWITCHYARD_URL=redis+streams://127.0.0.1:6379 cargo run -p switchyard-examples --example quickstart
//! ```
//!
//! Two members of the group `greeters` share ten `Greeting`s; each message
//! goes to exactly one of them, which acknowledges it.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard::prelude::*;

#[derive(Serialize, Deserialize, Debug)]
struct Greeting {
    n: u32,
    text: String,
}

const COUNT: u32 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = switchyard::url_from_env();
    let transport = switchyard::connect(&url)
        .await
        .with_context(|| format!("could not connect to {}", switchyard::redact_url(&url)))?;
    println!(
        "connected to {} ({} adapter)",
        switchyard::redact_url(&url),
        transport.name()
    );

    let bus = Bus::new(transport.clone());
    // A run id keeps reruns apart on a persistent backend.
    let topic = Topic::new(format!("quickstart-{}.greetings", std::process::id()))?;

    // Two members of one group: each greeting goes to one of them.
    let mut members = Vec::new();
    for name in ["alice", "bob"] {
        let subscription = Subscription::new(topic.clone()).group_member("greeters", name);
        members.push((name, bus.subscribe::<Greeting>(subscription).await?));
    }

    for n in 1..=COUNT {
        let greeting = Greeting {
            n,
            text: format!("hello #{n}"),
        };
        bus.publish(&topic, &greeting).await?;
    }
    println!("published {COUNT} greetings on {topic}");

    // Take turns receiving until every greeting was handled, with a deadline.
    let mut handled = vec![0_u32; members.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handled.iter().sum::<u32>() < COUNT {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "timed out: only {} of {COUNT} greetings arrived",
                handled.iter().sum::<u32>()
            );
        }
        for (i, (name, sub)) in members.iter_mut().enumerate() {
            let Ok(Some(greeting)) =
                tokio::time::timeout(Duration::from_millis(50), sub.recv()).await
            else {
                continue;
            };
            let greeting = greeting?;
            println!(
                "{name} got {:?} (attempt {})",
                greeting.value.text,
                greeting.delivery.attempt()
            );
            greeting.ack().await?;
            handled[i] += 1;
        }
    }

    for ((name, sub), n) in members.into_iter().zip(handled) {
        println!("{name} handled {n}");
        sub.close().await?;
    }
    transport.close().await?;
    Ok(())
}
