//! Gap detection: the last sequence number seen per (origin, topic).
//!
//! Every origin numbers its messages per topic (1, 2, 3, ...), assigned at
//! publish time, so a message that never reached Redis (dropped or expired
//! in the publisher's outbox, or published while this receiver was
//! disconnected) shows up here as a jump. Numbering per topic means that
//! traffic on a topic nobody here subscribes to never looks like a gap on
//! the topics that are subscribed.
//!
//! Frames come from the network, so nothing here trusts them: a frame of
//! an older boot epoch than the one tracked is stale and changes nothing,
//! and a jump of more than [`MAX_PLAUSIBLE_GAP`] numbers (either way) is
//! not a gap anything could have produced, so it restarts tracking like a
//! new epoch instead of announcing billions of lost messages.

use std::collections::HashMap;

use switchyard_core::Topic;

/// The largest jump in an origin's numbers on one topic that is taken for
/// lost messages: 2^32 (4,294,967,296), more than a publisher sending
/// 100,000 messages a second on one topic produces in 11 hours, far more
/// than an outbox or an outage can lose while the tracker keeps its entry.
/// A larger jump, forward or backward, restarts tracking at the new number
/// ([`Verdict::Reset`]).
pub(crate) const MAX_PLAUSIBLE_GAP: u64 = 1 << 32;

/// What one received sequence number means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The first message seen from this origin on this topic (or from a new
    /// epoch of it): deliver, nothing to report.
    First,
    /// The next one in order: deliver.
    Next,
    /// Messages `from..=to` are missing: report them, then deliver.
    Gap { from: u64, to: u64 },
    /// Seen already (a retried publish, or the same message through both a
    /// channel and a pattern subscription): drop.
    Duplicate,
    /// A frame of an older boot epoch of this origin than the one tracked
    /// (a stale or forged frame, or two transports sharing an instance id):
    /// drop; tracking is unchanged.
    Stale,
    /// A jump of more than [`MAX_PLAUSIBLE_GAP`] from the last number:
    /// tracking restarts at this number, as for a new epoch; deliver, report
    /// no gap.
    Reset,
}

#[derive(Clone, Copy, Debug)]
struct Track {
    epoch: u64,
    last: u64,
    /// Logical time of the last observation, for eviction.
    touched: u64,
}

/// Last sequence number per (origin, topic), bounded in size.
#[derive(Debug)]
pub(crate) struct GapTracker {
    origins: HashMap<u64, HashMap<Topic, Track>>,
    entries: usize,
    cap: usize,
    clock: u64,
}

impl GapTracker {
    /// A tracker holding at most `cap` (origin, topic) entries; beyond that
    /// the least recently seen tenth is forgotten (a forgotten entry starts
    /// over with [`Verdict::First`], so a gap spanning the eviction is not
    /// reported).
    pub(crate) fn new(cap: usize) -> Self {
        GapTracker {
            origins: HashMap::new(),
            entries: 0,
            cap: cap.max(1),
            clock: 0,
        }
    }

    /// Records `seq` from `origin` (boot `epoch`) on `topic`. Only a newer
    /// epoch restarts the count; an older one is [`Verdict::Stale`].
    pub(crate) fn observe(&mut self, origin: u64, epoch: u64, topic: &Topic, seq: u64) -> Verdict {
        self.clock += 1;
        let now = self.clock;
        if let Some(track) = self.origins.get_mut(&origin).and_then(|t| t.get_mut(topic)) {
            if epoch < track.epoch {
                return Verdict::Stale;
            }
            track.touched = now;
            if epoch > track.epoch {
                // The origin restarted with the same id: numbering starts over.
                track.epoch = epoch;
                track.last = seq;
                return Verdict::First;
            }
            if seq.abs_diff(track.last) > MAX_PLAUSIBLE_GAP {
                track.last = seq;
                return Verdict::Reset;
            }
            if seq <= track.last {
                return Verdict::Duplicate;
            }
            // No overflow: seq > last.
            let expected = track.last + 1;
            track.last = seq;
            return if seq == expected {
                Verdict::Next
            } else {
                Verdict::Gap {
                    from: expected,
                    to: seq - 1,
                }
            };
        }
        if self.entries >= self.cap {
            self.evict();
        }
        self.origins.entry(origin).or_default().insert(
            topic.clone(),
            Track {
                epoch,
                last: seq,
                touched: now,
            },
        );
        self.entries += 1;
        Verdict::First
    }

    /// Forgets every topic for which `keep` is false (no local subscriber
    /// matches it any more), so that subscribing again later does not
    /// report the messages published in between as lost.
    pub(crate) fn retain_topics(&mut self, mut keep: impl FnMut(&Topic) -> bool) {
        let mut entries = 0;
        self.origins.retain(|_, topics| {
            topics.retain(|t, _| keep(t));
            entries += topics.len();
            !topics.is_empty()
        });
        self.entries = entries;
    }

