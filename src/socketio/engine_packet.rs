//! Engine.IO protocol 4 packets: the WebSocket text-frame form and the HTTP
//! long-polling payload form.
//!
//! Spec: <https://socket.io/docs/v4/engine-io-protocol/> ("Packet encoding").
//!
//! # Format
//!
//! A packet is one ASCII type digit then optional data:
//!
//! | type    | id | data                                       |
//! |---------|----|--------------------------------------------|
//! | open    | 0  | the handshake JSON ([`open_payload`])      |
//! | close   | 1  | none                                       |
//! | ping    | 2  | optional (`2probe` during the upgrade)     |
//! | pong    | 3  | optional (`3probe` answers `2probe`)       |
//! | message | 4  | UTF-8 text (`4hello`)                      |
//! | upgrade | 5  | none                                       |
//! | noop    | 6  | none                                       |
//!
//! Over WebSocket each packet is its own frame; binary data is a raw binary
//! frame with no type prefix. Over HTTP long-polling a body holds several
//! packets separated by the record separator `0x1e`, and a binary packet is
//! `b` followed by its standard base64 (`4hello\x1ebAQIDBA==`).
//!
//! Decoding slices the input [`Bytes`]: message, ping and pong data share the
//! frame's memory. Only base64 binary packets (polling) are copied, decoded.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use bytes::{BufMut as _, Bytes, BytesMut};

/// The record separator between the packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// Standard base64 that accepts input with or without `=` padding (clients pad,
/// but nothing is gained by refusing a payload that does not).
const BASE64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket {
    /// `0`: the handshake JSON (see [`open_payload`]).
    Open(Bytes),
    /// `1`: the transport can be closed.
    Close,
    /// `2`: heartbeat or upgrade probe; data is `probe` or empty.
    Ping(Bytes),
    /// `3`: the answer to a ping, echoing its data.
    Pong(Bytes),
    /// `4`: a text message; always valid UTF-8 when decoded here.
    Message(Bytes),
    /// Binary data: a raw WebSocket binary frame, or `b<base64>` in a polling
    /// payload.
    Binary(Bytes),
    /// `5`: completes an upgrade to WebSocket.
    Upgrade,
    /// `6`: no-op, used to close a pending poll during an upgrade.
    Noop,
}

/// Why an Engine.IO frame or payload was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    #[error("text packet is not valid UTF-8")]
    InvalidUtf8,
    #[error("binary packet is not valid base64")]
    InvalidBase64,
    #[error("payload is larger than the maximum payload size")]
    TooLarge,
    #[error("payload holds more packets than allowed")]
    TooManyPackets,
}

impl EnginePacket {
    /// Decode a WebSocket text frame (`4hello`, `2probe`, `5`, ...), or one
    /// text packet of a polling payload.
    ///
    /// The data of `Open`, `Ping`, `Pong` and `Message` is a slice of `frame`
    /// (no copy). Data after the type of `Close`, `Upgrade` and `Noop` is
    /// ignored, as the reference implementation does. A `b` (base64 binary)
    /// packet is not a text frame: it exists only in polling payloads, see
    /// [`decode_payload`]; a WebSocket binary frame is simply
    /// `EnginePacket::Binary(frame)`.
    pub fn decode_text(frame: Bytes) -> Result<Self, EngineError> {
        let &first = frame.first().ok_or(EngineError::Empty)?;
        if std::str::from_utf8(&frame).is_err() {
            return Err(EngineError::InvalidUtf8);
        }
        let data = || frame.slice(1..);
        Ok(match first {
            b'0' => Self::Open(data()),
            b'1' => Self::Close,
            b'2' => Self::Ping(data()),
            b'3' => Self::Pong(data()),
            b'4' => Self::Message(data()),
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            other => return Err(EngineError::UnknownType(other)),
        })
    }

    /// Encode as a WebSocket text frame; `None` for `Binary`, which is sent
    /// as a raw binary frame (its bytes as they are).
    pub fn encode_text(&self) -> Option<Bytes> {
        let (kind, data) = self.text_parts()?;
        let mut out = BytesMut::with_capacity(1 + data.len());
        out.put_u8(kind);
        out.put_slice(data);
        Some(out.freeze())
    }

