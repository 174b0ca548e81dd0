//! Socket.IO protocol 5 packets, as the default parser writes them.
//!
//! Spec: <https://socket.io/docs/v4/socket-io-protocol/> ("Packet encoding").
//!
//! # Format
//!
//! ```text
//! <packet type>[<# of binary attachments>-][<namespace>,][<acknowledgment id>][JSON payload]
//! ```
//!
//! - type: one digit, [`PacketType`];
//! - attachments: `N-`, only for `BINARY_EVENT` and `BINARY_ACK`; the N binary
//!   attachments follow as N Engine.IO binary packets, and the JSON holds a
//!   placeholder `{"_placeholder":true,"num":i}` where each one was;
//! - namespace: present only when it is not `/`, ends at the first `,` (a
//!   namespace never holds a comma; a namespace that runs to the end of the
//!   text, `1/admin`, is accepted as some clients write it);
//! - id: the digits after that, asking for (EVENT) or answering (ACK) an ack;
//! - payload: JSON, whose shape depends on the type (checked on decode):
//!
//! | type              | payload                                        | id        |
//! |-------------------|------------------------------------------------|-----------|
//! | CONNECT 0         | none, or an object (auth; `{"sid"}` in reply)   | none      |
//! | DISCONNECT 1      | none                                           | none      |
//! | EVENT 2           | array: event name (string), then the arguments | optional  |
//! | ACK 3             | array (maybe empty)                            | required  |
//! | CONNECT_ERROR 4   | object (`{"message"}`) or string               | none      |
//! | BINARY_EVENT 5    | as EVENT, with placeholders                    | optional  |
//! | BINARY_ACK 6      | as ACK, with placeholders                      | required  |
//!
//! On the wire each packet is an Engine.IO message, so it gets a `4` prefix:
//! `42["foo"]`. The `encode_*` functions below build such frames directly
//! from pre-serialized JSON for the hub's fan-out (encode once, send many).

use std::fmt::Write as _;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::Value;

/// Longest accepted ack id, in digits (`u64::MAX` has 20).
const MAX_ID_DIGITS: usize = 20;
/// Longest accepted namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 256;

