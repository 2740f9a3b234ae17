//! Tests of the backplane's configuration: URL parameters, ranges, defaults.

use super::*;

#[test]
fn url_params() {
    let c = PubSubConfig::from_url(
        "redis+pubsub://u:pw@h:7000/2?namespace=chat&outbox=5&outbox_ttl=2s&outbox_wait=0&batch=9\
         &probe_interval=250ms&probe_timeout=300ms&reconnect_min=10ms&reconnect_max=500ms\
         &close_timeout=1s&instance_id=ff&warn_interval=1m",
    )
    .unwrap();
    assert_eq!(c.redis.addr(), "h:7000");
    assert_eq!(c.redis.db, 2);
    assert_eq!(c.redis.namespace, "chat");
    assert_eq!(c.outbox_capacity, 5);
    assert_eq!(c.outbox_ttl, Duration::from_secs(2));
    assert_eq!(c.outbox_wait, Duration::ZERO);
    assert_eq!(c.batch, 9);
    assert_eq!(c.probe_interval, Duration::from_millis(250));
    assert_eq!(c.probe_timeout, Duration::from_millis(300));
    assert_eq!(c.reconnect_min, Duration::from_millis(10));
    assert_eq!(c.reconnect_max, Duration::from_millis(500));
    assert_eq!(c.close_timeout, Duration::from_secs(1));
    assert_eq!(c.instance_id, Some(0xff));
    assert_eq!(c.warn_interval, Duration::from_secs(60));
    assert_eq!(c.channel("a.b"), "chat:a.b");
    assert!(!format!("{c:?}").contains("pw"));
}

