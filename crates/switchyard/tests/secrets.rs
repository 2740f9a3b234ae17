//! Passwords never show: not in errors (Display or Debug), not in config
//! Debug output, not in any log line at `trace` level (switchyard's and the
//! libraries' under it), whatever punctuation the password holds, raw or
//! percent-encoded, and whatever shape the URL has.
//!
//! Reproduction of the defect: `connect("redis+streams://app:S3cretPW#x@127.0.0.1:7441")`
//! failed with `invalid url "redis+streams://app:S3cretPW#x@127.0.0.1:7441":
//! invalid port number`, and the DEBUG line `connecting url=...` showed the
//! same text: the redaction stopped at the `#` and never saw the `@`.
#![cfg(all(
    feature = "memory",
    feature = "redis-streams",
    feature = "redis-pubsub"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::prelude::*;
use switchyard::redact_url;
use switchyard_testkit::RedisServer;

/// The marker every test password starts with; it must never be printed.
const MARKER: &str = "S3cretPW";

/// Every ASCII punctuation character.
fn punctuation() -> Vec<char> {
    (0x21u8..0x7f)
        .map(char::from)
        .filter(char::is_ascii_punctuation)
        .collect()
}

fn secret(p: char) -> String {
    format!("{MARKER}{p}x")
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A log sink shared with the tracing subscriber.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every log record at every level, of every crate (records of the `log`
/// crate included), into the returned sink.
fn capture_logs() -> Sink {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    sink
}

/// `text` contains no form of any test password.
fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(MARKER), "{what} shows a password: {text}");
    assert!(
        !text.contains(&percent_encode(MARKER)),
        "{what} shows an encoded password: {text}"
    );
}

/// The URLs a password of the ACL user `app` may end up in: well formed
/// (percent-encoded; they work) and malformed (raw punctuation, no `//`,
/// forgotten host).
fn urls(addr: &str, p: char) -> Vec<(String, bool)> {
    let raw = secret(p);
    let encoded = percent_encode(&raw);
    let mut urls = Vec::new();
    for scheme in ["redis+streams", "redis+pubsub"] {
        let ns = "namespace=secrets&connect_timeout=2s";
        urls.push((format!("{scheme}://app:{encoded}@{addr}/0?{ns}"), true));
        urls.push((format!("{scheme}://app:{raw}@{addr}/0?{ns}"), false));
        urls.push((format!("{scheme}:app:{raw}@{addr}"), false));
        urls.push((format!("{scheme}://app:{raw}"), false));
        urls.push((format!("{scheme}://app:{encoded}"), false));
    }
    urls.push((format!("memory://app:{raw}@{addr}"), false));
    urls.push((format!("kafka://app:{raw}@{addr}"), false));
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show_in_errors_debug_or_trace_logs() {
    let logs = capture_logs();
    let server = RedisServer::start().expect("redis-server must be installed");
    let addr = server.addr().to_string();
    // One ACL user with one password per punctuation character.
    let mut acl = vec!["ACL", "SETUSER", "app", "on", "~*", "&*", "+@all"];
    let passwords: Vec<String> = punctuation()
        .iter()
        .map(|p| format!(">{}", secret(*p)))
        .collect();
    acl.extend(passwords.iter().map(String::as_str));
    server.cmd(&acl).expect("ACL SETUSER");

    let topic = Topic::new("secrets.t").unwrap();
    let (mut opened, mut refused) = (0usize, 0usize);
    for p in punctuation() {
        for (url, must_work) in urls(&addr, p) {
            match switchyard::connect(&url).await {
                Ok(transport) => {
                    opened += 1;
                    transport
                        .publish(Message::new(topic.clone(), "x"))
                        .await
                        .unwrap_or_else(|e| panic!("publish on {}: {e}", redact_url(&url)));
                    let closed = tokio::time::timeout(Duration::from_secs(10), transport.close())
                        .await
                        .expect("close within 10 s");
                    closed.unwrap();
                }
                Err(e) => {
                    assert!(!must_work, "{}: {e}", redact_url(&url));
                    refused += 1;
                    assert_no_secret("an error", &format!("{e} {e:?}"));
                }
            }
            if must_work {
                let debug = if url.starts_with("redis+streams") {
                    format!(
                        "{:?}",
                        switchyard::redis_streams::StreamsConfig::from_url(&url).unwrap()
                    )
                } else {
                    format!(
                        "{:?}",
                        switchyard::redis_pubsub::PubSubConfig::from_url(&url).unwrap()
                    )
                };
                assert_no_secret("a config's Debug", &debug);
            }
        }
    }
    let n = punctuation().len();
    // Every percent-encoded password works, on both adapters.
    assert!(opened >= 2 * n, "{opened} opened");
    assert_eq!(opened + refused, n * urls(&addr, '!').len());
    let text = logs.text();
    assert_no_secret("the trace log", &text);
    // The logs did capture the connections, at debug level and below.
    let connecting = text.lines().filter(|l| l.contains("connecting")).count();
    assert!(
        connecting >= 2 * n,
        "{connecting} 'connecting' lines:\n{text}"
    );
}
