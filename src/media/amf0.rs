//! AMF0, the value encoding of FLV script tags (`onMetaData`) and RTMP
//! commands.
//!
//! Spec: Adobe *Action Message Format -- AMF 0* (December 2007), section 2.
//! The types a media server meets are handled; references, XML documents and
//! typed objects are refused.

use bytes::{BufMut, BytesMut};

use super::{MediaError, Result};

/// Type markers (section 2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
}

/// Nesting allowed when decoding, against hostile input.
const MAX_DEPTH: usize = 16;

/// An AMF0 value. Objects and ECMA arrays keep their properties in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `number-type`: an IEEE 754 double.
    Number(f64),
    /// `boolean-type`.
    Boolean(bool),
    /// `string-type` or `long-string-type`.
    String(String),
    /// `object-type`: anonymous object.
    Object(Vec<(String, Value)>),
    /// `null-type`.
    Null,
    /// `undefined-type`.
    Undefined,
    /// `ecma-array-type`: associative array (what `onMetaData` carries).
    EcmaArray(Vec<(String, Value)>),
    /// `strict-array-type`.
    StrictArray(Vec<Value>),
    /// `date-type`: ms since the Unix epoch (the time zone is ignored).
    Date(f64),
}

impl Value {
    /// The property `key` of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props) | Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// The number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Appends the encoded value to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Value::Number(n) => {
                out.put_u8(marker::NUMBER);
                out.put_f64(*n);
            }
            Value::Boolean(b) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Value::String(s) => match u16::try_from(s.len()) {
                Ok(len) => {
                    out.put_u8(marker::STRING);
                    out.put_u16(len);
                    out.put_slice(s.as_bytes());
                }
                Err(_) => {
                    out.put_u8(marker::LONG_STRING);
                    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
                    out.put_slice(&s.as_bytes()[..s.len().min(u32::MAX as usize)]);
                }
            },
            Value::Object(props) => {
                out.put_u8(marker::OBJECT);
                encode_properties(props, out);
            }
            Value::Null => out.put_u8(marker::NULL),
            Value::Undefined => out.put_u8(marker::UNDEFINED),
            Value::EcmaArray(props) => {
                out.put_u8(marker::ECMA_ARRAY);
                out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
                encode_properties(props, out);
            }
            Value::StrictArray(items) => {
                out.put_u8(marker::STRICT_ARRAY);
                out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
                for item in items {
                    item.encode(out);
                }
            }
            Value::Date(ms) => {
                out.put_u8(marker::DATE);
                out.put_f64(*ms);
                out.put_i16(0);
            }
        }
    }

    /// Decodes one value from the front of `input`, advancing it.
    pub fn decode(input: &mut &[u8]) -> Result<Value> {
        decode_value(input, 0)
    }

    /// Decodes every value in `input` (a script tag body: name, then data).
    pub fn decode_all(mut input: &[u8]) -> Result<Vec<Value>> {
        let mut values = Vec::new();
        while !input.is_empty() {
            values.push(Value::decode(&mut input)?);
        }
        Ok(values)
    }
}

/// Property keys are UTF-8 strings of at most 65,535 bytes; longer keys
/// (never written by this crate) are cut.
fn encode_properties(props: &[(String, Value)], out: &mut BytesMut) {
    for (key, value) in props {
        let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
        out.put_u16(key.len() as u16);
        out.put_slice(key);
        value.encode(out);
    }
    out.put_slice(&[0, 0, marker::OBJECT_END]);
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    let (head, rest) = input
        .split_at_checked(n)
        .ok_or(MediaError::Truncated("AMF0 value"))?;
    *input = rest;
    Ok(head)
}

fn take_f64(input: &mut &[u8]) -> Result<f64> {
    let b = take(input, 8)?;
    Ok(f64::from_be_bytes([
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
    ]))
}