    /// The type digit and the data of a text packet; `None` for `Binary`.
    fn text_parts(&self) -> Option<(u8, &[u8])> {
        Some(match self {
            Self::Open(d) => (b'0', d),
            Self::Close => (b'1', &[]),
            Self::Ping(d) => (b'2', d),
            Self::Pong(d) => (b'3', d),
            Self::Message(d) => (b'4', d),
            Self::Upgrade => (b'5', &[]),
            Self::Noop => (b'6', &[]),
            Self::Binary(_) => return None,
        })
    }
}

/// Split an HTTP long-polling body (packets separated by `0x1e`; a binary
/// packet is `b` + standard base64) into packets.
///
/// Fails if the body is over `max_payload` bytes or holds more than
/// `max_packets` packets (checked before anything is decoded), if any packet
/// is empty or invalid. Text packets slice `body`; binary packets are decoded
/// into new buffers.
pub fn decode_payload(
    body: Bytes,
    max_payload: usize,
    max_packets: usize,
) -> Result<Vec<EnginePacket>, EngineError> {
    if body.len() > max_payload {
        return Err(EngineError::TooLarge);
    }
    if body.is_empty() {
        return Err(EngineError::Empty);
    }
    let count = memchr::memchr_iter(SEPARATOR, &body).count() + 1;
    if count > max_packets {
        return Err(EngineError::TooManyPackets);
    }
    let mut packets = Vec::with_capacity(count);
    let mut start = 0;
    loop {
        let end = memchr::memchr(SEPARATOR, &body[start..]).map_or(body.len(), |i| start + i);
        packets.push(decode_payload_packet(body.slice(start..end))?);
        if end == body.len() {
            return Ok(packets);
        }
        start = end + 1;
    }
}

/// One packet of a polling payload: `b<base64>` or a text packet.
fn decode_payload_packet(packet: Bytes) -> Result<EnginePacket, EngineError> {
    match packet.split_first() {
        Some((b'b', b64)) => {
            let mut data = Vec::with_capacity(b64.len() / 4 * 3 + 3);
            BASE64_DECODE
                .decode_vec(b64, &mut data)
                .map_err(|_| EngineError::InvalidBase64)?;
            Ok(EnginePacket::Binary(Bytes::from(data)))
        }
        _ => EnginePacket::decode_text(packet),
    }
}

/// Append packets to `out` as one polling payload: a `0x1e` separator before
/// each packet unless `out` is empty, binary packets as `b` + base64.
///
/// Calling it again on the same buffer (or mixing it with [`push_text_frame`]
/// and [`push_binary_frame`]) keeps building the same payload.
pub fn encode_payload(packets: &[EnginePacket], out: &mut BytesMut) {
    for packet in packets {
        match packet.text_parts() {
            Some((kind, data)) => {
                separate(out, 1 + data.len());
                out.put_u8(kind);
                out.put_slice(data);
            }
            None => {
                if let EnginePacket::Binary(data) = packet {
                    push_binary_frame(out, data);
                }
            }
        }
    }
}

/// Append one already encoded text packet (a WebSocket text frame such as
/// the output of [`super::packet::encode_event_message`], type digit included)
/// to a polling payload, with a separator unless `out` is empty.
pub fn push_text_frame(out: &mut BytesMut, frame: &[u8]) {
    separate(out, frame.len());
    out.put_slice(frame);
}

