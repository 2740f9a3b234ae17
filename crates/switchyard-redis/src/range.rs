//! Range checks of numeric settings, shared by both Redis adapters so that
//! one value means the same on both, with one message shape:
//! `<name> must be <range>, got <value> (<where it came from>)`.

use std::fmt;
use std::time::Duration;

use switchyard_core::Error;

/// A setting outside its documented range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// The setting's name, as in the URL (`writer_batch`, `connect_timeout`).
    pub setting: &'static str,
    /// `<name> must be <range>, got <value>`.
    pub message: String,
}

/// Where a checked configuration came from, named in the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Parsed from a URL: the error names the URL parameter.
    Url,
    /// Built in code: the error says so.
    Builder,
}

impl OutOfRange {
    /// The [`Error::InvalidConfig`] for this setting, saying where it came from.
    pub fn into_error(self, origin: Origin) -> Error {
        let from = match origin {
            Origin::Url => format!("url parameter {}", self.setting),
            Origin::Builder => "set in code".to_owned(),
        };
        Error::InvalidConfig(format!("{} ({from})", self.message))
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks that `value` lies in `min..=max`; `range` is how the docs write it
/// (`"1ms to 24h"`).
pub fn check_duration(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
    range: &str,
) -> Result<(), OutOfRange> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(OutOfRange {
        setting,
        message: format!("{setting} must be {range}, got {value:?}"),
    })
}

/// Checks that the count `value` lies in `min..=max`.
pub fn check_count<T>(setting: &'static str, value: T, min: T, max: T) -> Result<(), OutOfRange>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if value >= min && value <= max {
        return Ok(());
    }
    Err(OutOfRange {
        setting,
        message: format!("{setting} must be {min} to {max}, got {value}"),
    })
}

/// 1 ms, the shortest timeout or interval any setting accepts.
pub const MILLISECOND: Duration = Duration::from_millis(1);
/// 1 minute.
pub const MINUTE: Duration = Duration::from_secs(60);
/// 1 hour.
pub const HOUR: Duration = Duration::from_secs(60 * 60);
/// 24 hours.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let e = check_count("writer_batch", 0usize, 1, 100_000).unwrap_err();
        assert_eq!(e.to_string(), "writer_batch must be 1 to 100000, got 0");
        assert_eq!(
            e.clone().into_error(Origin::Url).to_string(),
            "invalid configuration: writer_batch must be 1 to 100000, got 0 (url parameter writer_batch)"
        );
        assert_eq!(
            e.into_error(Origin::Builder).to_string(),
            "invalid configuration: writer_batch must be 1 to 100000, got 0 (set in code)"
        );
        let e = check_duration("block", Duration::MAX, MILLISECOND, MINUTE, "1ms to 1m");
        assert!(
            e.unwrap_err()
                .message
                .starts_with("block must be 1ms to 1m, got ")
        );
        assert!(check_duration("block", MINUTE, MILLISECOND, MINUTE, "").is_ok());
        assert!(check_count("n", u64::MAX, 1, u64::MAX).is_ok());
    }
}
