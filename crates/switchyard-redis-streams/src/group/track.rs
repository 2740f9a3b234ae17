//! The entries this consumer holds, and when Redis last saw it touch them.
//!
//! Redis counts an entry's idle time from its last delivery (XREADGROUP,
//! XCLAIM). Other members claim entries idle for longer than the ack
//! timeout, so every entry held here — buffered, handed out within its
//! deadline, or waiting out a `nack(After)` delay — is refreshed by the
//! keeper with `XCLAIM ... JUSTID` before that happens.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use switchyard_core::MessageId;

/// Where a held entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In the local buffer (or about to be pushed there).
    Buffered,
    /// Handed to the application, which must settle it by `deadline`.
    HandedOut { deadline: Instant },
    /// Nacked with a delay: released at `due`.
    Delayed { due: Instant },
}

/// One held entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Track {
    pub(crate) state: State,
    /// When Redis last reset its idle time for this consumer (the local
    /// time the reply arrived, so the real idle time is at least
    /// `now - touched`).
    pub(crate) touched: Instant,
    /// The attempt number of the delivery made of it (`0` until known):
    /// the delivery count its pending entry has once handed out. Given
    /// back without reaching the application, the count is set to one less.
    pub(crate) attempt: u32,
}

/// An entry due for a keep-alive: stream, id, last touch.
pub(crate) type Stale = (u32, MessageId, Instant);

/// Hashes the tracker's `(stream, id)` keys: a seeded multiply-rotate
/// over the key's integers, finished with a 64-bit mixer. Keys are stream
/// ids Redis assigned (or publishers with write access chose), and the
/// seed is random per tracker; SipHash cost a tenth of the consume path's
/// client CPU (three lookups per delivery).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHash(u64);

impl Default for IdHash {
    fn default() -> Self {
        use std::hash::BuildHasher;
        IdHash(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1)
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

/// The hasher of [`IdHash`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn finish(&self) -> u64 {
        // murmur3's fmix64: every input bit reaches the low bits too.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The held entries of one subscriber.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    map: HashMap<(u32, MessageId), Track, IdHash>,
    delayed: BinaryHeap<Reverse<(Instant, u32, MessageId)>>,
}

impl Tracker {
    /// Starts holding a fetched entry. `false` when it is held already (it
    /// came back through a claim or a pending re-read while still here);
    /// then only its touch time is updated. An entry handed out past its
    /// deadline counts as not held: it is fetched again.
    pub(crate) fn fetch(&mut self, stream: u32, id: MessageId, touched: Instant) -> bool {
        let now = Instant::now();
        match self.map.get_mut(&(stream, id)) {
            Some(t) => {
                t.touched = t.touched.max(touched);
                if let State::HandedOut { deadline } = t.state
                    && deadline <= now
                {
                    t.state = State::Buffered;
                    return true;
                }
                false
            }
            None => {
                self.map.insert(
                    (stream, id),
                    Track {
                        state: State::Buffered,
                        touched,
                        attempt: 0,
                    },
                );
                true
            }
        }
    }

    /// Records the attempt number of a fetched entry's delivery.
    pub(crate) fn set_attempt(&mut self, stream: u32, id: MessageId, attempt: u32) {
        if let Some(t) = self.map.get_mut(&(stream, id)) {
            t.attempt = attempt;
        }
    }

    /// The attempt number of a held entry's delivery, once known.
    pub(crate) fn attempt(&self, stream: u32, id: MessageId) -> Option<u32> {
        self.map
            .get(&(stream, id))
            .map(|t| t.attempt)
            .filter(|a| *a > 0)
    }

    /// The entry was handed to the application, to be settled by `deadline`.
    pub(crate) fn hand_over(&mut self, stream: u32, id: MessageId, deadline: Instant) {
        if let Some(t) = self.map.get_mut(&(stream, id)) {
            t.state = State::HandedOut { deadline };
        }
    }

