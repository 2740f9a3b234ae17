//! What a transport can tell about its topics: [`TopicInfo`] and
//! [`GroupInfo`], returned by [`Transport::topics`](crate::Transport::topics).

use std::time::Duration;

use crate::{MessageId, Topic};

/// One topic as the backend knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicInfo {
    /// The topic (a dead-letter topic `t:dlq` is listed when its origin
    /// `t` matches the filter).
    pub topic: Topic,
    /// Messages retained now.
    pub length: u64,
    /// Id of the oldest retained message, if any.
    pub first_id: Option<MessageId>,
    /// Id of the newest message ever added (it may have been trimmed).
    pub last_id: Option<MessageId>,
    /// Its consumer groups, sorted by name.
    pub groups: Vec<GroupInfo>,
}

impl TopicInfo {
    /// A topic with `length` messages and no groups.
    pub fn new(topic: Topic, length: u64) -> Self {
        TopicInfo {
            topic,
            length,
            first_id: None,
            last_id: None,
            groups: Vec::new(),
        }
    }
}

/// Who listens on one topic ([`Transport::subscribers`](crate::Transport::subscribers)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberCounts {
    /// Subscribers of this transport (for the memory adapter: of its hub)
    /// whose filter matches the topic, fan-out and group members alike.
    pub local: u64,
    /// Across a backplane: how many replicas (subscribing connections)
    /// are subscribed to the topic's channel now, this one included;
    /// `None` where the adapter cannot tell.
    pub remote: Option<u64>,
}

impl SubscriberCounts {
    /// `local` subscribers here, `remote` replicas where known.
    pub fn new(local: u64, remote: Option<u64>) -> Self {
        SubscriberCounts { local, remote }
    }
}

/// One consumer group of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Members (consumers) it knows.
    pub consumers: u64,
    /// Deliveries handed out and not settled yet.
    pub pending: u64,
    /// Messages not delivered to the group yet, when the backend knows.
    pub lag: Option<u64>,
    /// Id of the last message delivered to the group, if any.
    pub last_delivered: Option<MessageId>,
    /// How long the oldest unsettled delivery has been waiting: the time
    /// since its message was published, when the backend knows (Redis
    /// Streams: from the entry id's timestamp, which Redis takes from its
    /// own clock, against this process's clock; a skew between the two
    /// shifts it, and an id ahead of this clock gives zero). `None` when
    /// nothing is pending or the backend cannot tell.
    pub oldest_pending_age: Option<Duration>,
}

impl GroupInfo {
    /// A group named `name` with the given counts.
    pub fn new(name: impl Into<String>, consumers: u64, pending: u64) -> Self {
        GroupInfo {
            name: name.into(),
            consumers,
            pending,
            lag: None,
            last_delivered: None,
            oldest_pending_age: None,
        }
    }
}
