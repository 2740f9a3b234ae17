//! Consumer groups (`Mode::Group`): XREADGROUP, batched acks, redelivery,
//! claiming from crashed members, dead letters.

use std::sync::Arc;

use switchyard_core::{Error, Result, Subscriber, Subscription};

use crate::discovery::TopicSource;
use crate::inner::Inner;

/// Starts a group subscriber.
pub(crate) async fn subscribe(
    inner: Arc<Inner>,
    sub: Subscription,
    topics: TopicSource,
) -> Result<Box<dyn Subscriber>> {
    let _ = (inner, sub, topics);
    Err(Error::Unsupported {
        adapter: "redis-streams",
        what: "consumer groups are not implemented yet".into(),
    })
}
