//! Outbound frames: a Socket.IO packet encoded once, as the text of an
//! Engine.IO message (`4` + packet), plus its binary attachments. A frame
//! is shared (`Bytes` inside) by every recipient of a fan-out: encode once,
//! send many.

use bytes::Bytes;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::packet::{self, Packet, PacketType};

/// How a slow client's queue may treat a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Must be delivered (acks, events, presence, control packets).
    Keep,
    /// Only the newest frame with this key matters when the client is
    /// behind (e.g. the live position of one vehicle).
    Coalesce(u64),
}

/// One Engine.IO message ready for any transport.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The Engine.IO packet text (`4...` for messages, `2` ping, ...).
    pub text: Utf8Bytes,
    /// Binary attachments sent after the text (Engine.IO binary messages).
    pub binary: Vec<Bytes>,
    pub class: FrameClass,
}

fn utf8(bytes: Bytes) -> Utf8Bytes {
    // The encoders only produce UTF-8 (JSON, digits, namespace names that
    // came in as UTF-8); a failure here would be a bug, answered with an
    // empty message rather than a panic.
    Utf8Bytes::try_from(bytes).unwrap_or_default()
}

impl Frame {
    /// A frame from Engine.IO packet text (e.g. `"2"`, `"6"`, `"40{...}"`).
    pub fn engine_text(text: impl Into<Bytes>) -> Self {
        Self {
            text: utf8(text.into()),
            binary: Vec::new(),
            class: FrameClass::Keep,
        }
    }

    /// An EVENT with one pre-serialized JSON argument.
    pub fn event(nsp: &str, event: &str, json_arg: &[u8]) -> Self {
        Self::engine_text(packet::encode_event_message(nsp, event, json_arg))
    }

    /// An ACK with one pre-serialized JSON argument.
    pub fn ack(nsp: &str, id: u64, json_arg: &[u8]) -> Self {
        Self::engine_text(packet::encode_ack_message(nsp, id, json_arg))
    }

    /// Mark this frame coalescible under `key`.
    pub fn coalesce(mut self, key: u64) -> Self {
        self.class = FrameClass::Coalesce(key);
        self
    }

    /// A full packet (any type), with attachments when there are any.
    pub fn packet(packet: &Packet, binary: Vec<Bytes>) -> Self {
        let mut text = String::with_capacity(64);
        text.push('4');
        text.push_str(&packet.encode());
        Self {
            text: Utf8Bytes::from(text),
            binary,
            class: FrameClass::Keep,
        }
    }

    /// An EVENT with several arguments (placeholders for `binary`).
    pub fn event_args(nsp: &str, event: &str, args: Vec<Value>, binary: Vec<Bytes>) -> Self {
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(event.to_string()));
        data.extend(args);
        let kind = if binary.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        };
        Self::packet(
            &Packet {
                kind,
                nsp: nsp.to_string(),
                id: None,
                data: Some(Value::Array(data)),
                attachments: binary.len(),
            },
            binary,
        )
    }

    /// An ACK with several arguments (placeholders for `binary`).
    pub fn ack_args(nsp: &str, id: u64, args: Vec<Value>, binary: Vec<Bytes>) -> Self {
        let kind = if binary.is_empty() {
            PacketType::Ack
        } else {
            PacketType::BinaryAck
        };
        Self::packet(
            &Packet {
                kind,
                nsp: nsp.to_string(),
                id: Some(id),
                data: Some(Value::Array(args)),
                attachments: binary.len(),
            },
            binary,
        )
    }

    /// Bytes this frame will take on the wire (for queue limits).
    pub fn len(&self) -> usize {
        self.text.len() + self.binary.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