/// The Socket.IO packet type, its digit on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    /// The type of a wire digit (`b'0'`..=`b'6'`).
    pub fn from_digit(digit: u8) -> Option<Self> {
        Some(match digit {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit of this type.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// `BINARY_EVENT` or `BINARY_ACK`: followed by binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One Socket.IO packet (without its binary attachments, which travel as the
/// Engine.IO binary packets that follow it).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// The namespace, `/` by default; starts with `/`, holds no `,`.
    pub nsp: String,
    /// The ack id: on an EVENT, the sender wants an ACK with this id.
    pub id: Option<u64>,
    /// The JSON payload, binary parts replaced by placeholders.
    pub data: Option<Value>,
    /// Number of binary attachments announced (`N-`), for the binary types.
    pub attachments: usize,
}

/// Why a Socket.IO packet was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    #[error("invalid attachment count")]
    BadAttachments,
    #[error("more than {max} attachments")]
    TooManyAttachments { max: usize },
    #[error("invalid namespace")]
    BadNamespace,
    #[error("invalid ack id: {0}")]
    BadId(&'static str),
    #[error("invalid JSON payload: {0}")]
    BadJson(String),
    #[error("invalid payload: {0}")]
    BadPayload(&'static str),
    #[error("invalid binary placeholder: {0}")]
    BadPlaceholder(&'static str),
}

impl Packet {
    /// A packet of `kind` for namespace `nsp`, with no id, data or attachments.
    pub fn new(kind: PacketType, nsp: impl Into<String>) -> Self {
        Self {
            kind,
            nsp: nsp.into(),
            id: None,
            data: None,
            attachments: 0,
        }
    }

    /// Decode the text of a Socket.IO packet (an Engine.IO message without its
    /// `4`), checking the payload shape of its type (see the module doc) and,
    /// for the binary types, that the placeholders match the announced
    /// attachment count (at most `max_attachments`).
    pub fn decode(text: &str, max_attachments: usize) -> Result<Self, PacketError> {
        Self::decode_bytes(text.as_bytes(), max_attachments)
    }

    /// [`Packet::decode`] on bytes, e.g. the data of an
    /// [`EnginePacket::Message`](super::engine_packet::EnginePacket::Message)
    /// without validating its UTF-8 a second time (the namespace and the JSON
    /// are checked as they are parsed).
    pub fn decode_bytes(text: &[u8], max_attachments: usize) -> Result<Self, PacketError> {
        let (&digit, mut rest) = text.split_first().ok_or(PacketError::Empty)?;
        let kind = PacketType::from_digit(digit).ok_or(PacketError::UnknownType(digit))?;

        let mut attachments = 0;
        if kind.is_binary() {
            let dash = rest
                .iter()
                .take(MAX_ID_DIGITS + 1)
                .position(|&c| c == b'-')
                .ok_or(PacketError::BadAttachments)?;
            let count = parse_digits(&rest[..dash]).ok_or(PacketError::BadAttachments)?;
            attachments = usize::try_from(count)
                .ok()
                .filter(|&n| n <= max_attachments)
                .ok_or(PacketError::TooManyAttachments {
                    max: max_attachments,
                })?;
            rest = &rest[dash + 1..];
        }

        let mut nsp = "/";
        if rest.first() == Some(&b'/') {
            let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
            nsp = parse_namespace(&rest[..end])?;
            rest = rest.get(end + 1..).unwrap_or_default();
        }

        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut id = None;
        if digits > 0 {
            if digits > MAX_ID_DIGITS {
                return Err(PacketError::BadId("too long"));
            }
            id = Some(parse_digits(&rest[..digits]).ok_or(PacketError::BadId("out of range"))?);
            rest = &rest[digits..];
        }

        let data = if rest.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(rest).map_err(|e| PacketError::BadJson(e.to_string()))?)
        };

        let packet = Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments,
        };
        packet.check()?;
        Ok(packet)
    }

    /// Check the payload shape and the id against the packet type.
    fn check(&self) -> Result<(), PacketError> {
        use PacketType::*;
        let data = self.data.as_ref();
        match self.kind {
            Connect | Disconnect | ConnectError if self.id.is_some() => {
                return Err(PacketError::BadId("not allowed on this packet type"));
            }
            Ack | BinaryAck if self.id.is_none() => {
                return Err(PacketError::BadId("missing on an ack"));
            }
            _ => {}
        }
        let shape_ok = match self.kind {
            Connect => matches!(data, None | Some(Value::Object(_))),
            Disconnect => data.is_none(),
            ConnectError => matches!(data, Some(Value::Object(_) | Value::String(_))),
            Event | BinaryEvent => {
                matches!(data, Some(Value::Array(a)) if matches!(a.first(), Some(Value::String(_))))
            }
            Ack | BinaryAck => matches!(data, Some(Value::Array(_))),
        };
        if !shape_ok {
            return Err(PacketError::BadPayload(match self.kind {
                Connect => "CONNECT data must be an object",
                Disconnect => "DISCONNECT carries no data",
                ConnectError => "CONNECT_ERROR data must be an object or a string",
                Event | BinaryEvent => "EVENT data must be an array starting with the event name",
                Ack | BinaryAck => "ACK data must be an array",
            }));
        }
        match data {
            Some(data) if self.kind.is_binary() => check_placeholders(data, self.attachments),
            _ => Ok(()),
        }
    }

    /// Encode in the canonical form: type, then `N-` for the binary types,
    /// then `/nsp,` if the namespace is not `/`, then the id, then the JSON.
    ///
    /// An `Event` or `Ack` with `attachments > 0` is written as
    /// `BINARY_EVENT`/`BINARY_ACK`, the only types that carry attachments.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len_hint());
        self.write(&mut out);
        out
    }

    /// The Engine.IO message frame of this packet: `4` then [`Packet::encode`],
    /// ready to send as a WebSocket text frame or to put in a polling payload.
    pub fn encode_message(&self) -> Bytes {
        let mut out = String::with_capacity(1 + self.encoded_len_hint());
        out.push('4');
        self.write(&mut out);
        Bytes::from(out)
    }

    fn encoded_len_hint(&self) -> usize {
        // Small payloads fit; larger ones grow once or twice.
        32 + self.nsp.len()
    }

    fn write(&self, out: &mut String) {
        let kind = match self.kind {
            PacketType::Event if self.attachments > 0 => PacketType::BinaryEvent,
            PacketType::Ack if self.attachments > 0 => PacketType::BinaryAck,
            kind => kind,
        };
        out.push(char::from(kind.digit()));
        if kind.is_binary() {
            out.push_str(itoa::Buffer::new().format(self.attachments));
            out.push('-');
        }
        if !self.nsp.is_empty() && self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = self.id {
            out.push_str(itoa::Buffer::new().format(id));
        }
        if let Some(data) = &self.data {
            // Writing to a String cannot fail.
            let _ = write!(out, "{data}");
        }
    }

    /// The event name of an `Event` or `BinaryEvent` (the first element of
    /// its data array).
    pub fn event_name(&self) -> Option<&str> {
        match (self.kind, &self.data) {
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(args))) => {
                args.first().and_then(Value::as_str)
            }
            _ => None,
        }
    }
}

