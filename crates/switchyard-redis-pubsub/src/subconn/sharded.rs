//! Sharded subscription changes (`SSUBSCRIBE` / `SUNSUBSCRIBE`, Redis
//! Cluster) on the lean subscribing connection.
//!
//! Sharded channels of different slots may not share one command
//! (`CROSSSLOT`), and every partition has a slot of its own, so each name
//! gets a command of its own; they are written as one pipeline and the
//! replies (a confirmation or an error reply each) come in order. A
//! `sunsubscribe` Redis sends by itself (the slot moved away) may arrive
//! in between: it is told apart by its name and reported as lost.

use std::time::Duration;

use switchyard_redis::lean::{self, write_flush};

use super::{Change, ChangeError, Frame, LeanSub, Step, SubConn};

/// What a sharded change did besides confirming names.
#[derive(Debug, Default)]
pub(crate) struct ShardedOutcome {
    /// Names Redis answered with an error reply, and the reply (`MOVED`
    /// when the node does not serve the slot, `NOPERM`, ...). Not held.
    pub(crate) refused: Vec<(String, String)>,
    /// Channels Redis unsubscribed by itself meanwhile (slot moved away).
    pub(crate) lost: Vec<String>,
}

impl SubConn {
    /// Sends one `SSUBSCRIBE` or `SUNSUBSCRIBE` per name, pipelined, and
    /// waits for every reply, at most `timeout`; messages arriving
    /// meanwhile go to `on_msg`. Only a failure of the connection is an
    /// error.
    pub(crate) async fn change_sharded(
        &mut self,
        change: Change,
        names: &[String],
        timeout: Duration,
        on_msg: &mut (dyn FnMut(&[u8], &[u8]) + Send),
    ) -> std::result::Result<ShardedOutcome, ChangeError> {
        let what = change.command();
        match self {
            SubConn::Lean(l) => {
                match tokio::time::timeout(timeout, l.change_sharded(change, names, on_msg)).await {
                    Ok(Ok(o)) => Ok(o),
                    Ok(Err(e)) => Err(ChangeError::Failed(format!("{what}: {e}"))),
                    Err(_) => Err(ChangeError::Failed(format!(
                        "{what}: not answered within {timeout:?}"
                    ))),
                }
            }
        }
    }
}

impl LeanSub {
    async fn change_sharded(
        &mut self,
        change: Change,
        names: &[String],
        on_msg: &mut (dyn FnMut(&[u8], &[u8]) + Send),
    ) -> std::result::Result<ShardedOutcome, String> {
        let mut outcome = ShardedOutcome::default();
        if names.is_empty() {
            return Ok(outcome);
        }
        self.out.clear();
        for n in names {
            lean::put_array_header(&mut self.out, 2);
            lean::put_bulk(&mut self.out, change.command().as_bytes());
            lean::put_bulk(&mut self.out, n.as_bytes());
        }
        write_flush(&mut self.stream, &self.out)
            .await
            .map_err(|e| format!("writing failed: {e}"))?;
        let mut next = 0;
        while let Some(expected) = names.get(next) {
            match self.step().await {
                Step::Frame(Frame::Confirmed(c, (a, b))) => {
                    let name = &self.buf[a..b];
                    if c == change && name == expected.as_bytes() {
                        next += 1;
                    } else if c == Change::SUnsubscribe {
                        outcome
                            .lost
                            .push(String::from_utf8_lossy(name).into_owned());
                    } else {
                        return Err(format!("an unexpected {} confirmation", c.command()));
                    }
                }
                Step::Frame(Frame::Message { channel, payload }) => {
                    on_msg(
                        &self.buf[channel.0..channel.1],
                        &self.buf[payload.0..payload.1],
                    );
                }
                Step::Frame(Frame::Pong) if self.probing => self.answered = true,
                Step::Frame(Frame::Error((a, b))) => {
                    let reply = String::from_utf8_lossy(&self.buf[a..b]).into_owned();
                    outcome.refused.push((expected.clone(), reply));
                    next += 1;
                }
                Step::Frame(other) => return Err(format!("unexpected frame {other:?}")),
                Step::Closed => return Err("the connection closed".into()),
                Step::Failed(e) => return Err(e),
            }
        }
        Ok(outcome)
    }
}
