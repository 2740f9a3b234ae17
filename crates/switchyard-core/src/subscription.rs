//! The subscription builder.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::message::MessageId;
use crate::topic::TopicFilter;

/// How messages are shared among subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Every subscriber gets every message.
    Fanout,
    /// Each message goes to one member of the group, which must settle it.
    Group {
        /// The group name, shared by all members.
        group: String,
        /// This member's name, unique within the group. A member that
        /// restarts under the same name gets its own unsettled messages back
        /// first on durable backends.
        consumer: String,
    },
}

/// Where a subscription starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Start {
    /// Only messages published after `subscribe` returns.
    #[default]
    Latest,
    /// Everything still retained.
    Earliest,
    /// Messages with an id greater than this one.
    After(MessageId),
}

/// What happens when a subscriber's local buffer is full.
///
/// `DropOldest` and `DropNewest` mean the same on every adapter and never
/// make anyone wait. What `Block` (the default) does depends on the adapter
/// ([`Capabilities::lossy_block`](crate::Capabilities::lossy_block) tells
/// which kind it is):
///
/// | adapter | `Block` with a full buffer |
/// |---|---|
/// | memory | the **publisher waits** for room (lossless): one slow `Block` subscriber slows every publisher of its topics |
/// | redis-streams | the subscriber's **reader waits** (it reads from Redis only what fits, in a group only as many entries as there is room for); publishers never wait, the entries wait in the stream. Lossless as long as the stream's retention (`maxlen=` / `retention=`) keeps them; what is trimmed before it is read is gone, not reported |
/// | redis-pubsub | **nobody waits** (`lossy_block`): the new message is dropped for that subscriber, counted in its `stats().dropped`, and reported in its place as an `Error::Lost` gap signal (not counted again in `lost`); same for messages of this replica and of other replicas, so a stuck subscriber never stalls a publisher or the other replicas |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Lossless where the adapter can push back: the producer side (the
    /// publisher on memory, the subscriber's reader on redis-streams) waits
    /// for room. On the Pub/Sub backplane nobody waits: a full subscriber
    /// misses the message and gets an `Error::Lost` gap signal in its place.
    /// See the table above.
    #[default]
    Block,
    /// Drop the oldest buffered message to make room (counted in stats).
    DropOldest,
    /// Drop the new message (counted in stats).
    DropNewest,
}

/// What to subscribe to and how. Build it with [`Subscription::to`] or
/// [`Subscription::new`] and the builder methods.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::{Overflow, Start, Subscription};
/// let sub = Subscription::to("orders.*")?
///     .group("billing")
///     .start(Start::Earliest)
///     .buffer(256)
///     .overflow(Overflow::Block)
///     .max_attempts(5)
///     .ack_timeout(Duration::from_secs(30));
/// sub.validate()?;
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Subscription {
    filter: TopicFilter,
    mode: Mode,
    start: Start,
    buffer: usize,
    overflow: Overflow,
    max_attempts: u32,
    ack_timeout: Duration,
    buffer_warn_percent: u8,
    buffer_warn_after: Duration,
    max_in_flight: Option<usize>,
}

impl Subscription {
    /// Default [`buffer_warning`](Self::buffer_warning) threshold: 80 % full.
    pub const DEFAULT_BUFFER_WARN_PERCENT: u8 = 80;
    /// Default [`buffer_warning`](Self::buffer_warning) duration: 10 s.
    pub const DEFAULT_BUFFER_WARN_AFTER: Duration = Duration::from_secs(10);
    /// Longest accepted [`buffer_warning`](Self::buffer_warning) duration.
    pub const MAX_BUFFER_WARN_AFTER: Duration = Duration::from_secs(60 * 60);
    /// Default local buffer size (deliveries).
    pub const DEFAULT_BUFFER: usize = 1024;
    /// Largest accepted local buffer.
    pub const MAX_BUFFER: usize = 1 << 20;
    /// Default number of deliveries before a message is dead-lettered.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    /// Largest accepted `max_attempts`.
    pub const MAX_ATTEMPTS: u32 = 1_000_000;
    /// Default ack timeout.
    pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
    /// Shortest accepted ack timeout.
    pub const MIN_ACK_TIMEOUT: Duration = Duration::from_millis(1);
    /// Longest accepted ack timeout.
    pub const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    /// A fan-out subscription to `filter`, starting at `Latest`.
    pub fn new(filter: impl Into<TopicFilter>) -> Self {
        Subscription {
            filter: filter.into(),
            mode: Mode::Fanout,
            start: Start::Latest,
            buffer: Self::DEFAULT_BUFFER,
            overflow: Overflow::Block,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            ack_timeout: Self::DEFAULT_ACK_TIMEOUT,
            buffer_warn_percent: Self::DEFAULT_BUFFER_WARN_PERCENT,
            buffer_warn_after: Self::DEFAULT_BUFFER_WARN_AFTER,
            max_in_flight: None,
        }
    }

