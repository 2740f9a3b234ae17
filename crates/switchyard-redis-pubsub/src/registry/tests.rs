//! Unit tests of the registry and the remote queues.
use super::*;
use futures::task::noop_waker;

fn msg(i: u64) -> Arc<RemoteMessage> {
    Arc::new(RemoteMessage {
        message: Message::to("a", i.to_string()).unwrap(),
        id: MessageId::from_seq(i),
        origin: 0xab,
    })
}

fn drain(q: &RemoteQueue) -> Vec<String> {
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    let mut out = Vec::new();
    while let Poll::Ready(Some(item)) = q.poll_pop(&mut cx) {
        out.push(match item {
            Item::Message(m) => String::from_utf8_lossy(&m.message.payload).into_owned(),
            Item::Lost { from, to, gap, .. } => format!("lost {from}-{to} ({gap})"),
        });
    }
    out
}

#[test]
fn globs() {
    let g = |p: &str| pattern_glob("ns", &Pattern::new(p).unwrap());
    assert_eq!(g("orders.*"), "ns:orders.*");
    assert_eq!(g("*/camera/rgb"), "ns:*/camera/rgb");
    assert_eq!(g("robot-1/>"), "ns:robot-1/*");
    assert_eq!(g("a.**"), "ns:a.*");
    assert_eq!(g("a.*.c"), "ns:a.*.c");
    assert_eq!(g(">"), "ns:*");
}

#[test]
fn queue_policies() {
    let q = RemoteQueue::new(2, Overflow::DropNewest);
    assert!(q.push(&msg(1)) && q.push(&msg(2)));
    assert!(!q.push(&msg(3)));
    q.push_lost("o", 4, 5);
    assert_eq!(drain(&q), ["1", "2", "lost 4-5 (2)"]);
    assert_eq!(q.dropped.load(Ordering::Relaxed), 1);

    // Block never waits on remote input: it drops the new message and
    // reports what it dropped as one gap signal, in its place; those
    // count as dropped, not as lost in transit (gap 0).
    let q = RemoteQueue::new(2, Overflow::Block);
    for i in 1..=5 {
        q.push(&msg(i));
    }
    assert_eq!(drain(&q), ["1", "2", "lost 3-5 (0)"]);
    assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
    q.push(&msg(6));
    q.push(&msg(7));
    q.push(&msg(8));
    q.push(&msg(10));
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    assert!(matches!(
        q.poll_pop(&mut cx),
        Poll::Ready(Some(Item::Message(_)))
    ));
    q.push(&msg(11));
    let mut items = Vec::new();
    while let Poll::Ready(Some(item)) = q.poll_pop(&mut cx) {
        items.push(item);
    }
    let described: Vec<String> = items
        .iter()
        .map(|it| match it {
            Item::Message(m) => m.id.seq.to_string(),
            Item::Lost {
                origin, from, to, ..
            } => format!("{origin} {from}-{to}"),
        })
        .collect();
    assert!(is_lost_origin("00000000000000ab/a", 0xab, "a"));
    assert!(!is_lost_origin("00000000000000ac/a", 0xab, "a"));
    assert!(!is_lost_origin("00000000000000ab/b", 0xab, "a"));
    assert!(!is_lost_origin("00000000000000ab/ab", 0xab, "a"));
    assert!(!is_lost_origin("é00000000000000a/a", 0xab, "a"));
    // 8 and 10 are not adjacent: two signals.
    assert_eq!(
        described,
        [
            "7",
            "00000000000000ab/a 8-8",
            "00000000000000ab/a 10-10",
            "11"
        ]
    );

    let q = RemoteQueue::new(2, Overflow::DropOldest);
    q.push_lost("o", 1, 1);
    for i in 2..=5 {
        q.push(&msg(i));
    }
    assert_eq!(q.len(), 2);
    assert_eq!(drain(&q), ["lost 1-1 (1)", "4", "5"]);
    assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
}

