//! The payload every bench message carries, and the check that a run
//! counted every message: nothing missing, nothing duplicated beyond what
//! the adapter's semantics allow (a redelivery, `attempt > 1`, in a consumer
//! group), nothing foreign.

use switchyard::Bytes;

use super::BenchMode;

/// Bytes at the start of every payload: sequence number and send time.
pub(super) const HEADER_LEN: usize = 16;

/// Writes the sequence number and send time, then fills up to `size`.
pub(super) fn encode(seq: u64, sent_ns: u64, size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&sent_ns.to_le_bytes());
    v.resize(size.max(HEADER_LEN), b'x');
    Bytes::from(v)
}

/// Reads what [`encode`] wrote; `None` for a payload that is not ours.
pub(super) fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// Which sequence numbers one subscriber (or group member) saw.
#[derive(Default)]
pub(super) struct Seen {
    bits: Vec<u64>,
    unique: u64,
    received: u64,
}

/// Sequence numbers beyond this are not ours (a corrupt payload).
const MAX_SEQ: u64 = 1 << 34;

impl Seen {
    pub(super) fn with_capacity(n: u64) -> Self {
        Seen {
            bits: vec![0; usize::try_from(n.div_ceil(64)).unwrap_or(0)],
            ..Seen::default()
        }
    }

    /// Records `seq`; `false` when it is out of range.
    pub(super) fn record(&mut self, seq: u64) -> bool {
        if seq >= MAX_SEQ {
            return false;
        }
        let Ok(word) = usize::try_from(seq / 64) else {
            return false;
        };
        if word >= self.bits.len() {
            self.bits.resize((word + 1).max(self.bits.len() * 2), 0);
        }
        let mask = 1_u64 << (seq % 64);
        self.received += 1;
        if self.bits[word] & mask == 0 {
            self.bits[word] |= mask;
            self.unique += 1;
        }
        true
    }

    fn merge(&mut self, other: &Seen) {
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= *b;
        }
        self.received += other.received;
        self.unique = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// Seen numbers at or beyond `expected` (never published in this run).
    fn beyond(&self, expected: u64) -> u64 {
        let mut n = 0;
        for (i, w) in self.bits.iter().enumerate() {
            let base = i as u64 * 64;
            for bit in 0..64 {
                if w & (1 << bit) != 0 && base + bit >= expected {
                    n += 1;
                }
            }
        }
        n
    }
}

/// What one subscriber (or group member) saw; filled by the subscriber task.
#[derive(Default)]
pub(super) struct Arrivals {
    /// The sequence numbers.
    pub(super) seen: Seen,
    /// Deliveries with `attempt > 1`: redeliveries, which at-least-once
    /// semantics allow to be duplicates.
    pub(super) redelivered: u64,
    /// `Err` items (malformed payloads, lost ranges) and failed acks.
    pub(super) errors: u64,
    /// Payloads that do not carry a valid sequence number.
    pub(super) foreign: u64,
    /// The first error item, to report.
    pub(super) first_error: Option<String>,
}

/// The verdict over all subscribers of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Deliveries counted once each: per subscriber in fan-out, over the
    /// whole group in group mode.
    pub(super) deliveries: u64,
    /// Expected deliveries that never arrived.
    pub(super) missing: u64,
    /// Deliveries of a number already seen that no redelivery explains.
    pub(super) duplicates: u64,
    /// Duplicates explained by redeliveries (`attempt > 1`).
    pub(super) redelivered: u64,
    /// Payloads that were not ours, or numbers never published.
    pub(super) foreign: u64,
    /// Error items and failed acks.
    pub(super) errors: u64,
    /// The first error, to report.
    pub(super) first_error: Option<String>,
}

impl Tally {
    /// Whether every message was counted as the adapter's semantics demand.
    pub(super) fn passed(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.foreign == 0 && self.errors == 0
    }
}

/// Checks what `reports` saw against `published` messages: in fan-out and
/// latency modes every subscriber must see each once; in group mode the
/// members together must see each once (a redelivered one may come twice).
pub(super) fn tally(mode: BenchMode, published: u64, reports: &[&Arrivals]) -> Tally {
    let mut t = Tally::default();
    let mut group_seen = Seen::default();
    let mut group_redelivered = 0;
    for report in reports {
        t.errors += report.errors;
        t.foreign += report.foreign + report.seen.beyond(published);
        if t.first_error.is_none() {
            t.first_error.clone_from(&report.first_error);
        }
        if mode == BenchMode::Group {
            group_seen.merge(&report.seen);
            group_redelivered += report.redelivered;
        } else {
            let (duplicates, redelivered) = split_duplicates(
                report.seen.received - report.seen.unique,
                report.redelivered,
            );
            let unique = report.seen.unique.min(published);
            t.missing += published - unique;
            t.duplicates += duplicates;
            t.redelivered += redelivered;
            t.deliveries += unique;
        }
    }
    if mode == BenchMode::Group {
        let (duplicates, redelivered) =
            split_duplicates(group_seen.received - group_seen.unique, group_redelivered);
        let unique = group_seen.unique.min(published);
        t.missing = published - unique;
        t.duplicates = duplicates;
        t.redelivered = redelivered;
        t.deliveries = unique;
    }
    t
}

