//! A third-party adapter plugged into `connect(url)` with
//! `switchyard::register_scheme`: a toy `myqueue://NAME` adapter, written
//! here as an outside crate would write it (only the facade's public API),
//! that wraps the memory hub `NAME` under another name.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use switchyard::prelude::*;
use switchyard::{Capabilities, Health, TopicFilter};

/// The toy adapter: every call goes to a memory transport.
struct MyQueue {
    inner: Arc<dyn Transport>,
}

#[switchyard::async_trait]
impl Transport for MyQueue {
    fn name(&self) -> &'static str {
        "myqueue"
    }

    fn capabilities(&self) -> Capabilities {
        // Outside core the struct literal does not compile
        // (`#[non_exhaustive]`); the const builder does.
        Capabilities::new()
            .with_replay(true)
            .with_consumer_groups(true)
            .with_ack_redelivery(true)
            .with_per_topic_ordering(true)
            .with_dead_letters(true)
            .with_patterns(true)
            .with_at_least_once(true)
            .with_limits(self.inner.capabilities().limits)
    }

    async fn publish(&self, message: Message) -> Result<MessageId> {
        self.inner.publish(message).await
    }

    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.inner.publish_batch(messages).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        self.inner.subscribe(subscription).await
    }

    async fn topics(&self, filter: &TopicFilter) -> Result<Vec<switchyard::TopicInfo>> {
        self.inner.topics(filter).await
    }

    async fn health(&self) -> Health {
        self.inner.health().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Opens `myqueue://NAME` (the scheme arrives in lowercase).
async fn connect_myqueue(url: String, calls: Arc<AtomicUsize>) -> Result<Arc<dyn Transport>> {
    calls.fetch_add(1, Ordering::SeqCst);
    let Some(name) = url.strip_prefix("myqueue://") else {
        return Err(Error::InvalidConfig(format!(
            "myqueue got a url of another scheme: {url}"
        )));
    };
    if name.is_empty() {
        return Err(Error::InvalidConfig(
            "myqueue://NAME needs a queue name".into(),
        ));
    }
    let inner = switchyard::connect(&format!("memory://myqueue-{name}")).await?;
    Ok(Arc::new(MyQueue { inner }))
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Job {
    n: u32,
}

#[tokio::test]
async fn a_registered_scheme_reaches_its_adapter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    switchyard::register_scheme("myqueue", move |url| connect_myqueue(url, counter.clone()))
        .unwrap();
    assert!(switchyard::schemes().contains(&"myqueue".to_owned()));
    assert!(switchyard::schemes().contains(&"memory".to_owned()));
    // compiled_schemes() stays the built-in list.
    assert!(!switchyard::compiled_schemes().contains(&"myqueue"));

    let publisher = switchyard::connect("myqueue://jobs").await.unwrap();
    // Any case, surrounding blanks: the constructor sees `myqueue://jobs`.
    let consumer = switchyard::connect("  MyQueue://jobs ").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(publisher.name(), "myqueue");
    assert!(publisher.capabilities().consumer_groups);
    assert!(!publisher.capabilities().persistent);
    assert!(publisher.health().await.is_ok());

    // The two connects share the queue `jobs`: 3 jobs published on one
    // arrive, exactly, on the other's typed subscriber.
    let topic = Topic::new("jobs.run").unwrap();
    let mut jobs = Bus::new(consumer.clone())
        .subscribe::<Job>(Subscription::new(topic.clone()).group("workers"))
        .await
        .unwrap();
    let bus = Bus::new(publisher.clone());
    for n in 0..3 {
        bus.publish(&topic, &Job { n }).await.unwrap();
    }
    for n in 0..3 {
        let job = tokio::time::timeout(Duration::from_secs(5), jobs.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(job.value, Job { n });
        job.ack().await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), jobs.recv())
            .await
            .is_err()
    );

    // The constructor's own errors come back as they are.
    let e = switchyard::connect("myqueue://").await.err().unwrap();
    assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("needs a queue name"), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A second registration is refused and the first one stays.
    let e = switchyard::register_scheme("MYQUEUE", |_url| async {
        Err::<Arc<dyn Transport>, _>(Error::Closed)
    })
    .unwrap_err();
    assert!(e.to_string().contains("already registered"), "{e}");
    assert_eq!(
        switchyard::connect("myqueue://jobs").await.unwrap().name(),
        "myqueue"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn built_in_and_invalid_schemes_are_refused() {
    let never = |_url: String| async { Err::<Arc<dyn Transport>, _>(Error::Closed) };
    for builtin in [
        "memory",
        "MEMORY",
        "redis+streams",
        "rediss+pubsub+cluster",
        "redis+streams+sentinel",
    ] {
        let e = switchyard::register_scheme(builtin, never).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{builtin}: {e}");
        assert!(e.to_string().contains("built-in"), "{builtin}: {e}");
    }
    let long = "q".repeat(switchyard::MAX_SCHEME_LEN + 1);
    for invalid in [
        "",
        "1queue",
        "my queue",
        "myqueue://",
        "my_queue",
        "ü",
        &long,
    ] {
        let e = switchyard::register_scheme(invalid, never).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{invalid:?}: {e}");
        assert!(
            e.to_string().contains("cannot register url scheme"),
            "{invalid:?}: {e}"
        );
    }
    // The longest valid name is accepted.
    let longest = "q".repeat(switchyard::MAX_SCHEME_LEN);
    switchyard::register_scheme(&longest, never).unwrap();
    assert!(switchyard::unregister_scheme(&longest));
    // Built-in schemes cannot be removed; memory:// still opens.
    assert!(!switchyard::unregister_scheme("memory"));
    assert_eq!(
        switchyard::connect("memory://").await.unwrap().name(),
        "memory"
    );
    let listed = switchyard::schemes();
    assert_eq!(listed.iter().filter(|s| s.as_str() == "memory").count(), 1);
    for refused in ["1queue", "my queue", "my_queue", longest.as_str()] {
        assert!(!listed.iter().any(|s| s == refused), "{refused} listed");
    }
}

#[tokio::test]
async fn unknown_scheme_lists_the_registered_ones() {
    switchyard::register_scheme("listed+q", |_url| async {
        Err::<Arc<dyn Transport>, _>(Error::Closed)
    })
    .unwrap();
    let e = switchyard::connect("nosuch://x").await.err().unwrap();
    let Error::UnknownScheme { scheme, known } = &e else {
        panic!("{e}")
    };
    assert_eq!(scheme, "nosuch");
    assert!(known.starts_with("memory, "), "{known}");
    assert!(known.contains("listed+q (registered)"), "{known}");
    assert!(e.to_string().contains("listed+q (registered)"), "{e}");

    // After unregistering: gone from the list, an unknown scheme again.
    assert!(switchyard::unregister_scheme("LISTED+Q"));
    assert!(!switchyard::unregister_scheme("listed+q"));
    assert!(!switchyard::schemes().contains(&"listed+q".to_owned()));
    let e = switchyard::connect("listed+q://x").await.err().unwrap();
    assert!(matches!(e, Error::UnknownScheme { .. }), "{e}");
    assert!(!e.to_string().contains("listed+q (registered)"), "{e}");
}

#[tokio::test]
async fn a_constructor_error_never_shows_the_password() {
    switchyard::register_scheme("leaky", |url: String| async move {
        Err::<Arc<dyn Transport>, _>(Error::Backend(format!("cannot log in with {url}")))
    })
    .unwrap();
    let e = switchyard::connect("leaky://app:hunter2@127.0.0.1:1")
        .await
        .err()
        .unwrap();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    assert!(e.to_string().contains("cannot log in"), "{e}");
}

/// Eight threads register the same scheme at once: exactly one wins.
#[test]
fn concurrent_registrations_of_one_scheme() {
    const THREADS: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                switchyard::register_scheme("race", |_url| async {
                    Err::<Arc<dyn Transport>, _>(Error::Closed)
                })
                .is_ok()
            })
        })
        .collect();
    let won = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&ok| ok)
        .count();
    assert_eq!(won, 1);
    assert_eq!(
        switchyard::schemes()
            .iter()
            .filter(|s| s.as_str() == "race")
            .count(),
        1
    );
    assert!(switchyard::unregister_scheme("race"));
}