#[test]
fn gap_signals_are_bounded_and_merged() {
    let q = RemoteQueue::new(2, Overflow::DropNewest);
    q.push_lost("o", 1, 1);
    q.push_lost("p", 3, 3);
    q.push_lost("o", 5, 6);
    q.push_lost("x", 9, 11);
    assert_eq!(drain(&q), ["lost 1-6 (3)", "lost 3-3 (1)"]);
    // The signal for 9..=11 had no room: its 3 messages count as dropped.
    assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
}

#[test]
fn close_ends_the_queue() {
    let q = RemoteQueue::new(2, Overflow::DropNewest);
    q.push(&msg(1));
    q.close();
    assert!(!q.push(&msg(2)));
    let w = noop_waker();
    assert!(matches!(
        q.poll_pop(&mut Context::from_waker(&w)),
        Poll::Ready(None)
    ));
}

#[test]
fn partitioned_reference_counts() {
    let parts = Arc::new(Partitions::new("ns", 4));
    let r = Registry::new("ns", Some(parts.clone()));
    let q = || Arc::new(RemoteQueue::new(4, Overflow::DropNewest));
    let f1 = TopicFilter::parse("a.b").unwrap();
    let f2 = TopicFilter::parse("a.*").unwrap();
    let (id1, _) = r.register(&f1, q()).unwrap();
    let d = r.desired();
    assert_eq!(
        d.channels,
        HashSet::from([parts.channel_of("a.b").to_owned()])
    );
    assert!(d.globs.is_empty());
    assert_eq!(r.names(&f1), vec![parts.channel_of("a.b").to_owned()]);
    // A pattern needs every partition, and no glob.
    let (id2, _) = r.register(&f2, q()).unwrap();
    assert_eq!(r.desired().channels.len(), 4);
    assert!(r.desired().globs.is_empty());
    assert_eq!(r.names(&f2).len(), 4);
    r.deregister(id2, &f2);
    assert_eq!(r.desired().channels.len(), 1);
    r.deregister(id1, &f1);
    assert_eq!(r.subscription_count(), 0);
}

#[test]
fn reference_counts() {
    let r = Registry::new("ns", None);
    let q = || Arc::new(RemoteQueue::new(4, Overflow::DropNewest));
    let f1 = TopicFilter::parse("a.b").unwrap();
    let f2 = TopicFilter::parse("a.b, c").unwrap();
    let f3 = TopicFilter::parse("a.*").unwrap();
    let (id1, v1) = r.register(&f1, q()).unwrap();
    let (id2, v2) = r.register(&f2, q()).unwrap();
    let (id3, _) = r.register(&f3, q()).unwrap();
    assert!(v2 > v1);
    let d = r.desired();
    assert_eq!(
        d.channels,
        HashSet::from(["ns:a.b".to_owned(), "ns:c".to_owned()])
    );
    assert_eq!(d.globs, HashSet::from(["ns:a.*".to_owned()]));
    let mut out = Vec::new();
    r.matching(&Topic::new("a.b").unwrap(), &mut out);
    assert_eq!(out.len(), 3);
    out.clear();
    r.matching(&Topic::new("a.b.c").unwrap(), &mut out);
    assert!(out.is_empty());
    r.deregister(id1, &f1);
    assert_eq!(r.desired().channels.len(), 2);
    r.deregister(id2, &f2);
    r.deregister(id2, &f2);
    assert!(r.desired().channels.is_empty());
    assert!(r.has_match(&Topic::new("a.x").unwrap()));
    r.deregister(id3, &f3);
    assert_eq!(r.subscription_count(), 0);
    assert!(!r.has_match(&Topic::new("a.x").unwrap()));
    r.close_all();
    assert!(matches!(r.register(&f1, q()), Err(Error::Closed)));
}

/// A waker that counts its wake-ups.
fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
    struct Count(Arc<std::sync::atomic::AtomicUsize>);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (Waker::from(Arc::new(Count(n.clone()))), n)
}