/// Append binary data (what a WebSocket binary frame would carry) to a polling
/// payload as `b` + base64, with a separator unless `out` is empty.
pub fn push_binary_frame(out: &mut BytesMut, data: &[u8]) {
    let encoded = data.len().div_ceil(3) * 4;
    separate(out, 1 + encoded);
    out.put_u8(b'b');
    let start = out.len();
    out.resize(start + encoded, 0);
    // The slice has exactly the padded encoded length, so this cannot fail.
    let written = general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// Reserve room for `additional` bytes plus a separator, and write the
/// separator unless the payload is still empty.
fn separate(out: &mut BytesMut, additional: usize) {
    out.reserve(additional + 1);
    if !out.is_empty() {
        out.put_u8(SEPARATOR);
    }
}

/// The handshake JSON carried by the open packet:
/// `{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
pub fn open_payload(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> Bytes {
    let mut out = BytesMut::with_capacity(96 + sid.len());
    out.put_slice(b"{\"sid\":");
    super::packet::push_json_str(&mut out, sid);
    out.put_slice(b",\"upgrades\":[");
    for (i, upgrade) in upgrades.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        super::packet::push_json_str(&mut out, upgrade);
    }
    out.put_slice(b"],\"pingInterval\":");
    out.put_slice(itoa::Buffer::new().format(ping_interval_ms).as_bytes());
    out.put_slice(b",\"pingTimeout\":");
    out.put_slice(itoa::Buffer::new().format(ping_timeout_ms).as_bytes());
    out.put_slice(b",\"maxPayload\":");
    out.put_slice(itoa::Buffer::new().format(max_payload).as_bytes());
    out.put_u8(b'}');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<EnginePacket, EngineError> {
        EnginePacket::decode_text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn payload(s: &[u8]) -> Result<Vec<EnginePacket>, EngineError> {
        decode_payload(Bytes::copy_from_slice(s), 1_000_000, 100)
    }

    fn encoded(packets: &[EnginePacket]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_payload(packets, &mut out);
        out.to_vec()
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn spec_packet_types() {
        assert_eq!(
            text("0{\"sid\":\"x\"}"),
            Ok(EnginePacket::Open(b("{\"sid\":\"x\"}")))
        );
        assert_eq!(text("1"), Ok(EnginePacket::Close));
        assert_eq!(text("2"), Ok(EnginePacket::Ping(Bytes::new())));
        assert_eq!(text("3"), Ok(EnginePacket::Pong(Bytes::new())));
        assert_eq!(text("4hello"), Ok(EnginePacket::Message(b("hello"))));
        assert_eq!(text("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(text("6"), Ok(EnginePacket::Noop));
    }

    #[test]
    fn spec_upgrade_probe() {
        // Client: 2probe; server: 3probe; client: 5.
        assert_eq!(text("2probe"), Ok(EnginePacket::Ping(b("probe"))));
        assert_eq!(
            EnginePacket::Pong(b("probe")).encode_text(),
            Some(b("3probe"))
        );
        assert_eq!(text("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(EnginePacket::Noop.encode_text(), Some(b("6")));
    }

    #[test]
    fn spec_heartbeat() {
        assert_eq!(EnginePacket::Ping(Bytes::new()).encode_text(), Some(b("2")));
        assert_eq!(text("3"), Ok(EnginePacket::Pong(Bytes::new())));
    }

    #[test]
    fn spec_websocket_message() {
        assert_eq!(
            EnginePacket::Message(b("hello")).encode_text(),
            Some(b("4hello"))
        );
        assert_eq!(EnginePacket::Binary(b("\x01\x02")).encode_text(), None);
        // UTF-8 text, not UTF-16 code units: "€" is three bytes.
        assert_eq!(text("4€"), Ok(EnginePacket::Message(b("€"))));
    }

    #[test]
    fn spec_polling_payload() {
        let packets = vec![
            EnginePacket::Message(b("hello")),
            EnginePacket::Ping(Bytes::new()),
            EnginePacket::Message(b("world")),
        ];
        assert_eq!(payload(b"4hello\x1e2\x1e4world"), Ok(packets.clone()));
        assert_eq!(encoded(&packets), b"4hello\x1e2\x1e4world");
    }

    #[test]
    fn spec_polling_binary() {
        let packets = vec![
            EnginePacket::Message(b("hello")),
            EnginePacket::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(payload(b"4hello\x1ebAQIDBA=="), Ok(packets.clone()));
        assert_eq!(encoded(&packets), b"4hello\x1ebAQIDBA==");
    }

    #[test]
    fn spec_sample_session_bodies() {
        // The Socket.IO spec's sample session: two events in one POST body,
        // the namespace CONNECT, and the open packet of the first GET.
        assert_eq!(
            payload(b"42[\"hello\"]\x1e42[\"world\"]"),
            Ok(vec![
                EnginePacket::Message(b("2[\"hello\"]")),
                EnginePacket::Message(b("2[\"world\"]")),
            ])
        );
        assert_eq!(payload(b"40"), Ok(vec![EnginePacket::Message(b("0"))]));
        let open = open_payload(
            "lv_VI97HAXpY6yYWAAAC",
            &["websocket"],
            25000,
            5000,
            1_000_000,
        );
        assert_eq!(
            encoded(&[EnginePacket::Open(open)]),
            b"0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":5000,\"maxPayload\":1000000}"
        );
    }

    #[test]
    fn open_payload_is_the_spec_handshake() {
        let json = open_payload(
            "lv_VI97HAXpY6yYWAAAC",
            &["websocket"],
            25000,
            20000,
            1_000_000,
        );
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "sid": "lv_VI97HAXpY6yYWAAAC",
                "upgrades": ["websocket"],
                "pingInterval": 25000,
                "pingTimeout": 20000,
                "maxPayload": 1000000
            })
        );
        let none = open_payload("a\"b\\", &[], 1, 2, 3);
        assert_eq!(
            &none[..],
            br#"{"sid":"a\"b\\","upgrades":[],"pingInterval":1,"pingTimeout":2,"maxPayload":3}"#
        );
        let two = open_payload("s", &["websocket", "webtransport"], 1, 2, 3);
        assert!(two.starts_with(br#"{"sid":"s","upgrades":["websocket","webtransport"],"#));
    }

    #[test]
    fn decoding_slices_the_frame() {
        let frame = Bytes::from_static(b"4hello");
        let Ok(EnginePacket::Message(data)) = EnginePacket::decode_text(frame.clone()) else {
            panic!("not a message");
        };
        assert_eq!(data.as_ptr(), frame[1..].as_ptr());

        let body = Bytes::from(b"2probe\x1e4abc".to_vec());
        let packets = decode_payload(body.clone(), 100, 10).unwrap();
        let EnginePacket::Message(data) = &packets[1] else {
            panic!("not a message");
        };
        assert_eq!(data.as_ptr(), body[8..].as_ptr());
    }

    #[test]
    fn ignores_data_after_dataless_types() {
        assert_eq!(text("1x"), Ok(EnginePacket::Close));
        assert_eq!(text("5probe"), Ok(EnginePacket::Upgrade));
        assert_eq!(text("6abc"), Ok(EnginePacket::Noop));
    }

    #[test]
    fn rejects_bad_text_frames() {
        assert_eq!(text(""), Err(EngineError::Empty));
        assert_eq!(text("7"), Err(EngineError::UnknownType(b'7')));
        assert_eq!(text("x4"), Err(EngineError::UnknownType(b'x')));
        // Base64 binary is only valid inside a polling payload.
        assert_eq!(text("bAQID"), Err(EngineError::UnknownType(b'b')));
        assert_eq!(text("€"), Err(EngineError::UnknownType(0xe2)));
        assert_eq!(
            EnginePacket::decode_text(Bytes::from_static(b"4\xff\xfe")),
            Err(EngineError::InvalidUtf8)
        );
        assert_eq!(
            EnginePacket::decode_text(Bytes::from_static(b"4\xe2\x82")),
            Err(EngineError::InvalidUtf8)
        );
        assert_eq!(
            EnginePacket::decode_text(Bytes::from_static(b"\xc3")),
            Err(EngineError::InvalidUtf8)
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(payload(b""), Err(EngineError::Empty));
        assert_eq!(payload(b"\x1e"), Err(EngineError::Empty));
        assert_eq!(payload(b"4a\x1e"), Err(EngineError::Empty));
        assert_eq!(payload(b"4a\x1e\x1e4b"), Err(EngineError::Empty));
        assert_eq!(payload(b"4a\x1e9"), Err(EngineError::UnknownType(b'9')));
        assert_eq!(payload(b"4a\x1e4\xff"), Err(EngineError::InvalidUtf8));
        assert_eq!(payload(b"b!!!!"), Err(EngineError::InvalidBase64));
        assert_eq!(payload(b"bAQIDBA=x"), Err(EngineError::InvalidBase64));
        assert_eq!(payload(b"bA"), Err(EngineError::InvalidBase64));
        assert_eq!(payload(b"bAQIDBA==="), Err(EngineError::InvalidBase64));
    }

    #[test]
    fn payload_limits() {
        let body = Bytes::from_static(b"4hello\x1e4world");
        assert!(decode_payload(body.clone(), body.len(), 2).is_ok());
        assert_eq!(
            decode_payload(body.clone(), body.len() - 1, 2),
            Err(EngineError::TooLarge)
        );
        assert_eq!(
            decode_payload(body, 100, 1),
            Err(EngineError::TooManyPackets)
        );
        // Packet count is checked before any packet is decoded.
        let many = Bytes::from(vec![SEPARATOR; 1000]);
        assert_eq!(
            decode_payload(many, 10_000, 100),
            Err(EngineError::TooManyPackets)
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"4"), 0, 1),
            Err(EngineError::TooLarge)
        );
    }

    #[test]
    fn binary_padding_is_optional() {
        assert_eq!(
            payload(b"bAQIDBA"),
            Ok(vec![EnginePacket::Binary(Bytes::from_static(&[
                1, 2, 3, 4
            ]))])
        );
        assert_eq!(payload(b"b"), Ok(vec![EnginePacket::Binary(Bytes::new())]));
    }

    #[test]
    fn round_trips() {
        let all = vec![
            EnginePacket::Open(open_payload("sid", &["websocket"], 25000, 20000, 1_000_000)),
            EnginePacket::Close,
            EnginePacket::Ping(Bytes::new()),
            EnginePacket::Ping(b("probe")),
            EnginePacket::Pong(b("probe")),
            EnginePacket::Message(b("2[\"hey\",\"Jude\"]")),
            EnginePacket::Message(Bytes::new()),
            EnginePacket::Message(b("ünïcödé ✓ 🚗")),
            EnginePacket::Binary(Bytes::new()),
            EnginePacket::Binary(Bytes::from_static(&[0])),
            EnginePacket::Binary(Bytes::from_static(&[0xff, 0x1e])),
            EnginePacket::Binary(Bytes::from((0..=255).collect::<Vec<u8>>())),
            EnginePacket::Upgrade,
            EnginePacket::Noop,
        ];
        for packet in &all {
            if let Some(frame) = packet.encode_text() {
                assert_eq!(EnginePacket::decode_text(frame).as_ref(), Ok(packet));
            }
            let single = encoded(std::slice::from_ref(packet));
            assert_eq!(payload(&single), Ok(vec![packet.clone()]));
        }
        assert_eq!(payload(&encoded(&all)), Ok(all.clone()));
    }

    #[test]
    fn payload_builds_across_calls() {
        let mut out = BytesMut::new();
        encode_payload(&[EnginePacket::Noop], &mut out);
        push_text_frame(&mut out, b"42[\"a\"]");
        push_binary_frame(&mut out, &[1, 2, 3, 4]);
        encode_payload(&[], &mut out);
        encode_payload(&[EnginePacket::Message(b("x"))], &mut out);
        assert_eq!(&out[..], b"6\x1e42[\"a\"]\x1ebAQIDBA==\x1e4x");

        let mut first = BytesMut::new();
        push_binary_frame(&mut first, &[]);
        assert_eq!(&first[..], b"b");
    }

    #[test]
    fn randomized_round_trip() {
        // A small deterministic generator: no extra dependency needed.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..500 {
            let n = (next() % 6) as usize + 1;
            let mut packets = Vec::with_capacity(n);
            for _ in 0..n {
                let len = (next() % 40) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                packets.push(match next() % 3 {
                    0 => EnginePacket::Binary(Bytes::from(bytes)),
                    1 => {
                        // Text without the separator.
                        let s: String = bytes
                            .iter()
                            .map(|&c| char::from(b' ' + c % 90))
                            .chain("é€🚗".chars().take(len % 4))
                            .collect();
                        EnginePacket::Message(Bytes::from(s))
                    }
                    _ => EnginePacket::Ping(Bytes::from_static(b"probe")),
                });
            }
            assert_eq!(payload(&encoded(&packets)), Ok(packets));
        }
    }
}
