//! The performance targets, read off the rows of one `compare` run: each
//! target's figure per payload size and whether that run met it
//! (`docs/benchmarks/targets.md`, the table in docs/benchmarks.md).

use crate::harness::Row;

/// One payload size's rows.
pub(crate) struct SizeRows<'a> {
    pub(crate) size: usize,
    pub(crate) rows: &'a [Row],
}

/// How a target's figure is compared with its goal.
#[derive(Clone, Copy)]
enum Goal {
    /// A ratio at least this.
    AtLeast(f64),
    /// A latency (µs) below this.
    Below(f64),
    /// Shown for reference, no goal.
    None,
}

struct Target {
    what: &'static str,
    goal: Goal,
    /// The figure and a suffix shown beside it (e.g. a loss count), or
    /// `None` when a row it needs is missing from the run.
    figure: fn(&[Row]) -> Option<(f64, String)>,
    /// Formats the figure.
    unit: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    Ratio,
    Micros,
}

fn find<'a>(rows: &'a [Row], section: &str, name: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.section == section && r.name.starts_with(name))
}

fn over(rows: &[Row], a: (&str, &str), b: (&str, &str)) -> Option<(f64, String)> {
    let (a, b) = (find(rows, a.0, a.1)?, find(rows, b.0, b.1)?);
    (b.msgs_per_sec() > 0.0).then(|| (a.msgs_per_sec() / b.msgs_per_sec(), String::new()))
}

/// A row's msg/s over its section's raw limit (the same ratio as the
/// tables': `streams-consume` rows over `redis-benchmark` XADD).
fn to_limit(rows: &[Row], section: &str, name: &str) -> Option<(f64, String)> {
    let row = find(rows, section, name)?;
    Some((crate::ratio(rows, row)?, String::new()))
}