/// Parse a run of ASCII digits (at most 20) as a u64; `None` if empty, not all
/// digits, or over `u64::MAX`.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > MAX_ID_DIGITS {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &c| {
        let d = c.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// A namespace as read from the wire: `/` then UTF-8 without control
/// characters, at most [`MAX_NAMESPACE_LEN`] bytes.
fn parse_namespace(raw: &[u8]) -> Result<&str, PacketError> {
    let nsp = std::str::from_utf8(raw).map_err(|_| PacketError::BadNamespace)?;
    if !nsp.starts_with('/') || nsp.len() > MAX_NAMESPACE_LEN || nsp.chars().any(char::is_control) {
        return Err(PacketError::BadNamespace);
    }
    Ok(nsp)
}

/// The JSON of the placeholder for binary attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// Check that `data` holds exactly one placeholder
/// `{"_placeholder":true,"num":n}` for each `n` in `0..attachments`, and no
/// other object with `"_placeholder": true` (hostile input may lie about its
/// attachments).
pub fn check_placeholders(data: &Value, attachments: usize) -> Result<(), PacketError> {
    let mut seen: Vec<u64> = Vec::new();
    // An explicit stack: `data` may be deeper than the call stack allows.
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.get("_placeholder") == Some(&Value::Bool(true)) {
                    if map.len() != 2 {
                        return Err(PacketError::BadPlaceholder("unexpected fields"));
                    }
                    let num = map
                        .get("num")
                        .and_then(Value::as_u64)
                        .ok_or(PacketError::BadPlaceholder("num is not an index"))?;
                    if usize::try_from(num).map_or(true, |n| n >= attachments) {
                        return Err(PacketError::BadPlaceholder("num out of range"));
                    }
                    seen.push(num);
                } else {
                    stack.extend(map.values());
                }
            }
            _ => {}
        }
    }
    if seen.len() != attachments {
        return Err(PacketError::BadPlaceholder(if seen.len() > attachments {
            "duplicated"
        } else {
            "missing"
        }));
    }
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(PacketError::BadPlaceholder("duplicated"));
    }
    Ok(())
}

/// Append `s` as a JSON string (quoted and escaped by serde_json).
pub(crate) fn push_json_str(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 2);
    // Serializing a str into memory cannot fail (no I/O error is possible).
    let _ = serde_json::to_writer(out.writer(), s);
}

/// Write `[/nsp,]` (nothing for the main namespace).
fn push_nsp(out: &mut BytesMut, nsp: &str) {
    debug_assert!(
        nsp.starts_with('/') && !nsp.contains(','),
        "invalid namespace {nsp:?}"
    );
    if nsp != "/" && !nsp.is_empty() {
        out.put_slice(nsp.as_bytes());
        out.put_u8(b',');
    }
}

fn event_frame(prefix: &[u8], nsp: &str, event: &str, json_arg: &[u8]) -> Bytes {
    let mut out =
        BytesMut::with_capacity(prefix.len() + nsp.len() + event.len() + json_arg.len() + 8);
    out.put_slice(prefix);
    push_nsp(&mut out, nsp);
    out.put_u8(b'[');
    push_json_str(&mut out, event);
    if !json_arg.is_empty() {
        out.put_u8(b',');
        out.put_slice(json_arg);
    }
    out.put_u8(b']');
    out.freeze()
}

fn ack_frame(prefix: &[u8], nsp: &str, id: u64, json_arg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + nsp.len() + json_arg.len() + 24);
    out.put_slice(prefix);
    push_nsp(&mut out, nsp);
    out.put_slice(itoa::Buffer::new().format(id).as_bytes());
    out.put_u8(b'[');
    out.put_slice(json_arg);
    out.put_u8(b']');
    out.freeze()
}

