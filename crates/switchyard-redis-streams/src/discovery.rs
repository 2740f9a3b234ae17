//! Which streams a subscription reads: the fixed topics of an exact or list
//! filter, or the streams matching a pattern, found with `SCAN` (never
//! `KEYS`) at subscribe time and then every `pattern_rescan`.

use std::collections::HashSet;
use std::sync::Arc;

use switchyard_core::{Pattern, Result, Topic, TopicFilter};
use switchyard_redis::SharedConnection;
use tokio::sync::watch;

use crate::inner::{Inner, WarnLimiter, wait_shutdown};
use crate::keys;

/// Upper bound on SCAN round trips of one discovery pass (a safety net;
/// a pass normally ends when the cursor returns to 0).
const MAX_SCAN_CALLS: usize = 100_000;

/// The topics a reader follows. For a pattern, the set only grows: a
/// background task rescans every `pattern_rescan` and publishes the new
/// set; the task ends with the transport or when every `TopicSource` of it
/// is dropped.
pub(crate) struct TopicSource {
    kind: Kind,
}

enum Kind {
    Fixed(Arc<Vec<Topic>>),
    Pattern(watch::Receiver<Arc<Vec<Topic>>>),
}

impl TopicSource {
    /// Opens the source for `filter`. For a pattern this runs the first
    /// scan before returning, so streams that exist at subscribe time are
    /// in [`current`](Self::current) right away.
    pub(crate) async fn open(inner: &Arc<Inner>, filter: &TopicFilter) -> Result<Self> {
        let pattern = match filter {
            TopicFilter::Pattern(p) => p.clone(),
            other => {
                let topics = other.topics().map(<[Topic]>::to_vec).unwrap_or_default();
                return Ok(TopicSource {
                    kind: Kind::Fixed(Arc::new(topics)),
                });
            }
        };
        let mut conn = inner.conn.clone();
        let ns = inner.namespace().to_owned();
        let found = scan(&mut conn, &ns, &pattern).await?;
        let mut seen: HashSet<Topic> = HashSet::new();
        let mut list = Vec::new();
        for t in found {
            if seen.insert(t.clone()) {
                list.push(t);
            }
        }
        let (tx, rx) = watch::channel(Arc::new(list));
        let interval = inner.config.pattern_rescan;
        let mut shutdown = inner.shutdown_signal();
        tokio::spawn(async move {
            let warn = WarnLimiter::default();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = tx.closed() => return,
                    () = wait_shutdown(&mut shutdown) => return,
                }
                match scan(&mut conn, &ns, &pattern).await {
                    Ok(found) => {
                        let new: Vec<Topic> = found
                            .into_iter()
                            .filter(|t| seen.insert(t.clone()))
                            .collect();
                        if !new.is_empty() {
                            tracing::debug!(pattern = %pattern, new = new.len(), "discovered streams");
                            tx.send_modify(|topics| {
                                let mut all = Vec::with_capacity(topics.len() + new.len());
                                all.extend(topics.iter().cloned());
                                all.extend(new);
                                *topics = Arc::new(all);
                            });
                        }
                    }
                    Err(e) => {
                        if let Some(suppressed) = warn.check() {
                            tracing::warn!(pattern = %pattern, error = %e, suppressed, "pattern discovery scan failed; retrying");
                        }
                    }
                }
            }
        });
        Ok(TopicSource {
            kind: Kind::Pattern(rx),
        })
    }

    /// A source of exactly `topics`, never growing.
    pub(crate) fn fixed(topics: Vec<Topic>) -> Self {
        TopicSource {
            kind: Kind::Fixed(Arc::new(topics)),
        }
    }

    /// The topics known now (for a pattern: every stream found so far).
    /// Marks the current set as seen for [`changed`](Self::changed).
    pub(crate) fn current(&mut self) -> Arc<Vec<Topic>> {
        match &mut self.kind {
            Kind::Fixed(t) => t.clone(),
            Kind::Pattern(rx) => rx.borrow_and_update().clone(),
        }
    }

    /// Waits until the set grew. Never resolves for fixed topics, nor after
    /// discovery ended.
    pub(crate) async fn changed(&mut self) {
        match &mut self.kind {
            Kind::Fixed(_) => std::future::pending().await,
            Kind::Pattern(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Whether this follows a pattern.
    pub(crate) fn is_pattern(&self) -> bool {
        matches!(self.kind, Kind::Pattern(_))
    }
}

/// One full `SCAN ... MATCH ... TYPE stream` pass: the matching topics.
async fn scan(conn: &mut SharedConnection, ns: &str, pattern: &Pattern) -> Result<Vec<Topic>> {
    let keys = scan_everywhere(conn, &keys::scan_match(ns, pattern)).await?;
    Ok(keys
        .iter()
        .filter_map(|k| keys::topic_of_key(ns, k))
        .filter(|t| pattern.matches(t.as_str()))
        .collect())
}

/// Every stream key matching `glob` on the server, or on a cluster on
/// every master (the slot map is fetched again first, so masters added
/// since the last pass are scanned too).
pub(crate) async fn scan_everywhere(
    conn: &mut SharedConnection,
    glob: &str,
) -> Result<Vec<String>> {
    let Some(router) = conn.client().router().cloned() else {
        return scan_stream_keys(conn, glob).await;
    };
    router.refresh().await?;
    let mut out = Vec::new();
    for master in router.masters().await? {
        let Some(mut node) = conn.to_node(&master.host, master.port) else {
            continue;
        };
        out.extend(scan_stream_keys(&mut node, glob).await?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Every stream key matching the SCAN glob `glob`, in one full pass (at
/// most `MAX_SCAN_CALLS` round trips).
pub(crate) async fn scan_stream_keys<C>(conn: &mut C, glob: &str) -> Result<Vec<String>>
where
    C: redis::aio::ConnectionLike + Send,
{
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    for _ in 0..MAX_SCAN_CALLS {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(glob)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream")
            .query_async(conn)
            .await
            .map_err(|e| crate::catalog::failed("SCAN", &e))?;
        out.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(out)
}
