//! Engine.IO decoding on arbitrary bytes: polling payloads and WebSocket text
//! frames never panic, and whatever decodes re-encodes to the same packets.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use roadhub::socketio::engine_packet::{EnginePacket, decode_payload, encode_payload};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);

    if let Ok(packets) = decode_payload(input.clone(), 1 << 20, 64) {
        assert!(!packets.is_empty());
        let mut body = BytesMut::new();
        encode_payload(&packets, &mut body);
        let again = decode_payload(body.freeze(), usize::MAX, usize::MAX);
        assert_eq!(again.as_ref(), Ok(&packets));
    }

    if let Ok(packet) = EnginePacket::decode_text(input.clone()) {
        let frame = packet
            .encode_text()
            .expect("a decoded text packet encodes as text");
        assert!(input.starts_with(&frame));
        assert_eq!(EnginePacket::decode_text(frame), Ok(packet));
    }
});
