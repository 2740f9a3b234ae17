//! The cases, grouped by topic, and the registry the runner uses.
//!
//! Every case is a public `async fn(&Ctx) -> CaseResult`. [`all`] lists
//! them with their name, their [`Requirement`]s and a description; the
//! runner registers one trial per entry and skips (visibly) those whose
//! requirements the adapter does not meet.

use futures::future::BoxFuture;
use switchyard_core::Capabilities;

use crate::CaseResult;
use crate::context::Ctx;
use crate::harness::CaseInfo;

pub mod basic;
pub mod delivery;
pub mod errors;
pub mod flow;
pub mod groups;
pub mod limits;
pub mod patterns;
pub mod replay;
pub mod retention;
pub mod typed;

/// A capability flag of [`Capabilities`], by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flag {
    /// `capabilities.persistent`
    Persistent,
    /// `capabilities.replay`
    Replay,
    /// `capabilities.consumer_groups`
    ConsumerGroups,
    /// `capabilities.ack_redelivery`
    AckRedelivery,
    /// `capabilities.per_topic_ordering`
    PerTopicOrdering,
    /// `capabilities.dead_letters`
    DeadLetters,
    /// `capabilities.patterns`
    Patterns,
    /// `capabilities.cross_process`
    CrossProcess,
    /// `capabilities.at_least_once`
    AtLeastOnce,
    /// `capabilities.gap_signals`
    GapSignals,
    /// `capabilities.lossy_block`
    LossyBlock,
}

impl Flag {
    /// The field name in [`Capabilities`], e.g. `consumer_groups`.
    pub fn field(self) -> &'static str {
        match self {
            Flag::Persistent => "persistent",
            Flag::Replay => "replay",
            Flag::ConsumerGroups => "consumer_groups",
            Flag::AckRedelivery => "ack_redelivery",
            Flag::PerTopicOrdering => "per_topic_ordering",
            Flag::DeadLetters => "dead_letters",
            Flag::Patterns => "patterns",
            Flag::CrossProcess => "cross_process",
            Flag::AtLeastOnce => "at_least_once",
            Flag::GapSignals => "gap_signals",
            Flag::LossyBlock => "lossy_block",
        }
    }

    /// What the flag means, in words (`consumer groups`).
    pub fn meaning(self) -> &'static str {
        match self {
            Flag::Persistent => "persistence across backend restarts",
            Flag::Replay => "replay (Start::Earliest / Start::After)",
            Flag::ConsumerGroups => "consumer groups",
            Flag::AckRedelivery => "ack/nack redelivery",
            Flag::PerTopicOrdering => "per-topic ordering",
            Flag::DeadLetters => "dead letters",
            Flag::Patterns => "pattern subscriptions",
            Flag::CrossProcess => "cross-process delivery",
            Flag::AtLeastOnce => "at-least-once delivery",
            Flag::GapSignals => "gap signals",
            Flag::LossyBlock => "Overflow::Block that never waits (gap signal instead)",
        }
    }

    /// Whether `caps` has this flag set.
    pub fn is_set(self, caps: &Capabilities) -> bool {
        match self {
            Flag::Persistent => caps.persistent,
            Flag::Replay => caps.replay,
            Flag::ConsumerGroups => caps.consumer_groups,
            Flag::AckRedelivery => caps.ack_redelivery,
            Flag::PerTopicOrdering => caps.per_topic_ordering,
            Flag::DeadLetters => caps.dead_letters,
            Flag::Patterns => caps.patterns,
            Flag::CrossProcess => caps.cross_process,
            Flag::AtLeastOnce => caps.at_least_once,
            Flag::GapSignals => caps.gap_signals,
            Flag::LossyBlock => caps.lossy_block,
        }
    }
}

