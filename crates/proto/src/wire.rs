//! Primitive data types of section 1.5: integers, variable byte integers, UTF-8 strings, binary data.

use bytes::{Buf, BufMut, Bytes};

use crate::error::{DecodeError, EncodeError};

/// Largest value of a variable byte integer [MQTT-1.5.5].
pub const MAX_VARINT: u32 = 268_435_455;

pub(crate) fn need(buf: &Bytes, n: usize) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        Err(DecodeError::Malformed("packet ends before a field it declares"))
    } else {
        Ok(())
    }
}

pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

/// Reads a variable byte integer; more than four bytes is malformed [MQTT-1.5.5-1].
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let byte = read_u8(buf)?;
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::Malformed("variable byte integer longer than 4 bytes [MQTT-1.5.5-1]"))
}

pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(buf)?);
    need(buf, len)?;
    Ok(buf.split_to(len))
}

/// Reads a UTF-8 string: well-formed UTF-8 [MQTT-1.5.3-1] without U+0000 [MQTT-1.5.3-2].
pub(crate) fn read_string(buf: &mut Bytes) -> Result<String, DecodeError> {
    let raw = read_binary(buf)?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| DecodeError::Malformed("string is not well-formed UTF-8 [MQTT-1.5.3-1]"))?;
    if text.contains('\0') {
        return Err(DecodeError::Malformed("string contains U+0000 [MQTT-1.5.3-2]"));
    }
    Ok(text.to_owned())
}

pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn write_varint(buf: &mut impl BufMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

pub(crate) fn check_field(len: usize) -> Result<(), EncodeError> {
    if len > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong(len))
    } else {
        Ok(())
    }
}

/// Writes a length-prefixed string or binary field; the length was checked with [`check_field`].
pub(crate) fn write_binary(buf: &mut impl BufMut, data: &[u8]) {
    buf.put_u16(data.len() as u16);
    buf.put_slice(data);
}
