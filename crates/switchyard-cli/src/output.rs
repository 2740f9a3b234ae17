//! Writing to stdout and stderr without panicking on a closed pipe.

use std::io::Write;

/// Writes `text` to stdout. A closed pipe (`switchyard demo | head -1`) is
/// not an error worth reporting.
pub(crate) fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `error: <message>` as one line to stderr, with any password of a
/// URL given on the command line or in `SWITCHYARD_URL` scrubbed out (a
/// safety net: messages redact URLs already).
pub(crate) fn error_line(message: &str) {
    let one_line = scrub_secrets(&message.replace(['\n', '\r'], " "));
    let _ = writeln!(std::io::stderr().lock(), "error: {one_line}");
}

/// `text` with what `redact_url` hides in every URL-looking command-line
/// argument (also a `--url=` value, or a URL given where another argument
/// was expected) and in `SWITCHYARD_URL` replaced by `***`.
pub(crate) fn scrub_secrets(text: &str) -> String {
    let from_env = std::env::var(switchyard::URL_ENV).ok();
    std::env::args()
        .skip(1)
        .chain(from_env)
        .filter_map(|arg| url_like(&arg).map(str::to_owned))
        .fold(text.to_owned(), |out, url| {
            switchyard::scrub_url_secret(&out, &url)
        })
}

/// The URL in a command-line argument, if it looks like one.
fn url_like(arg: &str) -> Option<&str> {
    let arg = arg.strip_prefix("--url=").unwrap_or(arg).trim();
    let lower = arg.to_ascii_lowercase();
    let url = arg.contains("://")
        || ["redis", "memory"]
            .iter()
            .any(|scheme| lower.starts_with(scheme));
    url.then_some(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_like_arguments() {
        assert_eq!(url_like("--url=redis://a:b@h"), Some("redis://a:b@h"));
        assert_eq!(url_like("REDIS+streams:a:b@h"), Some("REDIS+streams:a:b@h"));
        assert_eq!(url_like("x://y"), Some("x://y"));
        assert_eq!(url_like("user@host"), None);
        assert_eq!(url_like("pub"), None);
    }
}
