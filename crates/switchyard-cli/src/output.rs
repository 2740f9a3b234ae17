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

/// Writes `error: <message>` as one line to stderr.
pub(crate) fn error_line(message: &str) {
    let one_line = message.replace(['\n', '\r'], " ");
    let _ = writeln!(std::io::stderr().lock(), "error: {one_line}");
}
