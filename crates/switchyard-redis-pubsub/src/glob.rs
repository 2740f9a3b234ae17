//! The Redis glob the backplane subscribes with for a pattern filter
//! (`PSUBSCRIBE`), which is also the exact channel rule an ACL user needs
//! for it (docs/security.md).

use switchyard_core::Pattern;

/// The Redis glob for a pattern filter: `*` (one segment) and `>`/`**`
/// (the rest) both become `*`, which Redis matches across separators too,
/// so every received message is checked again with [`Pattern::matches`].
pub(crate) fn pattern_glob(namespace: &str, pattern: &Pattern) -> String {
    pattern_channel(namespace, pattern)
}

/// The `PSUBSCRIBE` pattern the backplane sends for `pattern` in
/// `namespace` (`app` and `orders.*` give `app:orders.*`). Redis matches a
/// pattern subscription literally against the ACL user's channel rules, so
/// allowing it takes exactly this text as a rule (`&app:orders.*`) or
/// `&*`; see docs/security.md.
///
/// ```
/// use switchyard_core::Pattern;
/// use switchyard_redis_pubsub::pattern_channel;
/// assert_eq!(pattern_channel("app", &Pattern::new("orders.*")?), "app:orders.*");
/// assert_eq!(pattern_channel("app", &Pattern::new("fleet.>")?), "app:fleet.*");
/// # Ok::<(), switchyard_core::Error>(())
/// ```
pub fn pattern_channel(namespace: &str, pattern: &Pattern) -> String {
    let mut out = String::with_capacity(namespace.len() + 1 + pattern.as_str().len());
    switchyard_redis::push_glob_escaped(&mut out, namespace);
    out.push(':');
    let source = pattern.as_str();
    let mut start = 0;
    for (i, c) in source.char_indices().chain([(source.len(), '\0')]) {
        if i < source.len() && c != '.' && c != '/' {
            continue;
        }
        match &source[start..i] {
            "*" | ">" | "**" => out.push('*'),
            literal => switchyard_redis::push_glob_escaped(&mut out, literal),
        }
        if i < source.len() {
            out.push(c);
        }
        start = i + 1;
    }
    out
}
