//! Property tests of the facade's URL handling (`switchyard::connect`):
//! scheme parsing, adapter choice and the password safety net.
//!
//! Properties: no panic on any input; the error kind follows the scheme;
//! a password never shows in an error. No case dials anything: Redis URLs
//! here are broken before the host matters (refused by the adapter's URL
//! parser, or by a feature that is off).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switchyard::Error;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The scheme as `connect` reads it, lowercase.
fn scheme_of(s: &str) -> Option<String> {
    s.trim()
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
}

fn connect_err(url: &str) -> Option<Error> {
    block_on(switchyard::connect(url)).err()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn connect_never_panics(s in "\\PC{0,64}") {
        // A Redis scheme would dial the host it names.
        prop_assume!(!scheme_of(&s).is_some_and(|x| x.starts_with("redis")));
        let _ = connect_err(&s);
    }

    #[test]
    fn the_scheme_decides_the_error(
        scheme in "[a-zA-Z][a-zA-Z0-9+.\\-]{0,10}|[0-9+.\\-][a-z]{0,4}|",
        rest in "[a-z0-9.:]{0,12}",
        sep in prop_oneof![Just("://"), Just(":/"), Just(":"), Just("")],
    ) {
        let lower = scheme.to_ascii_lowercase();
        prop_assume!(!lower.starts_with("redis"));
        let url = format!("{scheme}{sep}{rest}");
        let err = connect_err(&url);
        let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if sep != "://" || url.trim().is_empty() || !valid_scheme {
            prop_assert!(matches!(err, Some(Error::InvalidUrl { .. })), "{}: {:?}", url, err);
        } else if lower == "memory" {
            // memory://NAME with a name of letters, digits, '.', ':' -> ':' is refused.
            prop_assert_eq!(err.is_none(), !rest.contains(':'), "{}: {:?}", url, err);
        } else {
            prop_assert!(matches!(err, Some(Error::UnknownScheme { .. })), "{}: {:?}", url, err);
        }
    }

    #[test]
    fn password_never_shows(
        scheme in prop_oneof![
            Just("memory"), Just("MEMORY"), Just("kafka"), Just("redis+streams"),
            Just("rediss+pubsub"), Just("REDIS+PUBSUB"), Just("nats"),
        ],
        secret in "[!-~]{0,12}",
        // Each of these breaks a Redis URL before any connection attempt.
        broken in prop_oneof![Just("/notadb"), Just("?nope=1"), Just(":port"), Just("?namespace=a%20b")],
    ) {
        let password = format!("Zq7{secret}");
        let url = format!("{scheme}://app:{password}@127.0.0.1{broken}");
        let err = connect_err(&url).expect("every one of these URLs is refused");
        let shown = format!("{err} {err:?}");
        prop_assert!(!shown.contains(&password), "{} shows {}", url, shown);
    }
}
