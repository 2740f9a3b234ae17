//! Printing the counters of transports and subscribers (`sub --stats`,
//! `bench`): every common counter and every adapter-specific one
//! (`TransportStats::extra`), as one text line or a JSON object.

use switchyard::{SubscriberStats, TransportStats};

/// Counter sums over several subscribers, in [`SubscriberStats::counters`]
/// order, plus the summed gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SubscriberTotals {
    pairs: Vec<(&'static str, u64)>,
}

impl SubscriberTotals {
    /// Adds one subscriber's counters and gauges.
    pub(crate) fn add(&mut self, s: &SubscriberStats) {
        let all = s.counters().into_iter().chain(s.gauges());
        if self.pairs.is_empty() {
            self.pairs = all.collect();
        } else {
            for ((_, sum), (_, v)) in self.pairs.iter_mut().zip(all) {
                *sum = sum.saturating_add(v);
            }
        }
    }

    /// The totals of one subscriber.
    pub(crate) fn of(s: &SubscriberStats) -> Self {
        let mut t = Self::default();
        t.add(s);
        t
    }

    /// `name=value` pairs separated by spaces.
    pub(crate) fn line(&self) -> String {
        pairs_line(self.pairs.iter().copied())
    }

    /// A JSON object of the pairs.
    pub(crate) fn json(&self) -> serde_json::Value {
        pairs_json(self.pairs.iter().copied())
    }
}

/// Every counter and gauge of a transport, in [`TransportStats::counters`]
/// then [`TransportStats::gauges`] order.
fn transport_pairs(s: &TransportStats) -> Vec<(&'static str, u64)> {
    let mut all = s.counters();
    all.extend(s.gauges());
    all
}

/// `name=value` pairs of a transport's counters and gauges.
pub(crate) fn transport_line(s: &TransportStats) -> String {
    pairs_line(transport_pairs(s).into_iter())
}

/// A JSON object of a transport's counters and gauges.
pub(crate) fn transport_json(s: &TransportStats) -> serde_json::Value {
    pairs_json(transport_pairs(s).into_iter())
}

fn pairs_line(pairs: impl Iterator<Item = (&'static str, u64)>) -> String {
    pairs
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pairs_json(pairs: impl Iterator<Item = (&'static str, u64)>) -> serde_json::Value {
    serde_json::Value::Object(pairs.map(|(k, v)| (k.to_owned(), v.into())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_json() {
        let mut t = TransportStats::default();
        t.published = 3;
        t.extra.insert("pubsub.gaps", 2);
        t.extra_gauges.insert("pubsub.outbox_len", 1);
        assert_eq!(
            transport_line(&t),
            "published=3 publish_errors=0 dropped=0 reconnects=0 breaker_rejections=0 pubsub.gaps=2 breaker_open=0 pubsub.outbox_len=1"
        );
        assert_eq!(transport_json(&t)["pubsub.gaps"], 2);
        let mut totals = SubscriberTotals::default();
        totals.add(&SubscriberStats::default());
        totals.add(&SubscriberStats::default());
        assert!(totals.line().starts_with("received=0 acked=0 nacked=0"));
        assert_eq!(totals.json()["capacity"], 0);
    }
}
