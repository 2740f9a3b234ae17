//! What a chat backplane run reports: per member, per replica, the restart
//! step, and the summary printed at the end.

use std::fmt;
use std::time::Duration;

use super::REPLICAS;

/// What one member saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// The member's name.
    pub name: &'static str,
    /// The replica it is connected to.
    pub replica: &'static str,
    /// Distinct messages received.
    pub received: u64,
    /// Messages it should have received: every message posted to its rooms
    /// while Redis was up, and those posted on its own replica during the
    /// outage.
    pub expected: u64,
    /// Of the received, those posted on the other replica.
    pub from_other_replica: u64,
    /// Messages reported lost by gap signals (`Error::Lost`).
    pub lost: u64,
    /// Messages it should have been told were lost: those posted on the
    /// other replica to its rooms while Redis was down.
    pub expected_lost: u64,
    /// Messages delivered to it more than once (an echo or duplicate that
    /// got through); 0 when every replica ignores its own echo.
    pub duplicates: u64,
}

/// What one replica did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    /// The replica's name.
    pub name: &'static str,
    /// Messages posted by its members.
    pub posted: u64,
    /// Its own messages that came back from Redis and were dropped
    /// (`None` when the adapter is not the Redis backplane).
    pub self_echoes_dropped: Option<u64>,
    /// Times its subscribing connection was re-established.
    pub reconnects: u64,
}

/// How the restart step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartReport {
    /// Not run, and why.
    Skipped(String),
    /// Redis was stopped and started again.
    Done {
        /// Messages posted on replica A while Redis was down.
        outage_posts: u64,
        /// Of those, dropped from A's outbox (never reached Redis).
        dropped_for_redis: u64,
        /// How long Redis was down, as the example saw it.
        outage: Duration,
        /// From Redis being back to both replicas being subscribed again.
        resubscribed_after: Duration,
    },
}

/// What a run of the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// Per replica.
    pub replicas: Vec<ReplicaReport>,
    /// Per member, in the order of [`MEMBERS`](super::MEMBERS).
    pub members: Vec<MemberReport>,
    /// The restart step.
    pub restart: RestartReport,
    /// How the replicas connect at start-up.
    pub startup: String,
}

impl Summary {
    /// Whether every member received exactly what it should have, was told
    /// about exactly the messages it lost, and got nothing twice.
    pub fn all_accounted(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.received == m.expected && m.lost == m.expected_lost && m.duplicates == 0)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chat_backplane on {}:", self.adapter)?;
        writeln!(f, "  start-up: {}", self.startup)?;
        for r in &self.replicas {
            let echoes = r.self_echoes_dropped.map_or_else(
                || "n/a (only the Redis backplane hears itself)".to_owned(),
                |n| n.to_string(),
            );
            writeln!(
                f,
                "  {}: {} posted, own echoes dropped: {echoes}, reconnects: {}",
                r.name, r.posted, r.reconnects
            )?;
        }
        for m in &self.members {
            writeln!(
                f,
                "  {:<5} on {}: {} of {} messages ({} from the other replica), {} lost of {} expected lost, {} duplicates",
                m.name,
                m.replica,
                m.received,
                m.expected,
                m.from_other_replica,
                m.lost,
                m.expected_lost,
                m.duplicates
            )?;
        }
        match &self.restart {
            RestartReport::Skipped(why) => write!(f, "  restart of Redis: skipped: {why}")?,
            RestartReport::Done {
                outage_posts,
                dropped_for_redis,
                outage,
                resubscribed_after,
            } => {
                writeln!(
                    f,
                    "  restart of Redis: down for {:.1?}; both replicas subscribed again {:.1?} after it was back, no subscription lost",
                    outage, resubscribed_after
                )?;
                write!(
                    f,
                    "  during the outage {} posted {outage_posts} message(s): its own members got them, \
                     {dropped_for_redis} never reached Redis and are lost for {} \
                     (at-most-once backplane; its members were told with a gap signal)",
                    REPLICAS[0], REPLICAS[1]
                )?;
            }
        }
        Ok(())
    }
}
