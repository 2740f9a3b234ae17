//! Fan-out subscribers: XREAD from a cursor per stream on a dedicated
//! blocking connection.

use std::sync::Arc;

use switchyard_core::{Error, Result, Subscriber, Subscription};

use crate::discovery::TopicSource;
use crate::inner::Inner;

/// Starts a fan-out subscriber.
pub(crate) async fn subscribe(
    inner: Arc<Inner>,
    sub: Subscription,
    topics: TopicSource,
) -> Result<Box<dyn Subscriber>> {
    let _ = (inner, sub, topics);
    Err(Error::Unsupported {
        adapter: "redis-streams",
        what: "fan-out is being implemented".into(),
    })
}