/// What a case needs in order to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Requirement {
    /// The capability must be set.
    Has(Flag),
    /// The capability must NOT be set (cases that check an adapter refuses
    /// what it cannot do).
    Lacks(Flag),
    /// The namespace must be able to restart its backend
    /// ([`Namespace::can_restart`](crate::Namespace::can_restart)); decided
    /// when the case runs.
    Restart,
    /// The namespace must connect transports with per-topic retention rules
    /// ([`Namespace::takes_retention_rules`](crate::Namespace::takes_retention_rules));
    /// decided when the case runs.
    RetentionRules,
    /// A Cargo feature of `switchyard-conformance` must be enabled.
    Feature {
        /// The feature name.
        name: &'static str,
        /// Whether it is enabled in this build.
        enabled: bool,
    },
}

impl Requirement {
    /// Why the case does not apply, or `None` when this requirement is met
    /// ([`Requirement::Restart`] is always met here; the runner checks it
    /// on the namespace).
    pub fn unmet(&self, caps: &Capabilities) -> Option<String> {
        match *self {
            Requirement::Has(flag) if !flag.is_set(caps) => Some(format!(
                "adapter has no {} (capabilities.{} = false)",
                flag.meaning(),
                flag.field()
            )),
            Requirement::Lacks(flag) if flag.is_set(caps) => Some(format!(
                "adapter has {} (capabilities.{} = true); this case checks the refusal when it has not",
                flag.meaning(),
                flag.field()
            )),
            Requirement::Feature {
                name,
                enabled: false,
            } => Some(format!(
                "switchyard-conformance was built without its `{name}` feature"
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Has(flag) => f.write_str(flag.field()),
            Requirement::Lacks(flag) => write!(f, "!{}", flag.field()),
            Requirement::Restart => f.write_str("Namespace::can_restart"),
            Requirement::RetentionRules => f.write_str("Namespace::takes_retention_rules"),
            Requirement::Feature { name, .. } => write!(f, "feature {name}"),
        }
    }
}

type CaseFn = for<'a> fn(&'a Ctx) -> BoxFuture<'a, CaseResult>;

/// One case of the suite: a name, what it needs, what it checks, and the
/// `async fn` that checks it.
pub struct Case {
    name: &'static str,
    requires: &'static [Requirement],
    description: &'static str,
    run: CaseFn,
}

impl Case {
    /// The case name, also the trial name (`group_exactly_once`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the adapter must offer for the case to apply.
    pub fn requirements(&self) -> &'static [Requirement] {
        self.requires
    }

    /// What the case asserts, in one paragraph.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// Whether the case restarts the backend.
    pub fn needs_restart(&self) -> bool {
        self.requires.contains(&Requirement::Restart)
    }

    /// Why the case does not apply to an adapter with `caps`, or `None`
    /// when it does (the restart requirement is checked when it runs).
    pub fn skip_reason(&self, caps: &Capabilities) -> Option<String> {
        let reasons: Vec<String> = self.requires.iter().filter_map(|r| r.unmet(caps)).collect();
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }

    /// What the harness is told about the case.
    pub fn info(&self) -> CaseInfo {
        CaseInfo::new(self.name, self.needs_restart())
    }

    /// Runs the case in `ctx` (requirements are not checked here).
    pub fn run<'a>(&self, ctx: &'a Ctx) -> BoxFuture<'a, CaseResult> {
        (self.run)(ctx)
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("requires", &self.requires)
            .finish_non_exhaustive()
    }
}

/// The case called `name`.
pub fn find(name: &str) -> Option<&'static Case> {
    all().iter().find(|c| c.name == name)
}

/// Every case, in registration order.
pub fn all() -> &'static [Case] {
    CASES
}

use Flag::*;
use Requirement::{Has, Lacks, Restart, RetentionRules};

const GROUP_ACK: &[Requirement] = &[Has(ConsumerGroups), Has(AckRedelivery)];
const DEAD: &[Requirement] = &[Has(ConsumerGroups), Has(AckRedelivery), Has(DeadLetters)];