    /// Number of (origin, topic) entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    fn evict(&mut self) {
        let mut stamps: Vec<u64> = self
            .origins
            .values()
            .flat_map(|t| t.values().map(|tr| tr.touched))
            .collect();
        let drop = (stamps.len() / 10).max(1);
        let (_, cutoff, _) = stamps.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        self.retain_entries(|tr| tr.touched > cutoff);
    }

    fn retain_entries(&mut self, keep: impl Fn(&Track) -> bool) {
        let mut entries = 0;
        self.origins.retain(|_, topics| {
            topics.retain(|_, tr| keep(tr));
            entries += topics.len();
            !topics.is_empty()
        });
        self.entries = entries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    #[test]
    fn in_order_gaps_and_duplicates() {
        let mut g = GapTracker::new(100);
        let a = t("a");
        assert_eq!(g.observe(1, 10, &a, 5), Verdict::First);
        assert_eq!(g.observe(1, 10, &a, 6), Verdict::Next);
        assert_eq!(g.observe(1, 10, &a, 6), Verdict::Duplicate);
        assert_eq!(g.observe(1, 10, &a, 4), Verdict::Duplicate);
        assert_eq!(g.observe(1, 10, &a, 10), Verdict::Gap { from: 7, to: 9 });
        assert_eq!(g.observe(1, 10, &a, 11), Verdict::Next);
        assert_eq!(g.observe(1, 10, &a, 9), Verdict::Duplicate);
    }

    #[test]
    fn topics_and_origins_are_independent() {
        let mut g = GapTracker::new(100);
        let (a, b) = (t("a"), t("b"));
        assert_eq!(g.observe(1, 10, &a, 1), Verdict::First);
        // Traffic on b (which may be invisible to a's subscribers) never
        // looks like a gap on a.
        assert_eq!(g.observe(1, 10, &b, 1), Verdict::First);
        assert_eq!(g.observe(1, 10, &b, 2), Verdict::Next);
        assert_eq!(g.observe(1, 10, &a, 2), Verdict::Next);
        assert_eq!(g.observe(2, 20, &a, 1), Verdict::First);
        assert_eq!(g.observe(2, 20, &a, 3), Verdict::Gap { from: 2, to: 2 });
        assert_eq!(g.observe(1, 10, &a, 3), Verdict::Next);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn a_new_epoch_resets_without_a_gap() {
        let mut g = GapTracker::new(100);
        let a = t("a");
        assert_eq!(g.observe(1, 10, &a, 500), Verdict::First);
        // The origin restarted with the same id: numbering starts over.
        assert_eq!(g.observe(1, 11, &a, 1), Verdict::First);
        assert_eq!(g.observe(1, 11, &a, 2), Verdict::Next);
        assert_eq!(g.observe(1, 11, &a, 4), Verdict::Gap { from: 3, to: 3 });
    }

    /// Reproduction: with frames of epoch 10 tracked, one frame of epoch 9
    /// reset tracking, after which a resent epoch-10 frame counted as the
    /// first of a new epoch and was delivered a second time.
    #[test]
    fn an_older_epoch_is_stale_and_changes_nothing() {
        let mut g = GapTracker::new(100);
        let a = t("a");
        assert_eq!(g.observe(1, 10, &a, 1), Verdict::First);
        assert_eq!(g.observe(1, 9, &a, 1), Verdict::Stale);
        assert_eq!(g.observe(1, 9, &a, 7), Verdict::Stale);
        assert_eq!(g.observe(1, 10, &a, 1), Verdict::Duplicate);
        assert_eq!(g.observe(1, 10, &a, 2), Verdict::Next);
        assert_eq!(g.observe(1, 11, &a, 1), Verdict::First);
        assert_eq!(g.observe(1, 10, &a, 3), Verdict::Stale);
        assert_eq!(g.observe(1, 11, &a, 2), Verdict::Next);
    }

    /// Reproduction: after message 1, one forged frame numbered u64::MAX
    /// announced messages 2..=u64::MAX-1 lost; and since every later real
    /// number was below it, they were all dropped as duplicates.
    #[test]
    fn an_implausible_jump_resets_instead_of_reporting_a_gap() {
        let mut g = GapTracker::new(100);
        let a = t("a");
        assert_eq!(g.observe(1, 10, &a, 1), Verdict::First);
        assert_eq!(g.observe(1, 10, &a, u64::MAX), Verdict::Reset);
        // Back to the real numbers: another reset, then in order again.
        assert_eq!(g.observe(1, 10, &a, 2), Verdict::Reset);
        assert_eq!(g.observe(1, 10, &a, 3), Verdict::Next);
        // The largest plausible gap is still a gap.
        let far = 3 + MAX_PLAUSIBLE_GAP;
        assert_eq!(
            g.observe(1, 10, &a, far),
            Verdict::Gap {
                from: 4,
                to: far - 1
            }
        );
        assert_eq!(
            g.observe(1, 10, &a, far + 1 + MAX_PLAUSIBLE_GAP),
            Verdict::Reset
        );
        // A first frame at u64::MAX cannot overflow anything either.
        let b = t("b");
        assert_eq!(g.observe(2, 1, &b, u64::MAX), Verdict::First);
        assert_eq!(g.observe(2, 1, &b, u64::MAX), Verdict::Duplicate);
        assert_eq!(g.observe(2, 1, &b, 1), Verdict::Reset);
        assert_eq!(g.observe(2, 1, &b, 0), Verdict::Duplicate);
    }

    #[test]
    fn retain_forgets_unsubscribed_topics() {
        let mut g = GapTracker::new(100);
        let (a, b) = (t("a"), t("b"));
        g.observe(1, 10, &a, 1);
        g.observe(1, 10, &b, 1);
        g.observe(2, 10, &b, 1);
        g.retain_topics(|topic| topic.as_str() == "a");
        assert_eq!(g.len(), 1);
        // Subscribed to b again later: no false gap for what was published meanwhile.
        assert_eq!(g.observe(1, 10, &b, 50), Verdict::First);
        assert_eq!(g.observe(1, 10, &a, 2), Verdict::Next);
    }

    #[test]
    fn bounded() {
        let mut g = GapTracker::new(50);
        for i in 0..1000u64 {
            g.observe(i % 7, 1, &t(&format!("t{i}")), 1);
            assert!(g.len() <= 50, "{}", g.len());
        }
        // The most recent entries survive eviction.
        assert_eq!(g.observe(999 % 7, 1, &t("t999"), 2), Verdict::Next);
    }
}
