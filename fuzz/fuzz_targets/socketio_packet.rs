//! Socket.IO decoding on arbitrary text never panics; a decoded packet encodes
//! to a canonical text that decodes to the same packet, and the fast frame
//! encoders agree with the general encoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roadhub::socketio::packet::{
    Packet, PacketType, encode_ack, encode_ack_message, encode_event, encode_event_message,
};
use serde_json::Value;

const MAX_ATTACHMENTS: usize = 10;

fuzz_target!(|data: &[u8]| {
    let decoded = Packet::decode_bytes(data, MAX_ATTACHMENTS);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(Packet::decode(text, MAX_ATTACHMENTS), decoded);
    let Ok(packet) = decoded else {
        return;
    };

    let canonical = packet.encode();
    let again = Packet::decode(&canonical, MAX_ATTACHMENTS).expect("canonical text decodes");
    assert_eq!(again, packet);
    assert_eq!(again.encode(), canonical);
    let message = packet.encode_message();
    assert_eq!(message[0], b'4');
    assert_eq!(&message[1..], canonical.as_bytes());

    // The fast paths build the same bytes from pre-serialized JSON.
    let Some(Value::Array(args)) = &packet.data else {
        return;
    };
    match (packet.kind, packet.id, args.as_slice()) {
        (PacketType::Event, None, [Value::String(name), rest @ ..]) if rest.len() <= 1 => {
            let arg = rest.first().map(Value::to_string).unwrap_or_default();
            let frame = encode_event(&packet.nsp, name, arg.as_bytes());
            assert_eq!(&frame[..], canonical.as_bytes());
            let frame = encode_event_message(&packet.nsp, name, arg.as_bytes());
            assert_eq!(frame, message);
        }
        (PacketType::Ack, Some(id), rest) if rest.len() <= 1 => {
            let arg = rest.first().map(Value::to_string).unwrap_or_default();
            let frame = encode_ack(&packet.nsp, id, arg.as_bytes());
            assert_eq!(&frame[..], canonical.as_bytes());
            let frame = encode_ack_message(&packet.nsp, id, arg.as_bytes());
            assert_eq!(frame, message);
        }
        _ => {}
    }
});
