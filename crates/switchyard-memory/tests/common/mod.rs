//! Helpers shared by the memory adapter's tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_core::{Delivery, Message, Subscriber, Topic};

/// Generous deadline for something that must happen.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Receives the next delivery or panics after [`DEADLINE`].
pub(crate) async fn recv(sub: &mut Box<dyn Subscriber>) -> Delivery {
    tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .expect("no delivery before the deadline")
        .expect("subscriber ended")
        .expect("error item")
}

/// Receives within `wait`, or `None` if nothing came.
pub(crate) async fn recv_within(sub: &mut Box<dyn Subscriber>, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, sub.recv()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("error item: {e}"),
        Ok(None) | Err(_) => None,
    }
}

/// A unique topic name.
pub(crate) fn topic(name: &str) -> Topic {
    Topic::new(format!("t{:08x}.{name}", rand_u32())).unwrap()
}

fn rand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
        ^ std::process::id().rotate_left(16)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos())
}

/// A message on `topic` with payload `i` as decimal text.
pub(crate) fn msg(topic: &Topic, i: usize) -> Message {
    Message::new(topic.clone(), i.to_string())
}

/// The payload parsed back as a number.
pub(crate) fn num(d: &Delivery) -> usize {
    std::str::from_utf8(d.payload()).unwrap().parse().unwrap()
}
