//! The text of a Redis URL: its shape, percent-decoding, namespaces and
//! durations.

use std::time::Duration;

use switchyard_core::{Error, Result};

/// Refuses, before any parsing, the shapes in which a URL parser would take
/// part of a password for the host, port, path or query: no `//` after the
/// scheme, or a raw `/`, `?` or `#` before the last `@`. The messages quote
/// nothing of the URL but its redacted form.
pub(crate) fn check_shape(input: &str) -> Result<()> {
    let Some((scheme, rest)) = input.split_once(':') else {
        return Err(Error::invalid_url(
            input,
            "expected redis+streams://host[:port] or redis+pubsub://host[:port]",
        ));
    };
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(Error::invalid_url(
            input,
            format!("expected {scheme}://host[:port]: the '//' after the scheme is missing"),
        ));
    };
    if let Some(at) = rest.rfind('@')
        && rest[..at].contains(['/', '?', '#'])
    {
        return Err(Error::invalid_url(
            input,
            "the part before the last '@' (user name and password) contains a raw '/', '?' or '#': \
             percent-encode them in the password (/ as %2F, ? as %3F, # as %23)",
        ));
    }
    Ok(())
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `host[:port]` (or `[v6]:port`) of a URL's host list; `what` names
/// it in errors (`"sentinel address"`, `"cluster node"`), `default_port`
/// applies when the port is left out.
pub(crate) fn parse_host_port(
    input: &str,
    what: &str,
    part: &str,
    default_port: u16,
) -> Result<(String, u16)> {
    let bad = |why: &str| Error::invalid_url(input, format!("{what} {part:?}: {why}"));
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("no closing ']'"))?;
        (h, after.strip_prefix(':'))
    } else {
        match part.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (part, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is empty: give host:port, separated by ','"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port must be 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Checks a namespace: 1 to 64 bytes of ASCII letters, digits, `-`, `_`, `.`, `:`.
pub fn validate_namespace(ns: &str) -> std::result::Result<(), String> {
    if ns.is_empty() || ns.len() > 64 {
        return Err(format!("namespace must be 1 to 64 bytes, got {}", ns.len()));
    }
    if let Some(c) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "namespace {ns:?} contains {c:?}: use ASCII letters, digits, '-', '_', '.', ':'"
        ));
    }
    Ok(())
}

/// Parses `250ms`, `2s`, `1m`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "ms"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 250ms, 2s or 1m, got {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("unknown unit {unit:?} in {s:?}: use ms, s or m")),
    }
}

/// Appends `literal` to a Redis glob (`SCAN MATCH`, `PSUBSCRIBE`) with the
/// glob's special characters (`* ? [ ] \`) escaped, so it matches only
/// itself. Shared by the Streams key scans and the backplane's patterns.
pub fn push_glob_escaped(glob: &mut String, literal: &str) {
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            glob.push('\\');
        }
        glob.push(c);
    }
}
