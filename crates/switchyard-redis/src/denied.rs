//! Permission denials (`NOPERM`): recognising them, turning them into
//! errors that name the command and the missing permission, and keeping
//! the latest one for `health()`.
//!
//! A `NOPERM` reply means the ACL user may not run a command (or touch a
//! key or channel). No retry can fix that, so it is never transient, never
//! swallowed, and the adapters report it through `health()` as
//! `permission denied: …` instead of blaming reachability. See
//! `docs/security.md` for the ACL lines each adapter needs.

use std::sync::Mutex;

use redis::RedisError;
use switchyard_core::Error;

/// Whether `e` is a `NOPERM` reply (a command, key or channel the ACL user
/// may not use), directly or from inside a Lua script.
pub fn is_noperm(e: &RedisError) -> bool {
    e.code() == Some("NOPERM") || is_noperm_text(&e.to_string())
}

/// What Redis 7.0 answers when a script runs a command its user may not
/// run (`ERR The user executing the script can't run this command or
/// subcommand`): a `NOPERM` in all but name.
pub const SCRIPT_DENIAL: &str = "user executing the script can't run";

/// What Valkey 8 answers for the same (`ERR ACL failure in script: User u
/// has no permissions to run the 'xinfo|consumers' command`).
pub const SCRIPT_ACL_FAILURE: &str = "ACL failure in script";

/// Whether an error text carries a `NOPERM` reply, or a denial of a
/// command inside a script ([`SCRIPT_DENIAL`], [`SCRIPT_ACL_FAILURE`]).
pub fn is_noperm_text(text: &str) -> bool {
    text.contains("NOPERM") || text.contains(SCRIPT_DENIAL) || text.contains(SCRIPT_ACL_FAILURE)
}

/// Whether a `NOPERM` text denies a whole command (`no permissions to run
/// the 'psubscribe' command`, or a script's `can't run this command`)
/// rather than one key or channel (`no permissions to access one of the
/// channels used as arguments`): every later use of the command fails too.
pub fn is_command_denial(text: &str) -> bool {
    is_noperm_text(text) && (text.contains("to run the") || text.contains(SCRIPT_DENIAL))
}

/// The text of a denial of `command` (`"XINFO CONSUMERS"`, say) with
/// Redis' reply `reply`: what failed and what to grant.
pub fn denial_text(command: &str, reply: &str) -> String {
    let grant = format!("+{}", command.to_ascii_lowercase().replace(' ', "|"));
    denial_text_granting(command, &grant, reply)
}

/// Like [`denial_text`] for an operation that is not one command (a Lua
/// script): `grant` lists what to allow (`"+xpending +xrange +xclaim"`).
pub fn denial_text_granting(what: &str, grant: &str, reply: &str) -> String {
    format!(
        "redis refused {what} ({}): grant the ACL user {grant} and access to the namespace's keys or channels (ACL SETUSER <user> {grant}; see docs/security.md)",
        reply.trim().replace('\n', " ")
    )
}

/// A non-retried [`Error::Backend`] for a denied `command`, starting with
/// `permission denied:`.
pub fn permission_denied(command: &str, reply: &str) -> Error {
    Error::Backend(format!(
        "permission denied: {}",
        denial_text(command, reply)
    ))
}

/// The latest permission denial a transport ran into, for `health()`.
///
/// It stays reported until the transport is closed: a permission is fixed
/// by changing the ACL user, not by waiting.
#[derive(Debug, Default)]
pub struct Denials {
    last: Mutex<Option<String>>,
}

impl Denials {
    /// No denial yet.
    pub fn new() -> Self {
        Denials::default()
    }

    /// Records a denial of `command` with Redis' `reply`; returns its text
    /// (see [`denial_text`]).
    pub fn record(&self, command: &str, reply: &str) -> String {
        let text = denial_text(command, reply);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(text.clone());
        }
        text
    }

    /// Records a denial of `what` (a script, say) whose fix is `grant`
    /// (see [`denial_text_granting`]); returns its text.
    pub fn record_granting(&self, what: &str, grant: &str, reply: &str) -> String {
        let text = denial_text_granting(what, grant, reply);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(text.clone());
        }
        text
    }

    /// The latest denial's text, if any.
    pub fn latest(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// `Some("permission denied: …")` once a denial was recorded: the
    /// reason `health()` reports.
    pub fn health_reason(&self) -> Option<String> {
        self.latest().map(|t| format!("permission denied: {t}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_command_and_the_grant() {
        let d = Denials::new();
        assert_eq!(d.health_reason(), None);
        let t = d.record(
            "XINFO CONSUMERS",
            "NOPERM this user has no permissions to run the 'xinfo|consumers' command",
        );
        assert!(t.contains("+xinfo|consumers"), "{t}");
        let h = d.health_reason().unwrap_or_default();
        assert!(
            h.starts_with("permission denied: redis refused XINFO CONSUMERS"),
            "{h}"
        );
        let e = permission_denied("XADD", "NOPERM no");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert!(is_noperm_text("ERR x NOPERM y"));
        assert!(!is_noperm_text("NOGROUP"));
        assert!(is_command_denial(
            "ERR ACL failure in script: User u has no permissions to run the 'xinfo|consumers' command"
        ));
        assert!(is_command_denial(
            "NOPERM this user has no permissions to run the 'psubscribe' command"
        ));
        assert!(!is_command_denial(
            "NOPERM this user has no permissions to access one of the channels used as arguments"
        ));
        assert!(is_noperm_text(
            "ERR The user executing the script can't run this command or subcommand script: 63, on @user_script:1."
        ));
    }
}