fn take_u32(input: &mut &[u8]) -> Result<u32> {
    let b = take(input, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_string(input: &mut &[u8], len_bytes: usize) -> Result<String> {
    let len = take(input, len_bytes)?
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let bytes = take(input, len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| MediaError::Invalid("AMF0 string UTF-8"))
}

fn decode_properties(input: &mut &[u8], depth: usize) -> Result<Vec<(String, Value)>> {
    let mut props = Vec::new();
    loop {
        if input.starts_with(&[0, 0, marker::OBJECT_END]) {
            *input = &input[3..];
            return Ok(props);
        }
        let key = take_string(input, 2)?;
        let value = decode_value(input, depth + 1)?;
        props.push((key, value));
    }
}

fn decode_value(input: &mut &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(MediaError::Invalid("AMF0 nesting too deep"));
    }
    let marker = take(input, 1)?[0];
    Ok(match marker {
        marker::NUMBER => Value::Number(take_f64(input)?),
        marker::BOOLEAN => Value::Boolean(take(input, 1)?[0] != 0),
        marker::STRING => Value::String(take_string(input, 2)?),
        marker::LONG_STRING => Value::String(take_string(input, 4)?),
        marker::OBJECT => Value::Object(decode_properties(input, depth)?),
        marker::NULL => Value::Null,
        marker::UNDEFINED => Value::Undefined,
        marker::ECMA_ARRAY => {
            // The count is a hint only: the end marker closes the array.
            take_u32(input)?;
            Value::EcmaArray(decode_properties(input, depth)?)
        }
        marker::STRICT_ARRAY => {
            let count = take_u32(input)? as usize;
            // Every value takes at least one byte: a bound without trusting
            // the count for the allocation.
            if count > input.len() {
                return Err(MediaError::Truncated("AMF0 strict array"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_value(input, depth + 1)?);
            }
            Value::StrictArray(items)
        }
        marker::DATE => {
            let ms = take_f64(input)?;
            take(input, 2)?;
            Value::Date(ms)
        }
        other => {
            return Err(MediaError::Unsupported(format!(
                "AMF0 type marker {other:#04x}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: &Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        v.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn scalars_bit_exact() {
        assert_eq!(
            encoded(&Value::Number(1.0)),
            [0, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(encoded(&Value::Boolean(true)), [1, 1]);
        assert_eq!(encoded(&Value::String("ab".into())), [2, 0, 2, b'a', b'b']);
        assert_eq!(encoded(&Value::Null), [5]);
        assert_eq!(encoded(&Value::Undefined), [6]);
        assert_eq!(
            encoded(&Value::Date(0.0)),
            [0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn ecma_array_bit_exact() {
        let v = Value::EcmaArray(vec![("w".into(), Value::Number(320.0))]);
        assert_eq!(
            encoded(&v),
            [
                0x08, 0, 0, 0, 1, // marker, count
                0, 1, b'w', 0, 0x40, 0x74, 0, 0, 0, 0, 0, 0, // "w": 320.0
                0, 0, 9, // end
            ]
        );
    }

    #[test]
    fn round_trip() {
        let v = Value::Object(vec![
            (
                "a".into(),
                Value::StrictArray(vec![Value::Number(-2.5), Value::Null]),
            ),
            (
                "b".into(),
                Value::EcmaArray(vec![("c".into(), Value::Boolean(false))]),
            ),
            ("long".into(), Value::String("x".repeat(70_000))),
            ("d".into(), Value::Date(1e12)),
        ]);
        let bytes = encoded(&v);
        assert_eq!(Value::decode_all(&bytes).unwrap(), vec![v.clone()]);
        assert_eq!(v.get("d"), Some(&Value::Date(1e12)));
        assert_eq!(v.get("nope"), None);
        for len in 0..bytes.len() {
            assert!(Value::decode(&mut &bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn hostile_input() {
        let deep = [3u8, 0, 1, b'k'].repeat(100);
        assert!(Value::decode(&mut &deep[..]).is_err());
        assert!(Value::decode(&mut &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 5][..]).is_err());
        assert!(matches!(
            Value::decode(&mut &[0x07, 0, 1][..]),
            Err(MediaError::Unsupported(_))
        ));
    }
}
