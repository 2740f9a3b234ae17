//! Small helpers of the inspecting commands (`topics`, `doctor`): INFO
//! sections, human-readable durations.

use std::collections::HashMap;

use switchyard_redis::redis::{self, aio::MultiplexedConnection};

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
    fn durations() {
        assert_eq!(human_ms(1234), "1.2s");
        assert_eq!(human_ms(61_000), "1m 1s");
        assert_eq!(human_ms(3_660_000), "1h 1m");
        assert_eq!(human_ms(90_000_000), "1d 1h");
    }
}