macro_rules! case {
    ($name:literal, $requires:expr, $f:path, $desc:literal) => {
        Case {
            name: $name,
            requires: $requires,
            description: $desc,
            run: |ctx| Box::pin($f(ctx)),
        }
    };
}

static CASES: &[Case] = &[
    // basic.rs
    case!(
        "health",
        &[],
        basic::health,
        "`health()` of a fresh transport is `Health::Ok`; the transport's `name()` is not empty and its `capabilities()` equal the harness's."
    ),
    case!(
        "round_trip_payloads",
        &[],
        basic::round_trip_payloads,
        "4 messages — an empty payload, 260 binary non-UTF-8 bytes (all byte values, 0x00 and 0xff included), 1 MiB, and UTF-8 text with 5 headers — arrive exactly once each on a fan-out subscriber with payload, headers, topic and dedup id unchanged, `attempt() == 1`, no acknowledger, and the id `publish` returned; the 4 ids are distinct; nothing else arrives. In publish order when `per_topic_ordering`."
    ),
    case!(
        "publish_batch",
        &[],
        basic::publish_batch,
        "An empty batch returns 0 ids; a batch of 100 returns 100 distinct ids (strictly increasing when `per_topic_ordering`) and all 100 arrive exactly once with those ids (in batch order when ordered); a batch of 10 alternating between two topics delivers 5 to each topic's subscriber."
    ),
    case!(
        "per_topic_order",
        &[Has(PerTopicOrdering)],
        basic::per_topic_order,
        "1,000 messages published one by one arrive on one subscriber exactly once and in publish order, with strictly increasing ids equal to the ids `publish` returned."
    ),
    case!(
        "subscriber_counts",
        &[],
        basic::subscriber_counts,
        "`subscribers(topic)`: 0 before anyone subscribes; with an exact, a pattern and (with groups) a group subscriber, `local` is 3 (2 without groups), and 1 on a sibling topic only the pattern matches; `remote`, where the adapter knows it, is at least 1; 0 after all closed."
    ),
    case!(
        "fanout_three_subscribers",
        &[],
        basic::fanout_three_subscribers,
        "3 fan-out subscribers of one topic each receive all 1,000 messages exactly once."
    ),
    case!(
        "topic_isolation",
        &[],
        basic::topic_isolation,
        "With 10 messages on topic A and 10 on topic B, A's subscriber gets exactly A's 10 and B's exactly B's 10; nothing else arrives."
    ),
    case!(
        "namespace_isolation",
        &[],
        basic::namespace_isolation,
        "Two namespaces using the same topic name: 5 messages in the first and 7 in the second reach only their own namespace's subscriber (exactly 5 and 7)."
    ),
    case!(
        "concurrent_publishers",
        &[],
        basic::concurrent_publishers,
        "8 tasks publish 1,000 messages each on one transport concurrently; one subscriber receives all 8,000 exactly once (each publisher's messages in its order when `per_topic_ordering`); with `lossy_block` its buffer holds all 8,000."
    ),
    case!(
        "second_transport",
        &[Has(CrossProcess)],
        basic::second_transport,
        "Two transports of one namespace, each with a subscriber: a message published on transport 1 and one published on transport 2 both reach both subscribers, exactly 2 each."
    ),
    // groups.rs
    case!(
        "group_exactly_once",
        &[Has(ConsumerGroups)],
        groups::group_exactly_once,
        "1,000 messages over 3 members of one group (on 3 transports, concurrent receive loops, buffer 32): each message is delivered and acked exactly once in total, and every member gets at least one."
    ),
    case!(
        "groups_independent",
        &[Has(ConsumerGroups)],
        groups::groups_independent,
        "Two different groups on one topic each receive all 1,000 messages exactly once."
    ),
    case!(
        "group_unsupported",
        &[Lacks(ConsumerGroups)],
        groups::group_unsupported,
        "Without consumer groups, subscribing in group mode fails with `Error::Unsupported` or `Error::InvalidConfig` instead of silently fanning out."
    ),
    case!(
        "long_work_in_progress",
        GROUP_ACK,
        groups::long_work_in_progress,
        "Member a keeps a delivery alive with `in_progress()` every ack_timeout/3 for 3× the ack timeout; meanwhile member b of the same group receives nothing; after a's ack, neither member receives anything within ack timeout + quiet period."
    ),
    case!(
        "crash_redelivers",
        GROUP_ACK,
        groups::crash_redelivers,
        "20 messages; member a (transport A) receives 5 without settling them, then its deliveries are leaked (a crash sends no nack), its subscriber and transport are dropped without close; member b (transport B, same group) then receives all 20 distinct messages, the 5 held by a with `attempt >= 2`; nothing is lost and nothing more arrives after b acked them."
    ),
    case!(
        "continue_after_close",
        &[Has(ConsumerGroups)],
        groups::continue_after_close,
        "500 messages; consumer c1 reads 200, acks 150, leaves 50 unsettled and closes its transport; a new transport's consumer with the same group and consumer name receives the rest: the union is all 500; none of the 150 acked comes again; any message seen twice (only allowed when `at_least_once`) carries the dedup id of its first copy."
    ),
    case!(
        "restart_keeps_unacked",
        &[Has(Persistent), Has(ConsumerGroups), Restart],
        groups::restart_keeps_unacked,
        "100 messages on a group topic; a consumer reads 40, acks 30 and closes; the backend restarts; a new transport's consumer (same group and name) receives exactly the 70 others (10 unsettled + 60 unread) and none of the 30 acked; duplicates only when `at_least_once` and with the same dedup id."
    ),
    case!(
        "attempts_count_received_deliveries",
        GROUP_ACK,
        groups::attempts_count_received_deliveries,
        "6 messages; 3 members of one group in turn subscribe, take nothing for twice the quiet period and close; a 4th member gets all 6 with `attempt() == 1` (fetched-but-never-received deliveries use up no attempt); the first, nacked, comes back with `attempt() == 2`; stats: 7 received, 1 redelivered, 0 dead-lettered."
    ),
    // delivery.rs
    case!(
        "ack_removes",
        GROUP_ACK,
        delivery::ack_removes,
        "5 group deliveries, each `attempt() == 1` with an acknowledger, are acked; nothing is redelivered within ack timeout + quiet period."
    ),
    case!(
        "nack_now_redelivers",
        GROUP_ACK,
        delivery::nack_now_redelivers,
        "`nack(Retry::Now)` brings the same message (same id, payload, headers, dedup id) back with `attempt() == 2`; after its ack nothing more arrives."
    ),
    case!(
        "nack_now_redelivers_behind_waiting",
        GROUP_ACK,
        delivery::nack_now_redelivers_behind_waiting,
        "`a`, `b`, `c` published to a group member; `a` received and nacked with `Retry::Now`: the next three deliveries are `b` (attempt 1), `c` (attempt 1), then `a` (attempt 2, same id, payload and dedup id) — a redelivery comes behind the messages already waiting."
    ),
    case!(
        "nack_after_delays",
        GROUP_ACK,
        delivery::nack_after_delays,
        "`nack(Retry::After(3 × quiet period))` redelivers the message with `attempt() == 2` no earlier than the delay after the nack (10 ms tolerance) and within delay + recv timeout."
    ),
    case!(
        "dropped_delivery_redelivered",
        GROUP_ACK,
        delivery::dropped_delivery_redelivered,
        "A group delivery dropped without ack or nack comes back with `attempt() == 2` and the same dedup id within ack timeout + recv timeout."
    ),
    case!(
        "dead_letter_after_max_attempts",
        DEAD,
        delivery::dead_letter_after_max_attempts,
        "With `max_attempts(3)`, nacking attempts 1, 2 and 3 moves the message to `{topic}:dlq`: exactly one dead letter with the same payload, dedup id and application headers, and headers `sy-dlq-reason` (non-empty), `sy-dlq-topic` = the topic, `sy-dlq-id` = the original id, `sy-dlq-attempts` = \"3\"; the original is not redelivered."
    ),
    case!(
        "dead_letter_on_request",
        DEAD,
        delivery::dead_letter_on_request,
        "`nack(Retry::DeadLetter(\"poison\"))` on the first attempt dead-letters at once: exactly one entry on `{topic}:dlq` with `sy-dlq-reason` = \"poison\" and `sy-dlq-attempts` = \"1\"; the original is not redelivered."
    ),
    // replay.rs
    case!(
        "latest_skips_history",
        &[],
        replay::latest_skips_history,
        "10 messages published before a `Start::Latest` subscription are not received; the 5 published after it are, exactly once."
    ),
    case!(
        "replay_earliest",
        &[Has(Replay)],
        replay::replay_earliest,
        "`Start::Earliest` receives the 20 messages published before the subscription (in order when `per_topic_ordering`), then the 5 published after it: exactly 25."
    ),
    case!(
        "replay_after_id",
        &[Has(Replay)],
        replay::replay_after_id,
        "`Start::After(id of the 10th)` of 20 published messages receives exactly the 11th to the 20th, then a message published afterwards."
    ),
    case!(
        "topics_catalog",
        &[Has(Replay)],
        replay::topics_catalog,
        "`topics()` of a pattern over two of three topics lists exactly those two, sorted, with lengths 3 and 5 and the first and last ids `publish` returned; with groups: a member (buffer 1) that acked 2 of 3 deliveries shows pending 1 plus what the adapter read ahead (its buffer of 1 and one read waiting for room: at most 3), last delivered the id that many after the 3rd and, where known, the lag to match; with dead letters: a dead-lettered message makes `a:dlq` listed (length 1) with its origin; a filter that matches nothing lists nothing."
    ),
    case!(
        "retention_rules",
        &[Has(Replay), RetentionRules],
        retention::retention_rules,
        "With per-topic retention rules `<p>.*.rgb` maxlen 50, `<p>.>` maxlen 500 and the exact `<p>.r1.rgb` unlimited, 1000 messages on each of `<p>.r7.rgb`, `<p>.r7.odom` and `<p>.r1.rgb`: `topics()` lists `r7.rgb` with 50 to 499 (the most specific pattern wins; exactly 50 where trimming is exact), `r7.odom` with 500 to 999, `r1.rgb` with all 1000 (an exact rule beats every pattern, 0 means no cap); an `Earliest` replay of each gets exactly that many, the newest, in order."
    ),
    case!(
        "topics_unsupported",
        &[Lacks(Replay)],
        replay::topics_unsupported,
        "An adapter that keeps no messages answers `topics()` with `Error::Unsupported`."
    ),
    case!(
        "replay_unsupported",
        &[Lacks(Replay)],
        replay::replay_unsupported,
        "Without replay, `Start::Earliest` and `Start::After(id)` fail with `Error::Unsupported` or `Error::InvalidConfig` instead of silently starting at Latest."
    ),
    case!(
        "pattern_follows_new_topics",
        &[Has(Patterns)],
        patterns::pattern_follows_new_topics,
        "`<prefix>.*` and `<prefix>.>` subscriptions made before any topic exists receive the topics created afterwards: `*` gets exactly t1's 3 and t2's 4 messages, `>` also `t1.deep`'s 1 (8); neither gets the 2 messages on the dead-letter topic `<prefix>.t3:dlq` nor the 1 outside the prefix."
    ),
    case!(
        "dead_letter_pattern",
        &[
            Has(Patterns),
            Has(ConsumerGroups),
            Has(DeadLetters),
            Has(Replay)
        ],
        patterns::dead_letter_pattern,
        "A fan-out subscriber on `<prefix>.dl.*:dlq` (from Earliest) receives exactly the 4 dead letters of two topics (2 each) and nothing else — not a live message published on a matching topic."
    ),
    case!(
        "rooted_topics",
        &[Has(Patterns)],
        patterns::rooted_topics,
        "ROS-style rooted topics: `/<p>/*/camera/rgb` gets exactly the 2 + 3 messages of `/<p>/robot-1/camera/rgb` and `/<p>/robot-2/camera/rgb`, `<p>/*/camera/rgb` exactly the 1 of `<p>/robot-3/camera/rgb`, and an exact `/<p>/scan` subscriber its 1 message but none of the 2 on `<p>/scan`."
    ),
    case!(
        "patterns_unsupported",
        &[Lacks(Patterns)],
        patterns::patterns_unsupported,
        "Without patterns, subscribing to `<prefix>.*` fails with `Error::Unsupported` or `Error::InvalidConfig`."
    ),
    // flow.rs
    case!(
        "backpressure_block",
        &[],
        flow::backpressure_block,
        "A slow subscriber with buffer 16 and `Overflow::Block` receives all 2,000 messages of a concurrent publisher exactly once (in order when `per_topic_ordering`), `stats().dropped == 0`. With `lossy_block` instead: a Block subscriber (buffer 16) that never reads holds no publish back (each within the recv timeout), a reading one gets all 2,000, and the stuck one yields 0..16 then gap signals covering exactly 1,984 (`dropped` 1,984, `lost` 0)."
    ),
    case!(
        "backpressure_drop_oldest",
        &[],
        flow::backpressure_drop_oldest,
        "Buffer 16, `Overflow::DropOldest`, nobody reading while 2,000 are published (publishing does not block): afterwards `stats().dropped > 0` and received + dropped == 2,000 (<= with inexact accounting), no message twice, the newest (1,999th) kept when ordered and exact; a message published afterwards still arrives."
    ),
    case!(
        "backpressure_drop_newest",
        &[],
        flow::backpressure_drop_newest,
        "As `backpressure_drop_oldest` with `Overflow::DropNewest`: `dropped > 0`, received + dropped == 2,000, the oldest (first) kept when ordered and exact; a message published afterwards still arrives."
    ),
    case!(
        "fetch_and_buffer_fill",
        &[],
        flow::fetch_and_buffer_fill,
        "30 messages reach a fan-out subscriber (buffer 64) nobody reads: `stats().buffered` becomes 30 with `capacity >= 64`; `fetch(20, …)` returns 20 with `more`, `fetch(20, 300ms)` the other 10 without `more`; all 30 exactly once (in order when ordered), `buffered` 0 after; a `fetch(5, …)` while 5 are published 100 ms apart returns all 5."
    ),
    case!(
        "max_in_flight_limits_a_member",
        &[Has(ConsumerGroups)],
        flow::max_in_flight_limits_a_member,
        "A fan-out subscription with `max_in_flight` is refused (`InvalidConfig`); a member with `max_in_flight(2)` that holds 2 of 20 takes nothing more while another member gets the other 18 and then all 5 published meanwhile; once it acks one (and the other left), it takes the next message."
    ),
    // errors.rs
    case!(
        "invalid_topics",
        &[],
        errors::invalid_topics,
        "`Topic::new(\"a..b\")`, `Topic::new(\"\")`, a 300-byte name, `Message::to(\"a b\", ..)` and `Subscription::to(\"a.>.b\")` are `Err(Error::InvalidTopic)`, never a panic."
    ),
    case!(
        "invalid_subscription",
        &[],
        errors::invalid_subscription,
        "`subscribe` refuses buffer 0, a buffer above `Subscription::MAX_BUFFER`, `max_attempts(0)` and a zero ack timeout with `Err(Error::InvalidConfig)` (a zero buffer must not be accepted)."
    ),
    case!(
        "publish_after_close",
        &[],
        errors::publish_after_close,
        "After `close()`, `publish`, `publish_batch` and `subscribe` fail with `Err(Error::Closed)`; a second `close()` returns without hanging."
    ),
    case!(
        "recv_after_close",
        &[],
        errors::recv_after_close,
        "A subscriber's `recv()` returns `None` within the recv timeout once its transport is closed."
    ),
    // limits.rs
    case!(
        "limits_refused_at_publish",
        &[],
        limits::limits_refused_at_publish,
        "One past each limit of `capabilities().limits` (payload bound + 1 byte, `Limits::MAX_HEADERS` + 1 headers, `Limits::MAX_HEADER_BYTES` + 1 header bytes, a key of `Limits::MAX_HEADER_KEY` + 1 bytes, an empty key) is refused by `publish` and, as the middle of 3 messages, by `publish_batch` with `Error::InvalidMessage` naming that limit, the actual size and the maximum (and the batch index); the adapter's limits equal the core's except a lower payload bound; a subscriber receives none of the 15 refused messages: its first delivery is a marker published afterwards, then nothing."
    ),
    case!(
        "limits_at_bounds_delivered",
        &[],
        limits::limits_at_bounds_delivered,
        "A message with a payload of exactly the adapter's bound, 64 headers of exactly 64 KiB and a 256-byte key (`publish`) and one with those headers and a short payload (`publish_batch`) both arrive exactly once with the ids returned, payload and dedup id unchanged and every header unchanged (extra headers only reserved `sy-` ones); nothing else arrives."
    ),
    case!(
        "limits_at_bounds_dead_lettered",
        DEAD,
        limits::limits_at_bounds_dead_lettered,
        "A group delivery of a message at the header limits (64 headers, 64 KiB) nacked with `Retry::DeadLetter` (a 1000-byte reason) arrives on `{topic}:dlq` with the same payload, dedup id and headers plus exactly the 4 `sy-dlq-*` ones (68 in all); nothing else arrives on either subscriber."
    ),
    // typed.rs
    case!(
        "typed_json",
        &[],
        typed::typed_json,
        "The typed `Bus` with `Codec::Json` delivers 3 structs equal to those sent, with `content-type: application/json`."
    ),
    case!(
        "typed_bincode",
        &[Requirement::Feature {
            name: "bincode",
            enabled: cfg!(feature = "bincode")
        }],
        typed::typed_bincode,
        "The typed `Bus` with `Codec::Bincode` delivers 3 structs equal to those sent, with `content-type: application/x-bincode`."
    ),
    case!(
        "typed_malformed_payload",
        &[],
        typed::typed_malformed_payload,
        "A raw publish of bytes that are not JSON yields exactly one `Err(Error::Codec)` item on a typed JSON subscriber, and the good message published next still arrives; nothing else."
    ),
    case!(
        "typed_content_type_mismatch",
        &[],
        typed::typed_content_type_mismatch,
        "A raw publish of valid JSON labelled `content-type: application/x-bincode` yields exactly one `Err(Error::Codec)` item naming both content types on a typed JSON subscriber (no silent misdecode), and the good message published next still arrives; `decode_errors` is 1; nothing else."
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_described() {
        let mut names: Vec<&str> = all().iter().map(Case::name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate case names");
        for c in all() {
            assert!(
                !c.description().is_empty(),
                "{} has no description",
                c.name()
            );
            assert!(
                c.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{} is not snake_case",
                c.name()
            );
        }
    }

    #[test]
    fn skip_reasons_name_the_flag() {
        let caps = Capabilities::default();
        let Some(groups) = find("group_exactly_once") else {
            panic!("group_exactly_once is registered");
        };
        assert_eq!(
            groups.skip_reason(&caps).as_deref(),
            Some("adapter has no consumer groups (capabilities.consumer_groups = false)")
        );
        let Some(unsupported) = find("group_unsupported") else {
            panic!("group_unsupported is registered");
        };
        assert_eq!(unsupported.skip_reason(&caps), None);
        let Some(health) = find("health") else {
            panic!("health is registered");
        };
        assert_eq!(health.skip_reason(&caps), None);
    }
}