/// Messages a fan-out row lost in transit, read from its note (the only
/// place the harness records it): `"...; N of M lost in transit ..."`.
fn lost(row: &Row) -> u64 {
    row.note
        .split("; ")
        .find_map(|part| {
            let (n, rest) = part.split_once(" of ")?;
            rest.contains("lost in transit")
                .then(|| n.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

const XADD: &str = "streams-publish";
const XREAD: &str = "streams-consume";
const PUBSUB: &str = "pubsub-publish";

fn targets() -> Vec<Target> {
    vec![
        Target {
            what: "Redis Streams, 1 task, `publish(..).await` in a loop, × `redis-benchmark -P 64` XADD (reference)",
            goal: Goal::None,
            unit: Unit::Ratio,
            figure: |r| to_limit(r, XADD, "switchyard redis-streams, 1 publisher(s)"),
        },
        Target {
            what: "Redis Streams, 1 task, `publish_queued` loop ≥ 0.5 × XADD",
            goal: Goal::AtLeast(0.5),
            unit: Unit::Ratio,
            figure: |r| to_limit(r, XADD, "switchyard redis-streams, 1 task, publish_queued"),
        },
        Target {
            what: "Redis Streams, 64 publishers ≥ 0.7 × XADD",
            goal: Goal::AtLeast(0.7),
            unit: Unit::Ratio,
            figure: |r| to_limit(r, XADD, "switchyard redis-streams, 64 publisher(s)"),
        },
        Target {
            what: "Redis Streams, `publish_batch` of 100 ≥ 0.8 × XADD",
            goal: Goal::AtLeast(0.8),
            unit: Unit::Ratio,
            figure: |r| to_limit(r, XADD, "switchyard redis-streams, publish_batch"),
        },
        Target {
            what: "Redis Streams, group of 4, consume + ack ≥ 0.5 × XADD",
            goal: Goal::AtLeast(0.5),
            unit: Unit::Ratio,
            figure: |r| to_limit(r, XREAD, "switchyard redis-streams, group of 4"),
        },
        Target {
            what: "Redis Streams, group of 1 × raw `XREADGROUP COUNT 500` + `XACK` loop (reference)",
            goal: Goal::None,
            unit: Unit::Ratio,
            figure: |r| {
                over(
                    r,
                    (XREAD, "switchyard redis-streams, group of 1"),
                    (XREAD, "redis-rs XREADGROUP"),
                )
            },
        },
        Target {
            what: "Redis Streams ≥ 5 × omniqueue 0.3, publish (64 publishers each)",
            goal: Goal::AtLeast(5.0),
            unit: Unit::Ratio,
            figure: |r| {
                over(
                    r,
                    (XADD, "switchyard redis-streams, 64 publisher(s)"),
                    (XADD, "omniqueue"),
                )
            },
        },
        Target {
            what: "Redis Streams ≥ 5 × omniqueue 0.3, consume + ack (1 consumer each)",
            goal: Goal::AtLeast(5.0),
            unit: Unit::Ratio,
            figure: |r| {
                over(
                    r,
                    (XREAD, "switchyard redis-streams, group of 1"),
                    (XREAD, "omniqueue"),
                )
            },
        },
        Target {
            what: "ahead of async-nats JetStream, durable publish (64 publishers each)",
            goal: Goal::AtLeast(1.0),
            unit: Unit::Ratio,
            figure: |r| {
                over(
                    r,
                    (XADD, "switchyard redis-streams, 64 publisher(s)"),
                    (XADD, "async-nats"),
                )
            },
        },
        Target {
            what: "ahead of async-nats JetStream, consume + ack (1 consumer each)",
            goal: Goal::AtLeast(1.0),
            unit: Unit::Ratio,
            figure: |r| {
                over(
                    r,
                    (XREAD, "switchyard redis-streams, group of 1"),
                    (XREAD, "async-nats"),
                )
            },
        },
        Target {
            what: "Pub/Sub, 64 publishers, `publish` returned ≥ 0.7 × `redis-benchmark -P 64` PUBLISH",
            goal: Goal::AtLeast(0.7),
            unit: Unit::Ratio,
            figure: |r| to_limit(r, PUBSUB, "switchyard redis-pubsub, 64 publisher(s)"),
        },
        Target {
            what: "Pub/Sub, end to end at a second replica ≥ 0.5 × PUBLISH, 0 lost",
            goal: Goal::AtLeast(0.5),
            unit: Unit::Ratio,
            figure: |r| {
                let row = find(r, PUBSUB, "switchyard redis-pubsub cross-replica")?;
                let (x, _) = to_limit(r, PUBSUB, &row.name)?;
                let lost = lost(row);
                // Any loss misses the target whatever the ratio.
                Some((if lost > 0 { -x } else { x }, format!(", {lost} lost")))
            },
        },
        Target {
            what: "memory, fan-out to 10 subscribers ≥ 1.0 × `tokio::sync::broadcast`",
            goal: Goal::AtLeast(1.0),
            unit: Unit::Ratio,
            figure: |r| to_limit(r, "memory-fanout-10", "switchyard memory"),
        },
        Target {
            what: "memory, fan-out to 1 subscriber × `tokio::sync::broadcast` (reference)",
            goal: Goal::None,
            unit: Unit::Ratio,
            figure: |r| to_limit(r, "memory-fanout-1", "switchyard memory"),
        },
        Target {
            what: "memory, group of 4 ≥ 1.0 × group of 1",
            goal: Goal::AtLeast(1.0),
            unit: Unit::Ratio,
            figure: |r| {
                over(
                    r,
                    ("memory-group", "switchyard memory, group of 4"),
                    ("memory-group", "switchyard memory, group of 1"),
                )
            },
        },
        Target {
            what: "Redis Streams, cross-replica p99 < 1 ms at 10,000 msg/s",
            goal: Goal::Below(1000.0),
            unit: Unit::Micros,
            figure: |r| p(r, "switchyard redis-streams", |l| l.p99),
        },
        Target {
            what: "Pub/Sub, cross-replica p99 < 1 ms at 10,000 msg/s",
            goal: Goal::Below(1000.0),
            unit: Unit::Micros,
            figure: |r| p(r, "switchyard redis-pubsub", |l| l.p99),
        },
        Target {
            what: "Redis Streams, cross-replica p99.9 at 10,000 msg/s (reported)",
            goal: Goal::None,
            unit: Unit::Micros,
            figure: |r| p(r, "switchyard redis-streams", |l| l.p999),
        },
        Target {
            what: "Pub/Sub, cross-replica p99.9 < 1 ms at 10,000 msg/s",
            goal: Goal::Below(1000.0),
            unit: Unit::Micros,
            figure: |r| p(r, "switchyard redis-pubsub", |l| l.p999),
        },
        Target {
            what: "raw redis-rs PUBLISH / SUBSCRIBE p99.9 at 10,000 msg/s, measured the same way (reference)",
            goal: Goal::None,
            unit: Unit::Micros,
            figure: |r| p(r, "redis-rs PUBLISH / SUBSCRIBE", |l| l.p999),
        },
        Target {
            what: "memory, p99.9 < 1 ms at 10,000 msg/s",
            goal: Goal::Below(1000.0),
            unit: Unit::Micros,
            figure: |r| p(r, "switchyard memory", |l| l.p999),
        },
    ]
}

fn p(rows: &[Row], name: &str, pick: fn(&crate::harness::Latency) -> f64) -> Option<(f64, String)> {
    let row = find(rows, "latency", name)?;
    Some((pick(row.latency.as_ref()?), String::new()))
}

/// The targets table: one column per payload size, and whether each size
/// met the goal in this run.
pub(crate) fn markdown(sizes: &[SizeRows<'_>]) -> String {
    let mut s = String::from("| target |");
    for size in sizes {
        s.push_str(&format!(" {} B |", size.size));
    }
    s.push_str(" met? |\n|---|");
    for _ in sizes {
        s.push_str("--:|");
    }
    s.push_str("---|\n");
    for t in targets() {
        s.push_str(&format!("| {} |", t.what));
        let mut verdicts = Vec::new();
        for size in sizes {
            match (t.figure)(size.rows) {
                Some((x, suffix)) => {
                    let shown = match t.unit {
                        Unit::Ratio => format!("{:.2}×", x.abs()),
                        Unit::Micros => format!("{:.0} µs", x),
                    };
                    s.push_str(&format!(" {shown}{suffix} |"));
                    verdicts.push(match t.goal {
                        Goal::AtLeast(g) => Some(x >= g),
                        Goal::Below(g) => Some(x < g),
                        Goal::None => None,
                    });
                }
                None => {
                    s.push_str(" — |");
                    verdicts.push(None);
                }
            }
        }
        let met = verdicts.iter().filter(|v| **v == Some(true)).count();
        let judged = verdicts.iter().filter(|v| v.is_some()).count();
        let verdict = match (judged, met) {
            (0, _) => "—".to_string(),
            (j, m) if m == j => "✅".to_string(),
            (_, 0) => "❌".to_string(),
            (j, m) => format!("⚠️ {m} of {j}"),
        };
        s.push_str(&format!(" {verdict} |\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Kind;

    fn row(section: &'static str, name: &str, kind: Kind, msgs: u64, note: &str) -> Row {
        Row {
            section,
            name: name.into(),
            kind,
            messages: msgs,
            size: 16,
            secs: 1.0,
            runs: Vec::new(),
            latency: None,
            note: note.into(),
        }
    }

    #[test]
    fn loss_read_from_the_note_misses_the_target() {
        let rows = vec![
            row(
                PUBSUB,
                "redis-benchmark -P 64 -c 50 PUBLISH",
                Kind::Raw,
                1000,
                "",
            ),
            row(
                PUBSUB,
                "switchyard redis-pubsub cross-replica, 1 subscriber(s), 64 publisher(s)",
                Kind::Ours,
                900,
                "deliveries/s, end to end (publish alone: 1 msg/s); 100 of 1000 lost in transit (10.00 %, 100 announced)",
            ),
        ];
        let table = markdown(&[SizeRows {
            size: 16,
            rows: &rows,
        }]);
        let line = table
            .lines()
            .find(|l| l.contains("end to end"))
            .unwrap_or_default();
        assert!(line.contains("0.90×, 100 lost"), "{line}");
        assert!(line.ends_with("❌ |"), "{line}");
        let met = table.lines().filter(|l| l.ends_with("✅ |")).count();
        assert_eq!(met, 0, "{table}");
    }

    #[test]
    fn consume_rows_are_divided_by_the_xadd_limit() {
        let rows = vec![
            row(
                XADD,
                "redis-benchmark -P 64 -c 50 XADD",
                Kind::Raw,
                1000,
                "",
            ),
            row(XREAD, "redis-rs XREADGROUP COUNT 500", Kind::Raw, 500, ""),
            row(
                XREAD,
                "switchyard redis-streams, group of 1, consume + ack",
                Kind::Ours,
                400,
                "",
            ),
            row(
                XREAD,
                "switchyard redis-streams, group of 4, consume + ack",
                Kind::Ours,
                600,
                "",
            ),
        ];
        let table = markdown(&[SizeRows {
            size: 16,
            rows: &rows,
        }]);
        let line = |what: &str| {
            table
                .lines()
                .find(|l| l.contains(what))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("group of 4, consume").contains("| 0.60× |"), "{table}");
        assert!(line("group of 1 × raw").contains("| 0.80× |"), "{table}");
    }
}