/// The EVENT packet `2[/nsp,]["event",<json_arg>]`, built without a
/// [`serde_json::Value`]: the hub serializes an argument once and shares the
/// frame with every recipient.
///
/// `json_arg` must be one serialized JSON value (not checked); empty means no
/// argument (`2["event"]`). `nsp` is a server namespace: `/` or `/name`
/// without `,`. The event name is escaped as a JSON string.
///
/// `encode_event("/app", "loc", br#"{"vehicle":1}"#)` is
/// `2/app,["loc",{"vehicle":1}]`.
pub fn encode_event(nsp: &str, event: &str, json_arg: &[u8]) -> Bytes {
    event_frame(b"2", nsp, event, json_arg)
}

/// [`encode_event`] as an Engine.IO message frame: `42[/nsp,]["event",<json_arg>]`.
pub fn encode_event_message(nsp: &str, event: &str, json_arg: &[u8]) -> Bytes {
    event_frame(b"42", nsp, event, json_arg)
}

/// The ACK packet `3[/nsp,]<id>[<json_arg>]` (an empty `json_arg` gives `[]`).
pub fn encode_ack(nsp: &str, id: u64, json_arg: &[u8]) -> Bytes {
    ack_frame(b"3", nsp, id, json_arg)
}

/// [`encode_ack`] as an Engine.IO message frame: `43[/nsp,]<id>[<json_arg>]`.
pub fn encode_ack_message(nsp: &str, id: u64, json_arg: &[u8]) -> Bytes {
    ack_frame(b"43", nsp, id, json_arg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 10;

    fn packet(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments: 0,
        }
    }

    fn decode(text: &str) -> Result<Packet, PacketError> {
        Packet::decode(text, MAX)
    }

    /// `text` decodes to `expected`, which encodes back to `text`.
    fn both_ways(text: &str, expected: &Packet) {
        assert_eq!(decode(text).as_ref(), Ok(expected), "decoding {text}");
        assert_eq!(expected.encode(), text, "encoding {expected:?}");
    }

    #[test]
    fn spec_connect() {
        use PacketType::Connect;
        both_ways("0", &packet(Connect, "/", None, None));
        both_ways("0/admin,", &packet(Connect, "/admin", None, None));
        both_ways(
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            &packet(
                Connect,
                "/admin",
                None,
                Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"})),
            ),
        );
        both_ways(
            r#"0/admin,{"token":"123"}"#,
            &packet(Connect, "/admin", None, Some(json!({"token": "123"}))),
        );
        both_ways(
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
            &packet(
                Connect,
                "/",
                None,
                Some(json!({"sid": "wZX3oN0bSVIhsaknAAAI"})),
            ),
        );
        both_ways(
            r#"0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}"#,
            &packet(
                Connect,
                "/admin",
                None,
                Some(json!({"sid": "-G5j-67EZFp-q59rADQM"})),
            ),
        );
    }

    #[test]
    fn spec_connect_error() {
        both_ways(
            r#"4{"message":"Not authorized"}"#,
            &packet(
                PacketType::ConnectError,
                "/",
                None,
                Some(json!({"message": "Not authorized"})),
            ),
        );
        // Protocol v4 sent a plain string; still accepted.
        both_ways(
            r#"4/device,"unauthorized""#,
            &packet(
                PacketType::ConnectError,
                "/device",
                None,
                Some(json!("unauthorized")),
            ),
        );
    }

    #[test]
    fn spec_event() {
        use PacketType::Event;
        both_ways(
            r#"2["foo"]"#,
            &packet(Event, "/", None, Some(json!(["foo"]))),
        );
        both_ways(
            r#"2/admin,["bar"]"#,
            &packet(Event, "/admin", None, Some(json!(["bar"]))),
        );
        both_ways(
            r#"212["foo"]"#,
            &packet(Event, "/", Some(12), Some(json!(["foo"]))),
        );
        both_ways(
            r#"2/admin,13["foo"]"#,
            &packet(Event, "/admin", Some(13), Some(json!(["foo"]))),
        );
        both_ways(
            r#"2["hey","Jude"]"#,
            &packet(Event, "/", None, Some(json!(["hey", "Jude"]))),
        );
        both_ways(
            r#"2/admin,1["tellme"]"#,
            &packet(Event, "/admin", Some(1), Some(json!(["tellme"]))),
        );
    }

    #[test]
    fn spec_ack() {
        use PacketType::Ack;
        both_ways(r#"312[]"#, &packet(Ack, "/", Some(12), Some(json!([]))));
        both_ways(
            r#"314["bar"]"#,
            &packet(Ack, "/", Some(14), Some(json!(["bar"]))),
        );
        both_ways(
            r#"3/admin,13["bar"]"#,
            &packet(Ack, "/admin", Some(13), Some(json!(["bar"]))),
        );
    }

    #[test]
    fn spec_disconnect() {
        both_ways("1", &packet(PacketType::Disconnect, "/", None, None));
        both_ways(
            "1/admin,",
            &packet(PacketType::Disconnect, "/admin", None, None),
        );
    }

    #[test]
    fn spec_binary() {
        let one = Packet {
            attachments: 1,
            ..packet(
                PacketType::BinaryEvent,
                "/",
                None,
                Some(json!(["baz", {"_placeholder": true, "num": 0}])),
            )
        };
        both_ways(r#"51-["baz",{"_placeholder":true,"num":0}]"#, &one);
        assert_eq!(one.event_name(), Some("baz"));

        let two = Packet {
            attachments: 2,
            ..packet(
                PacketType::BinaryEvent,
                "/admin",
                None,
                Some(json!(["baz", placeholder(0), placeholder(1)])),
            )
        };
        both_ways(
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            &two,
        );

        let event = Packet {
            attachments: 1,
            ..packet(
                PacketType::BinaryEvent,
                "/",
                Some(14),
                Some(json!(["foo", placeholder(0)])),
            )
        };
        both_ways(r#"51-14["foo",{"_placeholder":true,"num":0}]"#, &event);

        let ack = Packet {
            attachments: 1,
            ..packet(
                PacketType::BinaryAck,
                "/",
                Some(15),
                Some(json!(["bar", placeholder(0)])),
            )
        };
        both_ways(r#"61-15["bar",{"_placeholder":true,"num":0}]"#, &ack);

        let sample = Packet {
            attachments: 1,
            ..packet(
                PacketType::BinaryAck,
                "/admin",
                Some(1),
                Some(json!([placeholder(0)])),
            )
        };
        both_ways(r#"61-/admin,1[{"_placeholder":true,"num":0}]"#, &sample);
        assert_eq!(
            &sample.encode_message()[..],
            br#"461-/admin,1[{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn spec_message_prefix() {
        let foo = packet(PacketType::Event, "/", None, Some(json!(["foo"])));
        assert_eq!(&foo.encode_message()[..], br#"42["foo"]"#);
        let connect = packet(PacketType::Connect, "/", None, None);
        assert_eq!(&connect.encode_message()[..], b"40");
        let admin = packet(PacketType::Connect, "/admin", None, None);
        assert_eq!(&admin.encode_message()[..], b"40/admin,");
    }

    #[test]
    fn lenient_forms() {
        // A namespace without its comma at the end of the text.
        assert_eq!(
            decode("1/admin"),
            Ok(packet(PacketType::Disconnect, "/admin", None, None))
        );
        assert_eq!(
            decode("0/"),
            Ok(packet(PacketType::Connect, "/", None, None))
        );
        // The main namespace written out.
        assert_eq!(
            decode(r#"2/,["a"]"#),
            Ok(packet(PacketType::Event, "/", None, Some(json!(["a"]))))
        );
        // Leading zeros in the id and the attachment count.
        assert_eq!(decode(r#"2007["a"]"#).map(|p| p.id), Ok(Some(7)));
        let zero = Packet {
            attachments: 1,
            ..packet(
                PacketType::BinaryEvent,
                "/",
                None,
                Some(json!(["a", placeholder(0)])),
            )
        };
        assert_eq!(
            decode(r#"501-["a",{"_placeholder":true,"num":0}]"#),
            Ok(zero)
        );
        // A binary event with no attachment.
        let none = decode(r#"50-["a"]"#).unwrap();
        assert_eq!(none.kind, PacketType::BinaryEvent);
        assert_eq!(none.encode(), r#"50-["a"]"#);
        // Whitespace around the JSON, as serde_json allows it.
        assert_eq!(
            decode(r#"2 ["a"] "#).map(|p| p.data),
            Ok(Some(json!(["a"])))
        );
        // Largest id.
        assert_eq!(
            decode(r#"318446744073709551615[]"#).map(|p| p.id),
            Ok(Some(u64::MAX))
        );
    }

    #[test]
    fn rejects_malformed() {
        use PacketError::*;
        assert_eq!(decode(""), Err(Empty));
        assert_eq!(decode("7"), Err(UnknownType(b'7')));
        assert_eq!(decode("a"), Err(UnknownType(b'a')));
        assert_eq!(decode("é"), Err(UnknownType(0xc3)));
        assert_eq!(decode("-1"), Err(UnknownType(b'-')));

        // Attachments.
        assert_eq!(decode(r#"5["a"]"#), Err(BadAttachments));
        assert_eq!(decode(r#"5-["a"]"#), Err(BadAttachments));
        assert_eq!(decode(r#"5x-["a"]"#), Err(BadAttachments));
        assert_eq!(decode(r#"51"#), Err(BadAttachments));
        assert_eq!(decode(r#"5é-["a"]"#), Err(BadAttachments));
        assert_eq!(
            decode(&format!("5{}-[\"a\"]", "9".repeat(30))),
            Err(BadAttachments)
        );
        assert_eq!(decode(r#"511-["a"]"#), Err(TooManyAttachments { max: MAX }));
        assert_eq!(
            decode(r#"599999999999999999999-["a"]"#),
            Err(BadAttachments)
        );
        assert_eq!(
            decode(r#"518446744073709551615-["a"]"#),
            Err(TooManyAttachments { max: MAX })
        );

        // Namespaces.
        assert_eq!(decode("0/a\nb,"), Err(BadNamespace));
        assert_eq!(decode("0/a\u{0}b,"), Err(BadNamespace));
        assert_eq!(
            decode(&format!("0/{},", "a".repeat(MAX_NAMESPACE_LEN))),
            Err(BadNamespace)
        );
        assert!(decode(&format!("0/{},", "a".repeat(MAX_NAMESPACE_LEN - 1))).is_ok());
        // No namespace, so '/admin' is the JSON.
        assert!(matches!(decode("0admin,"), Err(BadJson(_))));

        // Ids.
        assert_eq!(
            decode(r#"218446744073709551616["a"]"#),
            Err(BadId("out of range"))
        );
        assert_eq!(
            decode(r#"299999999999999999999["a"]"#),
            Err(BadId("out of range"))
        );
        assert_eq!(
            decode(&format!("2{}[\"a\"]", "1".repeat(21))),
            Err(BadId("too long"))
        );
        assert_eq!(
            decode(&format!("2{}[\"a\"]", "0".repeat(1000))),
            Err(BadId("too long"))
        );
        assert_eq!(decode(r#"3["a"]"#), Err(BadId("missing on an ack")));
        assert_eq!(decode("012"), Err(BadId("not allowed on this packet type")));
        assert_eq!(
            decode("1/admin,1"),
            Err(BadId("not allowed on this packet type"))
        );
        assert_eq!(
            decode(r#"45{"message":"x"}"#),
            Err(BadId("not allowed on this packet type"))
        );

        // JSON.
        assert!(matches!(decode(r#"2["a""#), Err(BadJson(_))));
        assert!(matches!(decode(r#"2["a"]x"#), Err(BadJson(_))));
        assert!(matches!(decode(r#"2["a"],["b"]"#), Err(BadJson(_))));
        assert!(matches!(decode("2[\"\\ud800\"]"), Err(BadJson(_))));
        // "-1" is valid JSON (a number), not an array: a shape error.
        assert!(matches!(decode("2-1"), Err(BadPayload(_))));
        assert!(matches!(
            decode(&format!("2{}", "[".repeat(100_000))),
            Err(BadJson(_))
        ));
        assert!(matches!(decode("2[1e999]"), Err(BadJson(_))));

        // Shapes.
        assert!(matches!(decode("0[]"), Err(BadPayload(_))));
        assert!(matches!(decode(r#"0"x""#), Err(BadPayload(_))));
        assert!(matches!(decode("0null"), Err(BadPayload(_))));
        assert!(matches!(decode("1{}"), Err(BadPayload(_))));
        assert!(matches!(decode("2"), Err(BadPayload(_))));
        assert!(matches!(decode("212"), Err(BadPayload(_))));
        assert!(matches!(decode("2[]"), Err(BadPayload(_))));
        assert!(matches!(decode("2[1]"), Err(BadPayload(_))));
        assert!(matches!(decode(r#"2{"a":1}"#), Err(BadPayload(_))));
        assert!(matches!(decode(r#"2"a""#), Err(BadPayload(_))));
        assert!(matches!(decode("31"), Err(BadPayload(_))));
        assert!(matches!(decode("31{}"), Err(BadPayload(_))));
        assert!(matches!(decode("4"), Err(BadPayload(_))));
        assert!(matches!(decode("4[]"), Err(BadPayload(_))));
        assert!(matches!(decode("41"), Err(BadId(_))));
        assert!(matches!(decode("4null"), Err(BadPayload(_))));
        assert!(matches!(decode("50-"), Err(BadPayload(_))));
        assert!(matches!(decode("60-"), Err(BadId(_))));
        assert!(matches!(decode("60-1"), Err(BadPayload(_))));
    }

    #[test]
    fn rejects_bad_placeholders() {
        use PacketError::BadPlaceholder;
        let bad = |text: &str| match decode(text) {
            Err(BadPlaceholder(_)) => {}
            other => panic!("{text}: {other:?}"),
        };
        bad(r#"51-["a"]"#); // missing
        bad(r#"51-["a",{"_placeholder":true,"num":1}]"#); // out of range
        bad(r#"51-["a",{"_placeholder":true,"num":-1}]"#);
        bad(r#"51-["a",{"_placeholder":true,"num":0.5}]"#);
        bad(r#"51-["a",{"_placeholder":true,"num":"0"}]"#);
        bad(r#"51-["a",{"_placeholder":true}]"#);
        bad(r#"51-["a",{"_placeholder":true,"num":0,"x":1}]"#);
        bad(r#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#);
        bad(r#"52-["a",{"_placeholder":true,"num":1},{"_placeholder":true,"num":1}]"#);
        bad(r#"51-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#);
        bad(r#"50-["a",{"_placeholder":true,"num":0}]"#);
        bad(r#"61-1[{"_placeholder":true,"num":18446744073709551615}]"#);
        // Nested placeholders count; other "_placeholder" values are data.
        assert!(
            decode(
                r#"52-["a",{"x":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]"#
            )
            .is_ok()
        );
        assert!(decode(r#"50-["a",{"_placeholder":false,"num":0}]"#).is_ok());
        // Non-binary types carry placeholders as plain data.
        assert!(decode(r#"2["a",{"_placeholder":true,"num":7}]"#).is_ok());

        assert_eq!(
            check_placeholders(&json!([placeholder(1), placeholder(0)]), 2),
            Ok(())
        );
        assert_eq!(check_placeholders(&json!(null), 0), Ok(()));
        assert!(check_placeholders(&json!(null), 1).is_err());
    }

    #[test]
    fn check_placeholders_handles_deep_values() {
        let mut deep = json!(placeholder(0));
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(check_placeholders(&deep, 1), Ok(()));
        // Dropping a deep Value recurses; unwrap it iteratively.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn encode_promotes_binary_and_handles_odd_values() {
        let event = Packet {
            attachments: 1,
            ..packet(
                PacketType::Event,
                "/",
                Some(3),
                Some(json!(["a", placeholder(0)])),
            )
        };
        assert_eq!(event.encode(), r#"51-3["a",{"_placeholder":true,"num":0}]"#);
        let ack = Packet {
            attachments: 2,
            ..packet(
                PacketType::Ack,
                "/x",
                Some(3),
                Some(json!([placeholder(0), placeholder(1)])),
            )
        };
        assert!(ack.encode().starts_with("62-/x,3["));
        assert_eq!(packet(PacketType::Connect, "", None, None).encode(), "0");
    }

    #[test]
    fn event_name() {
        let p = |text| decode(text).unwrap();
        assert_eq!(p(r#"2["loc",{}]"#).event_name(), Some("loc"));
        assert_eq!(p(r#"2["\u00e9v\"t"]"#).event_name(), Some("év\"t"));
        assert_eq!(p(r#"31["loc"]"#).event_name(), None);
        assert_eq!(p("0").event_name(), None);
        assert_eq!(Packet::new(PacketType::Event, "/").event_name(), None);
    }

    #[test]
    fn fast_event_frames() {
        assert_eq!(
            &encode_event("/app", "loc", br#"{"vehicle":1}"#)[..],
            br#"2/app,["loc",{"vehicle":1}]"#
        );
        assert_eq!(
            &encode_event_message("/app", "loc", br#"{"vehicle":1}"#)[..],
            br#"42/app,["loc",{"vehicle":1}]"#
        );
        assert_eq!(
            &encode_event("/", "hey", br#""Jude""#)[..],
            br#"2["hey","Jude"]"#
        );
        assert_eq!(
            &encode_event_message("/", "ping", b"")[..],
            br#"42["ping"]"#
        );
        // The name is a JSON string, escaped.
        let odd = "quo\"te\\back\nline\u{1}é🚗";
        let frame = encode_event("/", odd, b"1");
        let decoded = Packet::decode(std::str::from_utf8(&frame).unwrap(), MAX).unwrap();
        assert_eq!(decoded.event_name(), Some(odd));
        assert_eq!(decoded.data, Some(json!([odd, 1])));
        assert_eq!(
            &frame[..],
            format!("2[{},1]", serde_json::to_string(odd).unwrap()).as_bytes()
        );
        // Same bytes as the general encoder.
        let arg = json!({"vehicle": 7, "points": [{"t": 1, "lat": 37.5, "lon": 127.0}]});
        let general = Packet {
            data: Some(json!(["loc", arg])),
            ..Packet::new(PacketType::Event, "/app")
        };
        assert_eq!(
            encode_event_message("/app", "loc", arg.to_string().as_bytes()),
            general.encode_message()
        );
    }

    #[test]
    fn fast_ack_frames() {
        assert_eq!(&encode_ack("/", 12, b"")[..], b"312[]");
        assert_eq!(
            &encode_ack("/admin", 13, br#""bar""#)[..],
            br#"3/admin,13["bar"]"#
        );
        assert_eq!(
            &encode_ack_message("/device", 7, br#"{"ok":true,"stored":3}"#)[..],
            br#"43/device,7[{"ok":true,"stored":3}]"#
        );
        assert_eq!(
            &encode_ack_message("/", u64::MAX, b"1")[..],
            b"4318446744073709551615[1]"
        );
        let frame = encode_ack_message("/device", 9, br#"{"ok":false,"error":"x"}"#);
        let decoded = Packet::decode(std::str::from_utf8(&frame[1..]).unwrap(), MAX).unwrap();
        assert_eq!(
            decoded,
            packet(
                PacketType::Ack,
                "/device",
                Some(9),
                Some(json!([{"ok": false, "error": "x"}]))
            )
        );
    }

    #[test]
    fn decode_bytes_checks_utf8() {
        assert_eq!(
            Packet::decode_bytes(b"0/a\xff,", MAX),
            Err(PacketError::BadNamespace)
        );
        assert!(matches!(
            Packet::decode_bytes(b"2[\"\xff\"]", MAX),
            Err(PacketError::BadJson(_))
        ));
        assert!(matches!(
            Packet::decode_bytes(b"2[\"a\"]\xff", MAX),
            Err(PacketError::BadJson(_))
        ));
    }

    #[test]
    fn never_panics_on_prefixes_and_mutations() {
        // Every prefix of every example, and each byte replaced by a few
        // interesting ones: decoding may fail but never panics, and what
        // decodes encodes to text that decodes to the same packet.
        let examples = [
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            r#"4{"message":"Not authorized"}"#,
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
            r#"3/admin,13["bar"]"#,
            r#"2/é€,7["é",1.5e3,-0,null]"#,
        ];
        let replacements = ["", "/", ",", "-", "0", "9", "é", "[", "\u{0}"];
        for example in examples {
            let chars: Vec<(usize, char)> = example.char_indices().collect();
            for &(i, c) in &chars {
                let prefix = &example[..i];
                let tail = &example[i + c.len_utf8()..];
                let mut variants = vec![prefix.to_owned()];
                variants.extend(replacements.iter().map(|r| format!("{prefix}{r}{tail}")));
                for text in variants {
                    if let Ok(p) = Packet::decode(&text, MAX) {
                        assert_eq!(Packet::decode(&p.encode(), MAX).as_ref(), Ok(&p), "{text}");
                    }
                }
            }
        }
    }
}