    /// When Redis last reset the idle time of a held entry.
    pub(crate) fn touched(&self, stream: u32, id: MessageId) -> Option<Instant> {
        self.map.get(&(stream, id)).map(|t| t.touched)
    }

    /// `in_progress`: the entry (delivered with `attempt`) was just
    /// refreshed at `touched` and is handed out until `deadline` (held
    /// again if it was not).
    pub(crate) fn extend(
        &mut self,
        stream: u32,
        id: MessageId,
        attempt: u32,
        touched: Instant,
        deadline: Instant,
    ) {
        self.map.insert(
            (stream, id),
            Track {
                state: State::HandedOut { deadline },
                touched,
                attempt,
            },
        );
    }

    /// Stops holding an entry; returns what was known about it.
    pub(crate) fn remove(&mut self, stream: u32, id: MessageId) -> Option<Track> {
        self.map.remove(&(stream, id))
    }

    /// Stops holding every buffered entry (fetched, never handed out) and
    /// returns them with their attempt numbers, for release when the
    /// subscriber closes.
    pub(crate) fn take_buffered(&mut self) -> Vec<(u32, MessageId, u32)> {
        let ids: Vec<(u32, MessageId, u32)> = self
            .map
            .iter()
            .filter(|(_, t)| t.state == State::Buffered)
            .map(|(k, t)| (k.0, k.1, t.attempt))
            .collect();
        for (s, id, _) in &ids {
            self.map.remove(&(*s, *id));
        }
        ids
    }

    /// Whether the entry is held.
    pub(crate) fn contains(&self, stream: u32, id: MessageId) -> bool {
        self.map.contains_key(&(stream, id))
    }

    /// Holds the entry (delivered with `attempt`) until `due` (a
    /// `nack(After)`); `false` when too many delays are waiting already.
    pub(crate) fn delay(
        &mut self,
        stream: u32,
        id: MessageId,
        attempt: u32,
        due: Instant,
        max: usize,
    ) -> bool {
        if self.delayed.len() >= max {
            return false;
        }
        let t = self.map.entry((stream, id)).or_insert(Track {
            state: State::Buffered,
            // Not held (unusual): its real idle time is unknown; now is a
            // lower bound, which keeps the keep-alive's guard correct.
            touched: Instant::now(),
            attempt,
        });
        t.state = State::Delayed { due };
        t.attempt = attempt;
        self.delayed.push(Reverse((due, stream, id)));
        true
    }

    /// When the next delayed entry is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Removes and returns the delayed entries due by `now` with their
    /// attempt numbers (stale heap items of settled entries are skipped).
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(u32, MessageId, u32)> {
        let mut out = Vec::new();
        while let Some(Reverse((due, stream, id))) = self.delayed.peek().copied() {
            if due > now {
                break;
            }
            self.delayed.pop();
            let is_due = matches!(
                self.map.get(&(stream, id)),
                Some(Track { state: State::Delayed { due: d }, .. }) if *d == due
            );
            if is_due && let Some(t) = self.map.remove(&(stream, id)) {
                out.push((stream, id, t.attempt));
            }
        }
        out
    }

    /// Entries whose last touch is at least `refresh_after` old and that
    /// must stay here: buffered ones, delayed ones, and handed-out ones
    /// whose idle clock would run out before their deadline.
    pub(crate) fn stale(
        &self,
        now: Instant,
        refresh_after: Duration,
        ack_timeout: Duration,
    ) -> Vec<Stale> {
        let mut out = Vec::new();
        for (&(stream, id), t) in &self.map {
            if now.saturating_duration_since(t.touched) < refresh_after {
                continue;
            }
            let keep = match t.state {
                State::Buffered | State::Delayed { .. } => true,
                State::HandedOut { deadline } => {
                    deadline > now && super::keep::later(t.touched, ack_timeout) < deadline
                }
            };
            if keep {
                out.push((stream, id, t.touched));
            }
        }
        out
    }

