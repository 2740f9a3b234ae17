//! Process, path and text helpers shared by the server and sentinel code:
//! executable lookup, free ports, config quoting, log tails, `INFO` fields,
//! URL encoding and deadline polling.

use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::TestkitError;

/// How often readiness, exit and other conditions are polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Looks up an executable on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(name, &env::var_os("PATH")?)
}

/// Looks up an executable in a `PATH`-style list of directories.
pub(crate) fn find_in(name: &str, path: &OsStr) -> Option<PathBuf> {
    env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Picks a free loopback port by binding port 0 and releasing it.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to pick a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the picked port", e))?
        .port();
    Ok(port)
}

/// Quotes a config value the way `sdssplitargs` (Redis' config parser) reads
/// it back.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for byte in value.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            other => {
                let _ = write!(out, "\\x{other:02x}");
            }
        }
    }
    out.push('"');
    out
}

/// Kills the child (SIGKILL) and reaps it.
pub(crate) fn kill_child(child: &mut Child) {
    if let Err(e) = child.kill() {
        tracing::debug!(error = %e, "killing the server process");
    }
    if let Err(e) = child.wait() {
        tracing::debug!(error = %e, "waiting for the server process");
    }
}

/// Polls for the child's exit until `timeout`; true if it exited.
pub(crate) fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Ok(Some(value))`
/// or `timeout` passes. `Ok(None)` and `Err` mean "not yet"; on timeout the
/// error says `what` was awaited and the last `Err` (or `Ok(None)`) seen.
pub(crate) fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>, TestkitError>,
) -> Result<T, TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => String::from("condition not met yet"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(TestkitError::Timeout(format!(
                "{what}: not reached within {timeout:?} (last check: {last})"
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The last lines (at most 4 KiB) of the file at `path` written since byte
/// `from`.
pub(crate) fn log_tail(path: &Path, from: u64) -> String {
    const TAIL_BYTES: u64 = 4096;
    let Ok(mut file) = File::open(path) else {
        return "(no log file)".into();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(TAIL_BYTES));
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
        return "(log file unreadable)".into();
    }
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim_end();
    if text.is_empty() {
        "(log is empty)".into()
    } else {
        text.to_owned()
    }
}

/// The value of `name:value` in an `INFO` reply.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_special_characters() {
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b\"c\\"), "\"a b\\\"c\\\\\"");
        assert_eq!(quote("x\ny"), "\"x\\x0ay\"");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        assert_eq!(percent_encode("plain-1.2_~"), "plain-1.2_~");
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "process_id"), Some("42"));
        assert_eq!(info_field(info, "redis"), None);
    }

    #[test]
    fn finds_only_executables() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("redis-server");
        fs::write(&file, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_in("redis-server", dir.path().as_os_str()), None);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in("redis-server", dir.path().as_os_str()), Some(file));
    }

    #[test]
    fn free_ports_are_loopback_and_nonzero() {
        assert_ne!(free_port().unwrap(), 0);
    }

    #[test]
    fn poll_until_returns_the_value_or_names_the_condition() {
        let mut calls = 0;
        let value = poll_until(Duration::from_secs(5), "third call", || {
            calls += 1;
            Ok((calls == 3).then_some(calls))
        })
        .unwrap();
        assert_eq!(value, 3);
        let err = poll_until::<()>(Duration::from_millis(50), "never", || {
            Err(TestkitError::NotRunning)
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TestkitError::Timeout(_)), "{text}");
        assert!(
            text.contains("never") && text.contains("not running"),
            "{text}"
        );
    }
}