/// Splits `duplicates` into those no redelivery explains and those it does.
fn split_duplicates(duplicates: u64, redeliveries: u64) -> (u64, u64) {
    let explained = duplicates.min(redeliveries);
    (duplicates - explained, explained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = encode(42, 7, 16);
        assert_eq!(p.len(), 16);
        assert_eq!(decode(&p), Some((42, 7)));
        assert_eq!(encode(1, 2, 300).len(), 300);
        assert_eq!(decode(b"short"), None);
    }

    fn arrivals(seqs: &[u64], redelivered: u64) -> Arrivals {
        let mut a = Arrivals {
            seen: Seen::with_capacity(16),
            redelivered,
            ..Arrivals::default()
        };
        for &s in seqs {
            assert!(a.seen.record(s));
        }
        a
    }

    #[test]
    fn fanout_needs_every_message_at_every_subscriber() {
        let (a, b) = (arrivals(&[0, 1, 2], 0), arrivals(&[0, 1, 2], 0));
        let t = tally(BenchMode::Fanout, 3, &[&a, &b]);
        assert!(t.passed(), "{t:?}");
        assert_eq!(t.deliveries, 6);

        let short = arrivals(&[0, 2], 0);
        let t = tally(BenchMode::Fanout, 3, &[&a, &short]);
        assert!(!t.passed());
        assert_eq!((t.missing, t.deliveries), (1, 5));

        let twice = arrivals(&[0, 1, 1, 2], 0);
        let t = tally(BenchMode::Fanout, 3, &[&a, &twice]);
        assert!(!t.passed());
        assert_eq!(t.duplicates, 1);
    }

    #[test]
    fn group_members_share_the_messages_and_redeliveries_may_repeat() {
        let (a, b) = (arrivals(&[0, 2], 0), arrivals(&[1, 3], 0));
        let t = tally(BenchMode::Group, 4, &[&a, &b]);
        assert!(t.passed(), "{t:?}");
        assert_eq!(t.deliveries, 4);

        // The same number at two members, first delivery both times: a
        // duplicate, the run fails.
        let c = arrivals(&[1, 2, 3], 0);
        let t = tally(BenchMode::Group, 4, &[&a, &c]);
        assert!(!t.passed());
        assert_eq!(t.duplicates, 1);

        // The second copy was a redelivery (attempt 2): allowed, reported.
        let c = arrivals(&[1, 2, 3], 1);
        let t = tally(BenchMode::Group, 4, &[&a, &c]);
        assert!(t.passed(), "{t:?}");
        assert_eq!((t.duplicates, t.redelivered), (0, 1));

        let t = tally(BenchMode::Group, 5, &[&a, &b]);
        assert_eq!(t.missing, 1);
        assert!(!t.passed());
    }

    #[test]
    fn foreign_numbers_and_errors_fail_the_run() {
        let a = arrivals(&[0, 1, 7], 0);
        let t = tally(BenchMode::Fanout, 2, &[&a]);
        assert_eq!((t.foreign, t.missing), (1, 0));
        assert!(!t.passed());

        let mut b = arrivals(&[0, 1], 0);
        b.errors = 1;
        b.first_error = Some("lost 3 messages".into());
        let t = tally(BenchMode::Fanout, 2, &[&b]);
        assert!(!t.passed());
        assert_eq!(t.first_error.as_deref(), Some("lost 3 messages"));
    }

    #[test]
    fn seen_counts_duplicates_and_merges() {
        let mut a = Seen::with_capacity(10);
        assert!(a.record(1));
        assert!(a.record(1));
        assert!(a.record(200));
        assert_eq!((a.unique, a.received), (2, 3));
        assert_eq!(a.beyond(100), 1);
        let mut b = Seen::default();
        b.record(1);
        b.record(2);
        a.merge(&b);
        assert_eq!((a.unique, a.received), (3, 5));
        assert!(!a.record(MAX_SEQ));
    }
}
