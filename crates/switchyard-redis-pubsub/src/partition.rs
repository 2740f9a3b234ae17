//! Topics onto partitions, partitions onto sharded channels (Redis Cluster).
//!
//! On a cluster the backplane publishes with `SPUBLISH` and subscribes with
//! `SSUBSCRIBE` (Redis 7 sharded pub/sub: a message goes only to the nodes
//! of the channel's shard, not through the whole cluster bus). It does not
//! use one channel per topic: topics are hashed onto `n` partitions
//! (`partitions`, 1 to 1024, default 16) and partition `k` is the channel
//!
//! ```text
//! {namespace}:{p<k>/<n>:<i>}
//! ```
//!
//! whose hash tag `p<k>/<n>:<i>` is chosen (the smallest `i`) so that its
//! slot lies in the `k`-th of `n` equal ranges of the 16,384 slots. So the
//! partitions spread evenly over the slot space, and thus over the masters
//! (which own ranges of slots), every partition has a slot of its own, and
//! every replica computes the same names. The partition count is part of
//! the name: replicas configured with different counts share no channel.
//!
//! A topic's partition is `FNV-1a-64(topic) mod n`, stable across
//! processes, platforms and versions. Subscribing to a topic subscribes its
//! partition's channel; a pattern needs every partition. The envelope
//! carries the topic, so the receiving side dispatches locally as on a
//! single server.

use switchyard_redis::cluster::SLOTS;

/// Default partition count.
pub(crate) const DEFAULT_PARTITIONS: usize = 16;
/// Largest partition count (each partition keeps a range of 16 slots).
pub(crate) const MAX_PARTITIONS: usize = 1024;
/// Tags tried per partition before settling for the first one; never
/// reached for counts up to [`MAX_PARTITIONS`] (a unit test covers 1024).
const MAX_TRIES: u32 = 1 << 20;

/// The partitions of one namespace.
#[derive(Debug)]
pub(crate) struct Partitions {
    /// The channel of each partition.
    channels: Vec<String>,
}

impl Partitions {
    /// The `n` partitions of `namespace` (`n` validated: 1 to
    /// [`MAX_PARTITIONS`]; clamped here so nothing can panic).
    pub(crate) fn new(namespace: &str, n: usize) -> Self {
        let n = n.clamp(1, MAX_PARTITIONS);
        let channels = (0..n)
            .map(|k| format!("{namespace}:{{{}}}", tag_for(k, n).0))
            .collect();
        Partitions { channels }
    }

    /// How many partitions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.channels.len()
    }

    /// The partition of `topic`.
    pub(crate) fn partition_of(&self, topic: &str) -> usize {
        let n = self.channels.len().max(1) as u64;
        (fnv1a(topic.as_bytes()) % n) as usize
    }

    /// The channel of `topic`'s partition.
    pub(crate) fn channel_of(&self, topic: &str) -> &str {
        self.channels
            .get(self.partition_of(topic))
            .map_or("", String::as_str)
    }

    /// Every partition's channel.
    pub(crate) fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The slot of partition `k`'s channel.
    #[cfg(test)]
    pub(crate) fn slot(&self, k: usize) -> Option<u16> {
        let c = self.channels.get(k)?;
        Some(switchyard_redis::key_slot(c.as_bytes()))
    }
}

/// The hash tag of partition `k` of `n` and its slot: `p<k>/<n>:<i>` with
/// the smallest `i` whose slot lies in `[k·S/n, (k+1)·S/n)`.
fn tag_for(k: usize, n: usize) -> (String, u16) {
    let slots = usize::from(SLOTS);
    let lo = k * slots / n;
    let hi = ((k + 1) * slots / n).max(lo + 1);
    let mut first = None;
    for i in 0..MAX_TRIES {
        let tag = format!("p{k}/{n}:{i}");
        let slot = switchyard_redis::key_slot(tag.as_bytes());
        if (lo..hi).contains(&usize::from(slot)) {
            return (tag, slot);
        }
        if first.is_none() {
            first = Some((tag, slot));
        }
    }
    first.unwrap_or_else(|| (format!("p{k}/{n}:0"), 0))
}

/// FNV-1a, 64 bit: a stable hash of a topic.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_stable() {
        let p = Partitions::new("chat", 16);
        assert_eq!(p.len(), 16);
        // The names every replica (and every later version) must compute.
        assert_eq!(p.channels()[0], "chat:{p0/16:22}");
        assert_eq!(
            p.partition_of("rooms.42"),
            (fnv1a(b"rooms.42") % 16) as usize
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let again = Partitions::new("chat", 16);
        for t in ["a", "rooms.42", "x/y/z"] {
            assert_eq!(p.channel_of(t), again.channel_of(t));
            assert!(p.channel_of(t).starts_with("chat:{p"));
        }
    }

    #[test]
    fn partitions_spread_over_the_slot_space() {
        for n in [1, 2, 3, 7, 16, 100, 1000, MAX_PARTITIONS] {
            let p = Partitions::new("ns", n);
            let slots: HashSet<u16> = (0..n).filter_map(|k| p.slot(k)).collect();
            assert_eq!(
                slots.len(),
                n,
                "every partition has a slot of its own ({n})"
            );
            for k in 0..n {
                let slot = usize::from(p.slot(k).unwrap());
                let (lo, hi) = (k * 16384 / n, (k + 1) * 16384 / n);
                assert!((lo..hi).contains(&slot), "partition {k}/{n} in slot {slot}");
                let tag = &p.channels()[k];
                assert_eq!(
                    switchyard_redis::key_slot(tag.as_bytes()),
                    slot as u16,
                    "{tag}"
                );
            }
        }
        // Three equal masters each get a third of 16 partitions.
        let p = Partitions::new("ns", 16);
        let per_master = |lo: u16, hi: u16| {
            (0..16)
                .filter(|&k| (lo..=hi).contains(&p.slot(k).unwrap()))
                .count()
        };
        assert_eq!(
            [
                per_master(0, 5460),
                per_master(5461, 10922),
                per_master(10923, 16383)
            ],
            [6, 5, 5]
        );
    }

    #[test]
    fn topics_spread_over_partitions() {
        let p = Partitions::new("ns", 16);
        let mut used = [0usize; 16];
        for i in 0..1600 {
            used[p.partition_of(&format!("rooms.{i}"))] += 1;
        }
        assert!(used.iter().all(|&n| (50..=150).contains(&n)), "{used:?}");
        // Out-of-range counts are clamped, never a panic.
        assert_eq!(Partitions::new("ns", 0).len(), 1);
        assert_eq!(Partitions::new("ns", usize::MAX).len(), MAX_PARTITIONS);
        assert_eq!(Partitions::new("ns", 1).partition_of("anything"), 0);
    }
}
