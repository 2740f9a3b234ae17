//! Property tests of switchyard-redis' parsers: the lean RESP2 tokenizer
//! (bytes from the server) and `RedisConfig::from_url` (text from users).
//!
//! Properties: no panic on any input; what the encoders write reads back
//! equal; a URL's password never shows in an error's or a config's
//! `Display`/`Debug`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switchyard_redis::RedisConfig;
use switchyard_redis::lean::{self, Token};

/// Every token of `buf` until more bytes are needed or an error.
fn tokens(buf: &[u8], max_bulk: usize) -> (Vec<Token<'_>>, usize, bool) {
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        match lean::next_token(&buf[pos..], max_bulk) {
            Ok(Some((t, used))) => {
                assert!(used > 0 && used <= buf.len() - pos, "used {used}");
                out.push(t);
                pos += used;
            }
            Ok(None) => return (out, pos, false),
            Err(_) => return (out, pos, true),
        }
    }
}

/// Regression: a buffer starting with `\r\n` (a corrupted stream, or a
/// reply split right after a frame) made `next_token` slice `buf[1..0]`
/// and panic ("slice index starts at 1 but ends at 0"); found by the
/// `resp-token` fuzz target on input `*4\r\n\r\n...`. It is a protocol
/// error now.
#[test]
fn a_buffer_starting_with_crlf_is_an_error_not_a_panic() {
    assert!(lean::next_token(b"\r\n", 16).is_err());
    assert!(lean::next_token(b"\r\n+OK\r\n", 16).is_err());
    let (toks, _, failed) = tokens(b"*4\r\n\r\n+PONG\r\n", 16);
    assert_eq!(toks, vec![Token::Array(4)]);
    assert!(failed);
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn next_token_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..2048) {
        let _ = tokens(&buf, max);
    }

    #[test]
    fn next_token_never_panics_on_resp_like_bytes(
        buf in proptest::collection::vec(
            prop_oneof![
                Just(b'\r'), Just(b'\n'), Just(b'*'), Just(b'$'), Just(b':'), Just(b'+'),
                Just(b'-'), Just(b'0'), Just(b'1'), Just(b'9'), any::<u8>()
            ],
            0..256,
        )
    ) {
        let _ = tokens(&buf, 64);
    }

    #[test]
    fn commands_read_back_as_tokens(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
        let mut out = Vec::new();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        lean::put_command(&mut out, &refs);
        let (toks, used, failed) = tokens(&out, 64);
        prop_assert!(!failed);
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(toks.len(), args.len() + 1);
        prop_assert_eq!(toks[0], Token::Array(args.len()));
        for (t, a) in toks[1..].iter().zip(&args) {
            prop_assert_eq!(*t, Token::Bulk(a));
        }
        // Every strict prefix needs more bytes, or is a complete prefix of tokens.
        for cut in 0..out.len() {
            let (_, used, failed) = tokens(&out[..cut], 64);
            prop_assert!(!failed, "prefix {} failed", cut);
            prop_assert!(used <= cut);
        }
    }

    #[test]
    fn put_uint_reads_back(n in any::<u64>()) {
        let mut out = Vec::new();
        lean::put_uint(&mut out, n);
        prop_assert_eq!(std::str::from_utf8(&out).unwrap().parse::<u64>().unwrap(), n);
    }

    #[test]
    fn from_url_never_panics(s in "\\PC{0,80}") {
        let _ = RedisConfig::from_url(&s);
    }

    #[test]
    fn from_url_never_panics_on_url_like_text(
        s in "(redis|rediss|redis\\+streams|REDIS\\+pubsub|memory)(://)?([a-z:%@]{0,12}@)?[a-z0-9.:\\[\\]]{0,20}(/[0-9a-z-]{0,4})?(\\?[a-z_]{0,16}=[a-z0-9%]{0,8}(&[a-z_]{0,16}=[0-9a-z]{0,5}){0,3})?"
    ) {
        let _ = RedisConfig::from_url(&s);
    }

    /// Components written into a URL read back equal.
    #[test]
    fn url_components_round_trip(
        tls in any::<bool>(),
        adapter in prop_oneof![Just(""), Just("+streams"), Just("+pubsub")],
        host in "[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,10}){0,2}",
        port in 1u16..,
        db in 0i64..10_000,
        user in proptest::option::of("[a-zA-Z0-9_\\-]{1,12}"),
        password in proptest::option::of("\\PC{1,24}"),
        namespace in "[a-zA-Z0-9_.:\\-]{1,64}",
        timeout_ms in 1u64..=600_000,
    ) {
        let userinfo = match (&user, &password) {
            (Some(u), Some(p)) => format!("{u}:{}@", encode(p)),
            (Some(u), None) => format!("{u}@"),
            (None, Some(p)) => format!(":{}@", encode(p)),
            (None, None) => String::new(),
        };
        let scheme = if tls { "rediss" } else { "redis" };
        let url = format!(
            "{scheme}{adapter}://{userinfo}{host}:{port}/{db}?namespace={namespace}&connect_timeout={timeout_ms}ms"
        );
        let cfg = RedisConfig::from_url(&url).unwrap();
        prop_assert_eq!(&cfg.host, &host);
        prop_assert_eq!(cfg.port, port);
        prop_assert_eq!(cfg.db, db);
        prop_assert_eq!(cfg.tls, tls);
        prop_assert_eq!(&cfg.username, &user);
        prop_assert_eq!(cfg.password.as_ref().map(|p| p.expose().to_owned()), password.clone());
        prop_assert_eq!(&cfg.namespace, &namespace);
        prop_assert_eq!(cfg.connect_timeout, std::time::Duration::from_millis(timeout_ms));
    }

    /// A password (percent-encoded, as a URL needs) never shows in the
    /// parsed config or in the error of a URL that is wrong elsewhere.
    #[test]
    fn encoded_password_never_shows(
        secret in "\\PC{0,16}",
        broken in prop_oneof![
            Just(""), Just("/notadb"), Just("/-1"), Just("?namespace=a%20b"), Just("?connect_timeout=soon"),
            Just("?response_timeout=1h"), Just(":99999"), Just(":port"), Just("#frag"),
        ],
        scheme in prop_oneof![Just("redis+streams"), Just("rediss+pubsub"), Just("http"), Just("redis")],
    ) {
        let password = format!("Zq7{secret}");
        let encoded = encode(&password);
        let url = format!("{scheme}://app:{encoded}@127.0.0.1{broken}");
        let shown = match RedisConfig::from_url(&url) {
            Ok(cfg) => format!("{cfg} {cfg:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&password), "{} shows {}", url, shown);
        prop_assert!(!shown.contains(&encoded), "{} shows {}", url, shown);
    }

    /// A password typed without percent-encoding (a common mistake) never
    /// shows either, whatever the URL parser makes of it.
    #[test]
    fn raw_password_never_shows(
        secret in "[!-~]{0,12}",
        broken in prop_oneof![Just(""), Just("/notadb"), Just("?connect_timeout=soon")],
    ) {
        let password = format!("Zq7{secret}");
        let url = format!("redis+streams://app:{password}@127.0.0.1:6379{broken}");
        let shown = match RedisConfig::from_url(&url) {
            Ok(cfg) => format!("{cfg} {cfg:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&password), "{} shows {}", url, shown);
    }
}