#[test]
fn a_full_block_queue_lets_the_receiving_loop_wait_until_half_is_read() {
    let q = RemoteQueue::new(4, Overflow::Block);
    for i in 1..=4 {
        assert_eq!(q.try_push(&msg(i), true), Pushed::Queued);
    }
    // Full: not dropped, not counted; the caller may wait.
    assert_eq!(q.try_push(&msg(5), true), Pushed::Full);
    assert_eq!(q.dropped.load(Ordering::Relaxed), 0);
    let (w, wakes) = counting_waker();
    let mut cx = Context::from_waker(&w);
    assert!(q.poll_room(&mut cx).is_pending());
    let noop = noop_waker();
    let mut reader = Context::from_waker(&noop);
    // One read leaves 3 of 4: not yet room (half), no wake-up.
    assert!(q.poll_pop(&mut reader).is_ready());
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    assert!(q.poll_room(&mut cx).is_pending());
    // Two read: half free, the waiting loop is woken once.
    assert!(q.poll_pop(&mut reader).is_ready());
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert!(q.poll_room(&mut cx).is_ready());
    assert_eq!(q.try_push(&msg(5), true), Pushed::Queued);
    assert_eq!(drain(&q), ["3", "4", "5"]);

    // Other policies never make the loop wait; nor does `push`.
    let q = RemoteQueue::new(1, Overflow::DropNewest);
    assert_eq!(q.try_push(&msg(1), true), Pushed::Queued);
    assert_eq!(q.try_push(&msg(2), true), Pushed::Dropped);
    let q = RemoteQueue::new(1, Overflow::DropOldest);
    assert_eq!(q.try_push(&msg(1), true), Pushed::Queued);
    assert_eq!(q.try_push(&msg(2), true), Pushed::Dropped);
    assert_eq!(drain(&q), ["2"]);
    let q = RemoteQueue::new(1, Overflow::Block);
    assert!(q.push(&msg(1)));
    assert!(!q.push(&msg(2)));
    assert_eq!(drain(&q), ["1", "lost 2-2 (0)"]);
}

#[test]
fn a_stalled_queue_drops_at_once_until_it_has_drained_to_half() {
    let q = RemoteQueue::new(4, Overflow::Block);
    for i in 1..=4 {
        q.push(&msg(i));
    }
    assert_eq!(q.try_push(&msg(5), true), Pushed::Full);
    // The loop gave up waiting: from now on full pushes drop and report.
    q.stall();
    assert_eq!(q.try_push(&msg(5), true), Pushed::Dropped);
    assert_eq!(q.try_push(&msg(6), true), Pushed::Dropped);
    assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
    let noop = noop_waker();
    let mut reader = Context::from_waker(&noop);
    // The gap signal (5-6) is queued after the 4 messages.
    assert!(q.poll_pop(&mut reader).is_ready());
    assert_eq!(q.try_push(&msg(7), true), Pushed::Queued);
    assert_eq!(q.try_push(&msg(8), true), Pushed::Dropped);
    // Drained to half: no longer stalled, a full push may wait again.
    assert!(q.poll_pop(&mut reader).is_ready());
    assert!(q.poll_pop(&mut reader).is_ready());
    assert_eq!(q.try_push(&msg(9), true), Pushed::Queued);
    assert_eq!(q.try_push(&msg(10), true), Pushed::Queued);
    assert_eq!(q.try_push(&msg(11), true), Pushed::Full);
    assert_eq!(
        drain(&q),
        ["4", "lost 5-6 (0)", "7", "lost 8-8 (0)", "9", "10"]
    );
    // Closing wakes a waiting loop; a closed queue drops.
    let q = RemoteQueue::new(1, Overflow::Block);
    q.push(&msg(1));
    let (w, wakes) = counting_waker();
    assert!(q.poll_room(&mut Context::from_waker(&w)).is_pending());
    q.close();
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert!(q.poll_room(&mut Context::from_waker(&w)).is_ready());
    assert_eq!(q.try_push(&msg(2), true), Pushed::Dropped);
}