    /// Records that Redis reset the idle time of these entries at `at`.
    pub(crate) fn touch(&mut self, stream: u32, ids: &[MessageId], at: Instant) {
        for id in ids {
            if let Some(t) = self.map.get_mut(&(stream, *id)) {
                t.touched = at;
            }
        }
    }

    /// How many entries of `stream` are held.
    pub(crate) fn held_in(&self, stream: u32) -> usize {
        self.map.keys().filter(|(s, _)| *s == stream).count()
    }

    /// How many entries are held in all.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        MessageId::new(1, n)
    }

    #[test]
    fn fetch_dedupes_until_the_deadline_passes() {
        let mut t = Tracker::default();
        let now = Instant::now();
        assert!(t.fetch(0, id(1), now));
        assert!(!t.fetch(0, id(1), now));
        assert!(t.fetch(1, id(1), now), "other stream, same id");
        t.hand_over(0, id(1), now + Duration::from_secs(60));
        assert!(!t.fetch(0, id(1), now));
        t.hand_over(0, id(1), now);
        assert!(t.fetch(0, id(1), now), "past its deadline: fetched again");
        assert!(t.remove(0, id(1)).is_some());
        assert!(!t.contains(0, id(1)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn stale_selection() {
        let mut t = Tracker::default();
        let at = Duration::from_secs(10);
        let long_ago = Instant::now();
        let now = long_ago + Duration::from_secs(4);
        t.fetch(0, id(1), long_ago); // buffered, 4 s old
        t.fetch(0, id(2), now); // buffered, fresh
        t.fetch(0, id(3), long_ago);
        t.hand_over(0, id(3), now + at); // handed out now: must be refreshed
        t.fetch(0, id(4), long_ago);
        t.hand_over(0, id(4), long_ago + at); // touched at hand-over: safe until deadline
        t.fetch(0, id(5), long_ago);
        t.hand_over(0, id(5), long_ago); // past its deadline: let it go
        let mut ids: Vec<u64> = t
            .stale(now, Duration::from_secs(2), at)
            .into_iter()
            .map(|(_, i, _)| i.seq)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 3]);
        t.touch(0, &[id(1), id(3)], now);
        assert!(t.stale(now, Duration::from_secs(2), at).is_empty());
        assert_eq!(t.held_in(0), 5);
    }

    #[test]
    fn buffered_entries_are_taken_with_their_attempts() {
        let mut t = Tracker::default();
        let now = Instant::now();
        t.fetch(0, id(1), now);
        t.set_attempt(0, id(1), 3);
        t.fetch(0, id(2), now);
        t.set_attempt(0, id(2), 1);
        t.hand_over(0, id(2), now + Duration::from_secs(60)); // in the application's hands
        t.set_attempt(0, id(9), 7); // not held: ignored
        assert_eq!(t.take_buffered(), vec![(0, id(1), 3)]);
        assert_eq!(t.len(), 1);
        t.extend(0, id(2), 1, now, now + Duration::from_secs(60));
        assert!(t.take_buffered().is_empty());
    }

    #[test]
    fn delays_come_due_in_order_and_skip_settled() {
        let mut t = Tracker::default();
        let now = Instant::now();
        t.fetch(0, id(1), now);
        assert!(t.delay(0, id(1), 1, now + Duration::from_millis(20), 10));
        assert!(t.delay(0, id(2), 2, now + Duration::from_millis(10), 10));
        assert!(t.delay(0, id(3), 3, now + Duration::from_millis(5), 10));
        t.remove(0, id(3)); // settled meanwhile
        assert_eq!(t.next_due(), Some(now + Duration::from_millis(5)));
        assert!(t.take_due(now).is_empty());
        let due = t.take_due(now + Duration::from_millis(30));
        assert_eq!(due, vec![(0, id(2), 2), (0, id(1), 1)]);
        assert_eq!(t.len(), 0);
        assert!(!t.delay(0, id(9), 1, now, 0), "bounded");
    }
}