#[test]
fn cluster_urls_and_partitions() {
    let c = PubSubConfig::from_url(
        "redis+pubsub+cluster://u:pw@127.0.0.1:7000,127.0.0.1:7001?namespace=chat&partitions=64",
    )
    .unwrap();
    assert_eq!(c.partitions, 64);
    assert_eq!(c.redis.cluster.as_ref().unwrap().seeds.len(), 2);
    assert!(
        c.channel("rooms.42").starts_with("chat:{p"),
        "{}",
        c.channel("rooms.42")
    );
    let d = PubSubConfig::from_url("rediss+pubsub+cluster://h1:7000").unwrap();
    assert_eq!(d.partitions, 16);
    assert!(d.redis.tls);
    // On a single server the parameter is validated, not used.
    let s = PubSubConfig::from_url("redis+pubsub://h?partitions=8&namespace=n").unwrap();
    assert_eq!((s.partitions, s.channel("a")), (8, "n:a".to_owned()));
    for (url, needle) in [
        (
            "redis+pubsub+cluster://h:1?partitions=0",
            "partitions must be 1 to 1024",
        ),
        (
            "redis+pubsub+cluster://h:1?partitions=1025",
            "partitions must be 1 to 1024",
        ),
        ("redis+pubsub+cluster://h:1?partitions=x", "partitions"),
        ("redis+pubsub+cluster://u:hunter2@h:1/2", "only database 0"),
    ] {
        let e = PubSubConfig::from_url(url).unwrap_err().to_string();
        assert!(e.contains(needle), "{url}: {e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
    assert!(PubSubConfig::from_url("redis+pubsub+cluster://h:1?partitions=1024").is_ok());
    assert!(
        PubSubConfig::default()
            .with_partitions(0)
            .validate()
            .is_err()
    );
    assert!(
        PubSubConfig::default()
            .with_partitions(1)
            .validate()
            .is_ok()
    );
}

#[test]
fn unknown_params_list_the_known_ones() {
    let e = PubSubConfig::from_url("redis+pubsub://h?outbx=5").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("outbx"), "{text}");
    for known in ["namespace", "outbox", "outbox_ttl", "probe_interval"] {
        assert!(text.contains(known), "{text}");
    }
}

#[test]
fn bad_values() {
    for url in [
        "redis+streams://h",
        "memory://",
        "redis+pubsub://h?outbox=0",
        "redis+pubsub://h?outbox=x",
        "redis+pubsub://h?batch=0",
        "redis+pubsub://h?probe_interval=0",
        "redis+pubsub://h?outbox_ttl=soon",
        "redis+pubsub://h?reconnect_min=2s&reconnect_max=1s",
        "redis+pubsub://h?instance_id=xyz",
    ] {
        assert!(PubSubConfig::from_url(url).is_err(), "{url}");
    }
    assert!(PubSubConfig::from_url("redis://h").is_ok());
    assert!(
        PubSubConfig::from_url("redis://h?close_timeout=0&outbox_wait=0&reconnect_min=0").is_ok()
    );
    assert!(PubSubConfig::from_url("REDIS+PUBSUB://h").is_ok());
    assert!(PubSubConfig::default().validate().is_ok());
}

/// `probe_interval=18446744073709551615s` panicked the receiving loop
/// (restarted by its supervisor, forever), `close_timeout` of the same
/// made `close()` panic; both were accepted. Now every duration and count
/// has a range, checked by `from_url` and the builder's `validate`.
#[test]
fn out_of_range_values_are_refused_with_their_range() {
    let max = u64::MAX;
    for (params, needle) in [
        (
            format!("probe_interval={max}s"),
            "probe_interval must be 1ms to 1h (60m), got 18446744073709551615s (url parameter probe_interval)",
        ),
        (
            format!("close_timeout={max}s"),
            "close_timeout must be 0 to 1h (60m)",
        ),
        (format!("outbox={max}"), "outbox must be 1 to 10000000"),
        (format!("batch={max}"), "batch must be 1 to 100000"),
        (format!("outbox_ttl={max}m"), "outbox_ttl"),
        ("outbox_ttl=0".to_owned(), "outbox_ttl"),
        (
            format!("outbox_wait={max}ms"),
            "outbox_wait must be 0 to 1m",
        ),
        ("remote_wait=11s".to_owned(), "remote_wait must be 0 to 10s"),
        (format!("probe_timeout={max}s"), "probe_timeout"),
        ("probe_timeout=0".to_owned(), "probe_timeout"),
        (format!("reconnect_max={max}s"), "reconnect_max"),
        (
            format!("reconnect_min={max}s&reconnect_max=1s"),
            "reconnect_min must be 0 to 10m",
        ),
        (format!("warn_interval={max}m"), "warn_interval"),
        (
            "connect_timeout=0".to_owned(),
            "connect_timeout must be 1ms to 10m",
        ),
        (format!("response_timeout={max}s"), "response_timeout"),
    ] {
        let url = format!("redis+pubsub://h?{params}");
        let e = PubSubConfig::from_url(&url).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{url}: {e}");
        assert!(e.to_string().contains(needle), "{url}: {e}");
    }
    let upper = "redis+pubsub://h?outbox=10000000&batch=100000&outbox_ttl=60m&outbox_wait=1m\
        &remote_wait=10s&probe_interval=60m&probe_timeout=60m&reconnect_min=10m&reconnect_max=10m&close_timeout=60m\
        &warn_interval=1440m&instance_id=ffffffffffffffff";
    assert!(PubSubConfig::from_url(upper).is_ok());
    let lower = PubSubConfig::from_url("redis+pubsub://h?remote_wait=0").unwrap();
    assert_eq!(lower.remote_wait, Duration::ZERO);
    assert_eq!(
        PubSubConfig::default().remote_wait,
        PubSubConfig::DEFAULT_REMOTE_WAIT
    );
    let e = PubSubConfig::default()
        .with_close_timeout(Duration::MAX)
        .validate()
        .unwrap_err();
    assert!(e.to_string().ends_with("(set in code)"), "{e}");
    for bad in [
        PubSubConfig::default().with_gap_tracker_capacity(0),
        PubSubConfig::default().with_gap_tracker_capacity(usize::MAX),
        PubSubConfig::default().with_probe_interval(Duration::MAX),
        PubSubConfig::default().with_batch(usize::MAX),
        PubSubConfig::default().with_remote_wait(Duration::from_millis(10_001)),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}