    /// Parses `filter` (see [`TopicFilter::parse`]) and starts a builder.
    pub fn to(filter: &str) -> Result<Self> {
        Ok(Self::new(TopicFilter::parse(filter)?))
    }

    /// Joins group `group` under a generated, unique consumer name.
    ///
    /// **Where a new group starts:** a group that does not exist yet is
    /// created by its first subscriber at that subscription's
    /// [`start`](Self::start) position, `Start::Latest` by default. Messages
    /// published before the first worker came up are then never processed
    /// by the group. For a work queue that must see them (the usual case
    /// when workers may start after the producers), add
    /// `.start(Start::Earliest)`:
    ///
    /// ```
    /// use switchyard_core::{Start, Subscription, Topic};
    /// let jobs = Subscription::new(Topic::new("jobs")?)
    ///     .group("workers")
    ///     .start(Start::Earliest);
    /// assert_eq!(jobs.start_at(), Start::Earliest);
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    ///
    /// An existing group keeps its position; `start` no longer matters then.
    pub fn group(self, group: impl Into<String>) -> Self {
        let consumer = format!("c-{}-{:08x}", std::process::id(), rand::random::<u32>());
        self.group_member(group, consumer)
    }

    /// Joins group `group` as consumer `consumer` (see [`group`](Self::group)
    /// for where a new group starts).
    pub fn group_member(mut self, group: impl Into<String>, consumer: impl Into<String>) -> Self {
        self.mode = Mode::Group {
            group: group.into(),
            consumer: consumer.into(),
        };
        self
    }

    /// Every subscriber gets every message (the default).
    pub fn fanout(mut self) -> Self {
        self.mode = Mode::Fanout;
        self
    }

    /// Where to start reading (for a group: where the group starts when it is created).
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Local buffer size in deliveries (1 to [`Subscription::MAX_BUFFER`],
    /// 1 048 576; default 1024).
    pub fn buffer(mut self, size: usize) -> Self {
        self.buffer = size;
        self
    }

    /// What to do when the local buffer is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Deliveries before a message is dead-lettered (1 to
    /// [`Subscription::MAX_ATTEMPTS`], one million; default 5).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long a group member may hold a message without settling it or
    /// calling `in_progress` before it is handed to another member
    /// ([`Subscription::MIN_ACK_TIMEOUT`] to [`Subscription::MAX_ACK_TIMEOUT`],
    /// 1 ms to 24 h; default 30 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Back-pressure warning: a `tracing` warning (at most one per
    /// `after`) while the local buffer stays at least `percent` % full for
    /// `after` or longer — a consumer that does not keep up. `percent`: 1 to
    /// 100 (default 80); `after`: 0 to 1 h (default 10 s). The fill is in
    /// [`SubscriberStats::buffered`](crate::SubscriberStats::buffered) and
    /// `capacity`.
    pub fn buffer_warning(mut self, percent: u8, after: Duration) -> Self {
        self.buffer_warn_percent = percent;
        self.buffer_warn_after = after;
        self
    }

    /// Flow control for a group member: at most `n` deliveries it took and
    /// has not settled yet (like JetStream's `max_ack_pending`), so a busy
    /// member does not hoard messages other members could take. Counted
    /// are the deliveries in the application's hands and, on Redis, those
    /// read ahead into the local buffer. 1 to
    /// [`Subscription::MAX_BUFFER`]; default: no limit (the buffer bounds
    /// what is read ahead). Group mode only: a fan-out subscription with it
    /// is refused.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// The [`max_in_flight`](Self::max_in_flight) limit, if any.
    pub fn max_in_flight_value(&self) -> Option<usize> {
        self.max_in_flight
    }

    /// The back-pressure warning's threshold (percent) and duration.
    pub fn buffer_warning_values(&self) -> (u8, Duration) {
        (self.buffer_warn_percent, self.buffer_warn_after)
    }

    /// The filter.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }

    /// The mode.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The start position.
    pub fn start_at(&self) -> Start {
        self.start
    }

    /// The local buffer size.
    pub fn buffer_size(&self) -> usize {
        self.buffer
    }

    /// The overflow policy.
    pub fn overflow_policy(&self) -> Overflow {
        self.overflow
    }

    /// Deliveries before dead-lettering.
    pub fn max_attempts_value(&self) -> u32 {
        self.max_attempts
    }

    /// The ack timeout.
    pub fn ack_timeout_value(&self) -> Duration {
        self.ack_timeout
    }

    /// The group and consumer names in group mode.
    pub fn group_names(&self) -> Option<(&str, &str)> {
        match &self.mode {
            Mode::Group { group, consumer } => Some((group, consumer)),
            Mode::Fanout => None,
        }
    }

    /// Checks every setting against its documented range; adapters call
    /// this first in `subscribe`.
    pub fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_BUFFER).contains(&self.buffer) {
            return Err(Error::InvalidConfig(format!(
                "buffer must be 1 to {}, got {} (set with Subscription::buffer)",
                Self::MAX_BUFFER,
                self.buffer
            )));
        }
        if !(1..=Self::MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(Error::InvalidConfig(format!(
                "max_attempts must be 1 to {}, got {} (set with Subscription::max_attempts)",
                Self::MAX_ATTEMPTS,
                self.max_attempts
            )));
        }
        if !(Self::MIN_ACK_TIMEOUT..=Self::MAX_ACK_TIMEOUT).contains(&self.ack_timeout) {
            return Err(Error::InvalidConfig(format!(
                "ack_timeout must be 1ms to 24h, got {:?} (set with Subscription::ack_timeout)",
                self.ack_timeout
            )));
        }
        if !(1..=100).contains(&self.buffer_warn_percent)
            || self.buffer_warn_after > Self::MAX_BUFFER_WARN_AFTER
        {
            return Err(Error::InvalidConfig(format!(
                "buffer_warning takes a percent of 1 to 100 and a duration of 0 to 1h, got {} % and {:?} (set with Subscription::buffer_warning)",
                self.buffer_warn_percent, self.buffer_warn_after
            )));
        }
        if let Some(n) = self.max_in_flight {
            if !(1..=Self::MAX_BUFFER).contains(&n) {
                return Err(Error::InvalidConfig(format!(
                    "max_in_flight must be 1 to {}, got {n} (set with Subscription::max_in_flight)",
                    Self::MAX_BUFFER
                )));
            }
            if matches!(self.mode, Mode::Fanout) {
                return Err(Error::InvalidConfig(
                    "max_in_flight limits a group member's unsettled deliveries; a fan-out subscription has none (remove it, or join a group)".into(),
                ));
            }
        }
        if let Mode::Group { group, consumer } = &self.mode {
            validate_name("group", group)?;
            validate_name("consumer", consumer)?;
        }
        Ok(())
    }
}

fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 {
        return Err(Error::InvalidConfig(format!(
            "{what} name must be 1 to 128 bytes, got {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')))
    {
        return Err(Error::InvalidConfig(format!(
            "{what} name {name:?} contains {c:?}: use ASCII letters, digits and '-', '_', '.', ':', '@'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let s = Subscription::to("a.b").unwrap();
        assert_eq!(s.mode(), &Mode::Fanout);
        assert_eq!(s.start_at(), Start::Latest);
        assert!(s.validate().is_ok());
        assert!(s.clone().buffer(0).validate().is_err());
        assert!(
            s.clone()
                .buffer(Subscription::MAX_BUFFER + 1)
                .validate()
                .is_err()
        );
        assert!(s.clone().max_attempts(0).validate().is_err());
        assert!(s.clone().ack_timeout(Duration::ZERO).validate().is_err());
        assert!(s.clone().max_attempts(1).validate().is_ok());
        assert!(s.clone().group_member("g", "").validate().is_err());
        assert!(s.clone().group_member("g g", "c").validate().is_err());
        assert!(s.clone().group("workers").validate().is_ok());
        let (g, c) = s
            .clone()
            .group("w")
            .group_names()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        assert_eq!(g, "w");
        assert!(c.starts_with("c-"));
        assert!(Subscription::to("a..b").is_err());
    }

    /// `ack_timeout(Duration::MAX)` passed validation and then `recv()`
    /// panicked computing `now + ack_timeout`. Every numeric setting is now
    /// checked against its range: extremes are refused, bounds accepted.
    #[test]
    fn extreme_values_are_refused_with_their_range() {
        let s = Subscription::to("a.b").unwrap();
        for (sub, needle) in [
            (
                s.clone().ack_timeout(Duration::MAX),
                "ack_timeout must be 1ms to 24h",
            ),
            (
                s.clone().ack_timeout(Duration::from_secs(u64::MAX)),
                "ack_timeout",
            ),
            (
                s.clone().ack_timeout(Duration::from_micros(999)),
                "ack_timeout",
            ),
            (
                s.clone()
                    .ack_timeout(Subscription::MAX_ACK_TIMEOUT + Duration::from_nanos(1)),
                "ack_timeout",
            ),
            (
                s.clone().max_attempts(u32::MAX),
                "max_attempts must be 1 to 1000000, got 4294967295",
            ),
            (
                s.clone().max_attempts(Subscription::MAX_ATTEMPTS + 1),
                "max_attempts",
            ),
            (s.clone().buffer(usize::MAX), "buffer must be 1 to 1048576"),
        ] {
            let e = sub.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        for sub in [
            s.clone().ack_timeout(Subscription::MAX_ACK_TIMEOUT),
            s.clone().ack_timeout(Subscription::MIN_ACK_TIMEOUT),
            s.clone().max_attempts(Subscription::MAX_ATTEMPTS),
            s.clone().buffer(Subscription::MAX_BUFFER).buffer(1),
        ] {
            assert!(sub.validate().is_ok(), "{sub:?}");
        }
    }
}
