//! Thin entry points into the crate-private envelope codec and push-frame
//! parser, for the property tests and the `switchyard-fuzz` binary. Not
//! part of the supported API: names and signatures may change in any
//! release.

use switchyard_core::{Message, Result};

use crate::envelope::{self, Origin};

/// A decoded backplane envelope, field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Origin instance id.
    pub origin_id: u64,
    /// Origin boot epoch (Unix milliseconds).
    pub origin_epoch: u64,
    /// Per-origin sequence number.
    pub seq: u64,
    /// Per-origin, per-topic sequence number.
    pub topic_seq: u64,
    /// The message (without the `sy-origin` header the receiver adds).
    pub message: Message,
}

/// Encodes `message` as a complete frame with the given origin and
/// sequence numbers, as the publisher does.
pub fn encode_frame(
    origin_id: u64,
    origin_epoch: u64,
    seq: u64,
    topic_seq: u64,
    message: &Message,
) -> Result<Vec<u8>> {
    let origin = Origin {
        id: origin_id,
        epoch: origin_epoch,
    };
    let mut buf = envelope::encode(origin, message)?;
    envelope::set_seqs(&mut buf, seq, topic_seq);
    Ok(buf.to_vec())
}

/// Decodes a frame, as the receiving loop does; the error is its Display.
pub fn decode_frame(frame: &[u8]) -> std::result::Result<Decoded, String> {
    let env = envelope::decode(frame).map_err(|e| e.to_string())?;
    Ok(Decoded {
        origin_id: env.origin.id,
        origin_epoch: env.origin.epoch,
        seq: env.seq,
        topic_seq: env.topic_seq,
        message: Message::from_parts(env.topic, env.payload, env.headers, env.dedup_id),
    })
}

/// What one push frame of the subscribing connection was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushFrame {
    /// A `message` or `pmessage`: channel and payload.
    Message {
        /// The channel the message came on.
        channel: Vec<u8>,
        /// The payload (an envelope).
        payload: Vec<u8>,
    },
    /// A subscription change confirmed (`subscribe`, `punsubscribe`, ...).
    Confirmed(&'static str),
    /// A `PING` answered.
    Pong,
    /// An error reply.
    Error(Vec<u8>),
}

/// Parses one push frame from `buf[at..]` as the lean subscribing
/// connection does: `Ok(None)` when more bytes are needed, else the frame
/// and the offset after it. The error names what was unexpected.
pub fn parse_push_frame(
    buf: &[u8],
    at: usize,
) -> std::result::Result<Option<(PushFrame, usize)>, &'static str> {
    use crate::subconn::Frame;
    let Some((frame, next)) = crate::subconn::parse_frame(buf, at).map_err(|u| u.0)? else {
        return Ok(None);
    };
    // Indexed like the receiving loop does: a position outside `buf` is a
    // parser bug, and panics here as it would there.
    let slice = |(a, b): (usize, usize)| buf[a..b].to_vec();
    let frame = match frame {
        Frame::Message { channel, payload } => PushFrame::Message {
            channel: slice(channel),
            payload: slice(payload),
        },
        Frame::Confirmed(change, _) => PushFrame::Confirmed(change.command()),
        Frame::Pong => PushFrame::Pong,
        Frame::Error(text) => PushFrame::Error(slice(text)),
    };
    Ok(Some((frame, next)))
}
