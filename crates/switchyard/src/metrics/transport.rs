//! [`Metered`]: a transport that counts and times its publishes and wraps
//! its subscribers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ::metrics::{Counter, Histogram, Label};

use super::labels::TopicLabels;
use super::subscriber::{MeteredSubscriber, SubscriberHandles};
use super::{MetricsConfig, collect, names};
use crate::{
    Capabilities, Health, Message, MessageId, Result, Subscriber, SubscriberCounts, Subscription,
    Topic, TopicFilter, TopicInfo, Transport, TransportStats,
};

/// The publish metrics of one `topic` label.
#[derive(Clone)]
struct PublishHandles {
    published: Counter,
    errors: Counter,
    duration: Histogram,
}

/// A transport whose publishes, subscribers and [`stats`](Transport::stats)
/// feed the metrics of [`names`] (made by [`instrument`](super::instrument)).
/// Everything else is the wrapped transport's.
pub struct Metered {
    inner: Arc<dyn Transport>,
    adapter: &'static str,
    publish: TopicLabels<PublishHandles>,
    subscribe: TopicLabels<String>,
}

impl Metered {
    /// Wraps `inner`; `config` should be validated
    /// ([`instrument_with`](super::instrument_with) does).
    pub fn new(inner: Arc<dyn Transport>, config: MetricsConfig) -> Self {
        let max = config.max_topics.clamp(1, MetricsConfig::MAX_MAX_TOPICS);
        Metered {
            adapter: inner.name(),
            inner,
            publish: TopicLabels::new(max),
            subscribe: TopicLabels::new(max),
        }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &Arc<dyn Transport> {
        &self.inner
    }

    fn publish_handles(&self, topic: &Topic) -> PublishHandles {
        let adapter = self.adapter;
        self.publish.get(topic.as_str(), |label| {
            let labels = [
                Label::new("adapter", adapter),
                Label::new("topic", label.to_owned()),
            ];
            PublishHandles {
                published: ::metrics::counter!(names::PUBLISHED, labels.iter()),
                errors: ::metrics::counter!(names::PUBLISH_ERRORS, labels.iter()),
                duration: ::metrics::histogram!(names::PUBLISH_DURATION, labels.iter()),
            }
        })
    }
}

#[crate::async_trait]
impl Transport for Metered {
    fn name(&self) -> &'static str {
        self.adapter
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn publish(&self, message: Message) -> Result<MessageId> {
        let handles = self.publish_handles(&message.topic);
        let started = Instant::now();
        let result = self.inner.publish(message).await;
        handles.duration.record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => handles.published.increment(1),
            Err(_) => handles.errors.increment(1),
        }
        result
    }

    /// Counted when the ack resolves (published or an error), with the
    /// time from queuing to the ack in the publish duration.
    async fn publish_queued(&self, message: Message) -> Result<crate::PublishAck> {
        let handles = self.publish_handles(&message.topic);
        let started = Instant::now();
        match self.inner.publish_queued(message).await {
            Ok(ack) => Ok(ack.map(move |result| {
                handles.duration.record(started.elapsed().as_secs_f64());
                match &result {
                    Ok(_) => handles.published.increment(1),
                    Err(_) => handles.errors.increment(1),
                }
                result
            })),
            Err(e) => {
                handles.duration.record(started.elapsed().as_secs_f64());
                handles.errors.increment(1);
                Err(e)
            }
        }
    }

    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        // Messages per topic label, in a stable order.
        let mut per_label: BTreeMap<String, (PublishHandles, u64)> = BTreeMap::new();
        for m in &messages {
            let topic = m.topic.as_str();
            if let Some((_, n)) = per_label.get_mut(topic) {
                *n += 1;
            } else {
                per_label.insert(topic.to_owned(), (self.publish_handles(&m.topic), 1));
            }
        }
        let started = Instant::now();
        let result = self.inner.publish_batch(messages).await;
        let secs = started.elapsed().as_secs_f64();
        for (handles, n) in per_label.values() {
            handles.duration.record(secs);
            match &result {
                Ok(_) => handles.published.increment(*n),
                Err(_) => handles.errors.increment(*n),
            }
        }
        result
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        let filter = subscription.filter().to_string();
        let topic = self.subscribe.get(&filter, str::to_owned);
        let group = subscription
            .group_names()
            .map(|(g, _)| g.to_owned())
            .unwrap_or_default();
        let inner = self.inner.subscribe(subscription).await?;
        let handles = SubscriberHandles::new(self.adapter, topic, group);
        Ok(Box::new(MeteredSubscriber::new(inner, handles)))
    }

    async fn topics(&self, filter: &TopicFilter) -> Result<Vec<TopicInfo>> {
        self.inner.topics(filter).await
    }

    async fn subscribers(&self, topic: &Topic) -> Result<SubscriberCounts> {
        self.inner.subscribers(topic).await
    }

    async fn health(&self) -> Health {
        self.inner.health().await
    }

    /// The wrapped transport's stats; also brings the transport metrics
    /// ([`record_stats`](super::record_stats)) up to date.
    fn stats(&self) -> TransportStats {
        let stats = self.inner.stats();
        collect::record(self.adapter, &stats);
        stats
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
