//! Small readers of Redis replies for the inspecting commands (`topics`,
//! `dlq`, `doctor`): field maps of XINFO replies, INFO sections, SCAN.

use std::collections::HashMap;

use switchyard_redis::redis::{self, Value, aio::ConnectionLike, aio::MultiplexedConnection};

use super::support::redis_conn;

/// A reply that is a map (RESP3) or a flat `[field, value, ...]` array
/// (RESP2) as a map by field name; anything else is empty.
pub(crate) fn map(v: Value) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    match v {
        Value::Map(kv) => {
            for (k, v) in kv {
                if let Some(k) = text(&k) {
                    out.insert(k, v);
                }
            }
        }
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = text(&k) {
                    out.insert(k, v);
                }
            }
        }
        _ => {}
    }
    out
}

/// A string or number reply as text.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// An integer reply (or a string holding one).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.trim().parse().ok()),
    }
}

/// The server's clock in milliseconds (TIME).
pub(crate) async fn now_ms<C: ConnectionLike + Send>(conn: &mut C) -> anyhow::Result<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .map_err(|e| redis_conn::failed("TIME", &e))?;
    Ok(secs.saturating_mul(1000).saturating_add(micros / 1000))
}

/// One INFO section as `field -> value`.
pub(crate) async fn info(
    conn: &mut MultiplexedConnection,
    section: &str,
) -> Result<HashMap<String, String>, redis::RedisError> {
    let raw: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    Ok(raw
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// `1234` ms as `1.2s`, `3m 4s`, `2h 5m`, `3d 1h`.
pub(crate) fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_from_flat_arrays_and_maps() {
        let flat = Value::Array(vec![
            Value::BulkString(b"length".to_vec()),
            Value::Int(3),
            Value::SimpleString("name".into()),
            Value::BulkString(b"g".to_vec()),
        ]);
        let m = map(flat);
        assert_eq!(m.get("length").and_then(int), Some(3));
        assert_eq!(m.get("name").and_then(text).as_deref(), Some("g"));
        let resp3 = Value::Map(vec![(Value::SimpleString("lag".into()), Value::Int(0))]);
        assert_eq!(map(resp3).get("lag").and_then(int), Some(0));
        assert!(map(Value::Nil).is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(human_ms(1234), "1.2s");
        assert_eq!(human_ms(61_000), "1m 1s");
        assert_eq!(human_ms(3_660_000), "1h 1m");
        assert_eq!(human_ms(90_000_000), "1d 1h");
    }
}
