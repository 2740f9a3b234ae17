//! The publish path: a synchronous fast path (one shard read lock, one
//! topic lock, no waiting), a batch path that appends runs of messages for
//! one topic under one lock, and a slow path that waits for room in a full
//! `Block` subscriber. Dead letters are published here too.

use std::future::Future;
use std::iter::Peekable;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_core::{Message, MessageId, header};

use crate::fanout::FanoutShared;
use crate::group::DeadLetter;
use crate::hub::Hub;
use crate::topic_log::TopicState;
use crate::wake::Wakers;

/// Most messages a batch appends under one hold of a topic lock.
const BATCH_RUN: usize = 256;

/// A message that could not be appended yet: `full` must make room first.
pub(crate) struct Blocked {
    message: Message,
    state: Arc<TopicState>,
    full: Arc<FanoutShared>,
}

fn append(
    state: &TopicState,
    message: Message,
    force: bool,
) -> Result<u64, (Message, Arc<FanoutShared>)> {
    let mut wakers = Wakers::new();
    let result = {
        let mut inner = state.inner.lock();
        state.append_locked(&mut inner, message, &mut wakers, force)
    };
    wakers.wake_all();
    result
}

impl Hub {
    /// Appends `message` unless a `Block` subscriber is full.
    pub(crate) fn try_publish(&self, message: Message) -> Result<u64, Box<Blocked>> {
        let state = self.topic(&message.topic);
        append(&state, message, false).map_err(|(message, full)| {
            Box::new(Blocked {
                message,
                state,
                full,
            })
        })
    }

    /// Appends messages in order, each run of one topic under one lock,
    /// pushing their ids; stops at the first message that must wait.
    pub(crate) fn try_publish_batch(
        &self,
        messages: &mut Peekable<std::vec::IntoIter<Message>>,
        ids: &mut Vec<MessageId>,
    ) -> Result<(), Box<Blocked>> {
        while let Some(first) = messages.next() {
            let state = self.topic(&first.topic);
            let topic = first.topic.clone();
            let mut wakers = Wakers::new();
            let mut inner = state.inner.lock();
            let mut next = Some(first);
            let mut run = 0;
            while let Some(message) = next.take() {
                match state.append_locked(&mut inner, message, &mut wakers, false) {
                    Ok(seq) => ids.push(MessageId::from_seq(seq)),
                    Err((message, full)) => {
                        drop(inner);
                        wakers.wake_all();
                        return Err(Box::new(Blocked {
                            message,
                            state,
                            full,
                        }));
                    }
                }
                run += 1;
                next = messages.next_if(|m| m.topic == topic);
                if run % BATCH_RUN == 0 && next.is_some() {
                    // Let consumers and other publishers in now and then.
                    parking_lot::MutexGuard::unlocked_fair(&mut inner, || wakers.wake_all());
                }
            }
            drop(inner);
            wakers.wake_all();
        }
        Ok(())
    }

    /// Waits for room and appends a blocked message. `None` if `give_up`
    /// resolved first (then nothing was appended).
    pub(crate) async fn publish_blocked(
        &self,
        blocked: Box<Blocked>,
        give_up: impl Future<Output = ()>,
    ) -> Option<u64> {
        let Blocked {
            mut message,
            state,
            mut full,
        } = *blocked;
        let mut give_up = pin!(give_up);
        loop {
            tokio::select! {
                () = full.wait_for_room() => {}
                () = &mut give_up => return None,
            }
            match append(&state, message, false) {
                Ok(seq) => return Some(seq),
                Err((m, f)) => {
                    message = m;
                    full = f;
                }
            }
        }
    }

    /// Moves a message to its dead-letter topic. Never blocks: if a `Block`
    /// subscriber of the dead-letter topic is full, the publish continues in
    /// a task (or, outside a tokio runtime, overfills that subscriber).
    pub(crate) fn dead_letter(self: &Arc<Self>, dead: DeadLetter) {
        let original = &dead.entry.message;
        let Ok(dlq) = original.topic.dead_letter() else {
            // Only a dead-letter topic of 255 bytes or more has no
            // dead-letter topic of its own; the message stays in its log.
            tracing::warn!(topic = %original.topic, seq = dead.entry.seq, "a dead letter of the longest dead-letter topics is not dead-lettered again: it stays in its topic");
            return;
        };
        let mut headers = original.headers.clone();
        headers.insert(header::DLQ_REASON, dead.reason.as_str());
        headers.insert(header::DLQ_TOPIC, original.topic.as_str());
        headers.insert(
            header::DLQ_ID,
            MessageId::from_seq(dead.entry.seq).to_string(),
        );
        headers.insert(header::DLQ_ATTEMPTS, dead.attempts.to_string());
        let message =
            Message::from_parts(dlq, original.payload.clone(), headers, original.dedup_id);
        dead.member.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(topic = %original.topic, seq = dead.entry.seq, reason = %dead.reason, "dead-lettered");
        let blocked = match self.try_publish(message) {
            Ok(_) => return,
            Err(blocked) => blocked,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let hub = self.clone();
                rt.spawn(async move {
                    hub.publish_blocked(blocked, std::future::pending()).await;
                });
            }
            Err(_) => {
                let Blocked { message, state, .. } = *blocked;
                let _ = append(&state, message, true);
            }
        }
    }
}
