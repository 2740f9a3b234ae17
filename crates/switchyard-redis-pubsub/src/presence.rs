//! `Transport::subscribers`: who listens on a topic — this replica's
//! subscribers, and the replicas subscribed to the topic's channel
//! (`PUBSUB NUMSUB`, or `PUBSUB SHARDNUMSUB` of its partition channel on a
//! cluster), asked on a connection of its own within `probe_timeout`.

use switchyard_core::{Error, Result, Topic};
use switchyard_redis::redis::{self, Value};

use crate::config::channel_name;
use crate::shared::Shared;

/// How many subscribing connections (replicas) hold `topic`'s channel now.
/// On a cluster that is its partition's channel: replicas subscribed to
/// any topic of the partition count.
pub(crate) async fn remote_count(shared: &Shared, topic: &Topic) -> Result<u64> {
    let timeout = shared.config.probe_timeout;
    let (channel, sub) = match &shared.partitions {
        Some(parts) => (parts.channel_of(topic.as_str()).to_owned(), "SHARDNUMSUB"),
        None => (
            channel_name(&shared.config.redis.namespace, topic.as_str()),
            "NUMSUB",
        ),
    };
    let node = shared.client.config_for_key(channel.as_bytes()).await?;
    let client = switchyard_redis::RedisClient::new(node)?;
    let ask = async {
        let mut conn = client.dedicated(Some(timeout)).await?;
        let reply: Value = redis::cmd("PUBSUB")
            .arg(sub)
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                let what = format!("PUBSUB {sub}");
                if switchyard_redis::denied::is_noperm(&e) {
                    switchyard_redis::denied::permission_denied(&what, &e.to_string())
                } else {
                    switchyard_redis::classify(&what, &e)
                }
            })?;
        count_of(&reply).ok_or_else(|| {
            Error::Backend(format!("redis PUBSUB {sub}: unexpected reply {reply:?}"))
        })
    };
    tokio::time::timeout(
        timeout.saturating_add(shared.config.redis.connect_timeout),
        ask,
    )
    .await
    .map_err(|_| Error::Timeout {
        operation: format!("redis PUBSUB {sub}"),
        after: timeout,
    })?
}

/// The count of `[channel, count]` (RESP2 array or RESP3 map).
fn count_of(reply: &Value) -> Option<u64> {
    let n = match reply {
        Value::Array(items) => items.get(1)?,
        Value::Map(pairs) => &pairs.first()?.1,
        _ => return None,
    };
    match n {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        let reply = Value::Array(vec![Value::BulkString(b"ns:t".to_vec()), Value::Int(3)]);
        assert_eq!(count_of(&reply), Some(3));
        assert_eq!(count_of(&Value::Int(3)), None);
        assert_eq!(count_of(&Value::Array(vec![])), None);
        let negative = Value::Array(vec![Value::BulkString(b"c".to_vec()), Value::Int(-1)]);
        assert_eq!(count_of(&negative), None);
    }
}
