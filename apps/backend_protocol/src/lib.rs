//! The binary frame protocol between the simulated mission device
//! (`device_sim`) and the IO service (`io_service`) of the example backend.
//!
//! # Wire format
//!
//! The link is a byte stream (TCP). Each frame is a big-endian `u16`
//! length followed by that many bytes of *body*:
//!
//! ```text
//! +--------+-------------------------------------------+
//! | len:u16| body (len bytes, 3 ..= MAX_BODY_LEN)      |
//! +--------+------+---------------------+--------------+
//!          | kind | fields (per kind)   | crc:u16      |
//!          |  u8  |                     | CRC-16/CCITT |
//!          +------+---------------------+--------------+
//! ```
//!
//! All integers and floats are big-endian. `crc` is CRC-16/CCITT-FALSE
//! (polynomial `0x1021`, initial value `0xFFFF`, no reflection, no final
//! XOR; [`crc16`]) over `kind` and the fields. A *string* is a `u8` length
//! followed by that many bytes of UTF-8.
//!
//! | kind | frame | fields |
//! | --- | --- | --- |
//! | 1 | [`Telemetry`] (device → IO) | `session:u32 counter:u32 time_ms:u64 temperature_c:f32 voltage_v:f32 current_a:f32 status:u16` (33-byte body) |
//! | 2 | [`Telecommand`] (IO → device) | `id:string(1..=64) command:u8 arg:u32` ([`Command`]) |
//! | 3 | [`TelecommandAck`] (device → IO) | `id:string(1..=64) status:u8 (0 acknowledged, 1 rejected) reason:string (empty: none)` |
//! | 4 | [`TelemetryAck`] (IO → device) | `session:u32 counter:u32`: every telemetry frame of `session` up to and including `counter` is stored; the device may forget them |
//!
//! The body of a telemetry frame is what the IO service publishes on
//! `telemetry.raw`, unchanged; the parser decodes it with [`decode_body`].
//!
//! Decoding checks, in this order: the body's length (at least 3 bytes:
//! [`DecodeError::Truncated`]; at most [`MAX_BODY_LEN`]:
//! [`DecodeError::TooLong`]), the checksum ([`DecodeError::BadChecksum`]),
//! the kind ([`DecodeError::UnknownKind`]), the fields
//! ([`DecodeError::Truncated`] when too short, [`DecodeError::Malformed`]
//! for trailing bytes or invalid values). It never panics, whatever the
//! bytes.
//!
//! ```
//! use backend_protocol::{Frame, Telemetry, decode_body, encode_frame};
//!
//! let frame = Frame::Telemetry(Telemetry {
//!     session: 7, counter: 1, time_ms: 1_700_000_000_000,
//!     temperature_c: 21.5, voltage_v: 28.0, current_a: 1.25, status: 0,
//! });
//! let wire = encode_frame(&frame);
//! let len = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
//! assert_eq!(len, wire.len() - 2);
//! assert_eq!(decode_body(&wire[2..]), Ok(frame));
//! ```

#![warn(missing_docs)]

/// The largest body a frame may have, in bytes.
pub const MAX_BODY_LEN: usize = 512;
/// The smallest body: a kind byte and the checksum.
pub const MIN_BODY_LEN: usize = 3;
/// The longest telecommand id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Kind byte of a [`Telemetry`] frame.
pub const KIND_TELEMETRY: u8 = 1;
/// Kind byte of a [`Telecommand`] frame.
pub const KIND_TELECOMMAND: u8 = 2;
/// Kind byte of a [`TelecommandAck`] frame.
pub const KIND_TELECOMMAND_ACK: u8 = 3;
/// Kind byte of a [`TelemetryAck`] frame.
pub const KIND_TELEMETRY_ACK: u8 = 4;

/// Status flag: the heater is on.
pub const STATUS_HEATER_ON: u16 = 1 << 0;
/// Status flag: the device reports a fault (it then rejects `set_heater`).
pub const STATUS_FAULT: u16 = 1 << 1;
/// Status flag: the device rebooted recently (set for a few frames after a
/// `reboot` telecommand).
pub const STATUS_REBOOTED: u16 = 1 << 2;

/// The body length of a telemetry frame.
pub const TELEMETRY_BODY_LEN: usize = 33;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is shorter than its kind needs.
    #[error("truncated frame: {needed} bytes needed, {got} present")]
    Truncated {
        /// Bytes the frame needs (at least).
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The body (or a length prefix) is longer than [`MAX_BODY_LEN`].
    #[error("frame too long: {len} bytes (at most {MAX_BODY_LEN})")]
    TooLong {
        /// The length found.
        len: usize,
    },
    /// The checksum does not match the body.
    #[error("bad checksum: frame says {expected:#06x}, body has {actual:#06x}")]
    BadChecksum {
        /// The checksum in the frame.
        expected: u16,
        /// The checksum computed over the body.
        actual: u16,
    },
    /// The kind byte is not one of the known kinds.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The fields are invalid (trailing bytes, a bad command code, an id
    /// that is not UTF-8, ...).
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// A telemetry frame: one sample of the device's sensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    /// Random per simulator start.
    pub session: u32,
    /// 0 for the first frame of a session, +1 per frame.
    pub counter: u32,
    /// Unix time in milliseconds at the device.
    pub time_ms: u64,
    /// Temperature in degrees Celsius.
    pub temperature_c: f32,
    /// Bus voltage in volts.
    pub voltage_v: f32,
    /// Current in amperes.
    pub current_a: f32,
    /// Status flags ([`STATUS_HEATER_ON`], [`STATUS_FAULT`], ...).
    pub status: u16,
}

/// A command for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Turn the heater on or off (code 1, arg 0 or 1).
    SetHeater {
        /// On or off.
        on: bool,
    },
    /// Set the telemetry rate (code 2, arg: frames per second).
    SetRate {
        /// Frames per second (the device accepts 1..=1000).
        hz: u32,
    },
    /// Reboot (code 3, arg 0).
    Reboot,
    /// Ping (code 4, arg 0).
    Ping,
}

impl Command {
    /// The command's name in the JSON of the NATS subjects (`set_heater`,
    /// `set_rate`, `reboot`, `ping`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::SetHeater { .. } => "set_heater",
            Command::SetRate { .. } => "set_rate",
            Command::Reboot => "reboot",
            Command::Ping => "ping",
        }
    }

    fn code_and_arg(&self) -> (u8, u32) {
        match *self {
            Command::SetHeater { on } => (1, u32::from(on)),
            Command::SetRate { hz } => (2, hz),
            Command::Reboot => (3, 0),
            Command::Ping => (4, 0),
        }
    }

    fn from_code_and_arg(code: u8, arg: u32) -> Result<Command, DecodeError> {
        match (code, arg) {
            (1, 0 | 1) => Ok(Command::SetHeater { on: arg == 1 }),
            (2, hz) => Ok(Command::SetRate { hz }),
            (3, 0) => Ok(Command::Reboot),
            (4, 0) => Ok(Command::Ping),
            (1 | 3 | 4, arg) => Err(DecodeError::Malformed(format!(
                "command {code} takes no argument {arg}"
            ))),
            (code, _) => Err(DecodeError::Malformed(format!(
                "unknown command code {code}"
            ))),
        }
    }
}

/// A telecommand for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telecommand {
    /// The command's id (1 to [`MAX_ID_LEN`] bytes); the ack carries it.
    pub id: String,
    /// What to do.
    pub command: Command,
}

/// The device's answer to a [`Telecommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelecommandAck {
    /// The id of the command.
    pub id: String,
    /// `true`: acknowledged (done); `false`: rejected.
    pub accepted: bool,
    /// Why it was rejected (at most 255 bytes; longer reasons are cut at a
    /// character boundary when encoded).
    pub reason: Option<String>,
}

/// The IO service's confirmation that telemetry is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryAck {
    /// The session the frames belong to.
    pub session: u32,
    /// Every frame of the session up to and including this counter is
    /// stored.
    pub counter: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Kind 1.
    Telemetry(Telemetry),
    /// Kind 2.
    Telecommand(Telecommand),
    /// Kind 3.
    TelecommandAck(TelecommandAck),
    /// Kind 4.
    TelemetryAck(TelemetryAck),
}

/// CRC-16/CCITT-FALSE of `bytes` (polynomial `0x1021`, initial `0xFFFF`).
///
/// ```
/// assert_eq!(backend_protocol::crc16(b"123456789"), 0x29B1);
/// ```
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn put_str(out: &mut Vec<u8>, text: &str, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&text.as_bytes()[..end]);
}

/// The body of `frame` (kind, fields, checksum), without the length
/// prefix. An id longer than [`MAX_ID_LEN`] bytes is cut (at a character
/// boundary); use ids of at most that length.
pub fn encode_body(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(TELEMETRY_BODY_LEN);
    match frame {
        Frame::Telemetry(t) => {
            out.push(KIND_TELEMETRY);
            out.extend_from_slice(&t.session.to_be_bytes());
            out.extend_from_slice(&t.counter.to_be_bytes());
            out.extend_from_slice(&t.time_ms.to_be_bytes());
            out.extend_from_slice(&t.temperature_c.to_be_bytes());
            out.extend_from_slice(&t.voltage_v.to_be_bytes());
            out.extend_from_slice(&t.current_a.to_be_bytes());
            out.extend_from_slice(&t.status.to_be_bytes());
        }
        Frame::Telecommand(c) => {
            out.push(KIND_TELECOMMAND);
            put_str(&mut out, &c.id, MAX_ID_LEN);
            let (code, arg) = c.command.code_and_arg();
            out.push(code);
            out.extend_from_slice(&arg.to_be_bytes());
        }
        Frame::TelecommandAck(a) => {
            out.push(KIND_TELECOMMAND_ACK);
            put_str(&mut out, &a.id, MAX_ID_LEN);
            out.push(if a.accepted { 0 } else { 1 });
            put_str(&mut out, a.reason.as_deref().unwrap_or(""), 255);
        }
        Frame::TelemetryAck(a) => {
            out.push(KIND_TELEMETRY_ACK);
            out.extend_from_slice(&a.session.to_be_bytes());
            out.extend_from_slice(&a.counter.to_be_bytes());
        }
    }
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// `frame` as it goes on the wire: the length prefix and the body.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    with_length_prefix(&encode_body(frame))
}

/// `body` with its big-endian `u16` length in front. Bodies longer than
/// `u16::MAX` bytes are cut (they are never valid frames anyway).
pub fn with_length_prefix(body: &[u8]) -> Vec<u8> {
    let body = &body[..body.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The body length a length prefix announces, checked against
/// [`MIN_BODY_LEN`] and [`MAX_BODY_LEN`]. A stream whose prefix is refused
/// cannot be resynchronised: close it.
///
/// ```
/// use backend_protocol::{DecodeError, body_len};
/// assert_eq!(body_len([0, 33]), Ok(33));
/// assert_eq!(body_len([0xff, 0xff]), Err(DecodeError::TooLong { len: 65535 }));
/// ```
pub fn body_len(prefix: [u8; 2]) -> Result<usize, DecodeError> {
    let len = usize::from(u16::from_be_bytes(prefix));
    if len > MAX_BODY_LEN {
        Err(DecodeError::TooLong { len })
    } else if len < MIN_BODY_LEN {
        Err(DecodeError::Truncated {
            needed: MIN_BODY_LEN,
            got: len,
        })
    } else {
        Ok(len)
    }
}

/// A frame's body and the bytes after the frame.
pub type Split<'a> = (&'a [u8], &'a [u8]);

/// Splits the first whole frame off `buffer` (prefix and body): `Ok(None)`
/// when more bytes are needed, `Ok(Some((body, rest)))` otherwise. The body
/// is not decoded (see [`decode_body`]).
pub fn split_frame(buffer: &[u8]) -> Result<Option<Split<'_>>, DecodeError> {
    let [a, b, ..] = *buffer else {
        return Ok(None);
    };
    let len = body_len([a, b])?;
    let after_prefix = &buffer[2..];
    if after_prefix.len() < len {
        return Ok(None);
    }
    Ok(Some(after_prefix.split_at(len)))
}

/// A cursor over the fields of a body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                // + 3: the kind byte and the checksum around the fields.
                needed: self.at + n + 3,
                got: self.bytes.len() + 3,
            });
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn f32(&mut self) -> Result<f32, DecodeError> {
        self.array().map(f32::from_be_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError::Malformed(format!("{what} is not UTF-8")))
    }

    fn id(&mut self) -> Result<String, DecodeError> {
        let id = self.string("id")?;
        if id.is_empty() {
            return Err(DecodeError::Malformed("empty id".into()));
        }
        if id.len() > MAX_ID_LEN {
            return Err(DecodeError::Malformed(format!(
                "id of {} bytes (at most {MAX_ID_LEN})",
                id.len()
            )));
        }
        Ok(id)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(DecodeError::Malformed(format!("{n} trailing bytes"))),
        }
    }
}

/// Decodes a frame body (kind, fields, checksum; no length prefix).
///
/// ```
/// use backend_protocol::{DecodeError, decode_body};
/// assert_eq!(decode_body(&[1]), Err(DecodeError::Truncated { needed: 3, got: 1 }));
/// ```
pub fn decode_body(body: &[u8]) -> Result<Frame, DecodeError> {
    if body.len() < MIN_BODY_LEN {
        return Err(DecodeError::Truncated {
            needed: MIN_BODY_LEN,
            got: body.len(),
        });
    }
    if body.len() > MAX_BODY_LEN {
        return Err(DecodeError::TooLong { len: body.len() });
    }
    let (content, crc) = body.split_at(body.len() - 2);
    let expected = u16::from_be_bytes([crc[0], crc[1]]);
    let actual = crc16(content);
    if expected != actual {
        return Err(DecodeError::BadChecksum { expected, actual });
    }
    let kind = content[0];
    let mut r = Reader {
        bytes: &content[1..],
        at: 0,
    };
    let frame = match kind {
        KIND_TELEMETRY => Frame::Telemetry(Telemetry {
            session: r.u32()?,
            counter: r.u32()?,
            time_ms: r.u64()?,
            temperature_c: r.f32()?,
            voltage_v: r.f32()?,
            current_a: r.f32()?,
            status: r.u16()?,
        }),
        KIND_TELECOMMAND => {
            let id = r.id()?;
            let code = r.u8()?;
            let arg = r.u32()?;
            Frame::Telecommand(Telecommand {
                id,
                command: Command::from_code_and_arg(code, arg)?,
            })
        }
        KIND_TELECOMMAND_ACK => {
            let id = r.id()?;
            let accepted = match r.u8()? {
                0 => true,
                1 => false,
                other => {
                    return Err(DecodeError::Malformed(format!(
                        "unknown ack status {other}"
                    )));
                }
            };
            let reason = r.string("reason")?;
            Frame::TelecommandAck(TelecommandAck {
                id,
                accepted,
                reason: (!reason.is_empty()).then_some(reason),
            })
        }
        KIND_TELEMETRY_ACK => Frame::TelemetryAck(TelemetryAck {
            session: r.u32()?,
            counter: r.u32()?,
        }),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    r.finish()?;
    Ok(frame)
}

/// The `Nats-Msg-Id` of a raw telemetry frame on `telemetry.raw`.
///
/// ```
/// assert_eq!(backend_protocol::raw_message_id(7, 42), "raw-7-42");
/// ```
pub fn raw_message_id(session: u32, counter: u32) -> String {
    format!("raw-{session}-{counter}")
}

/// The `Nats-Msg-Id` of a parsed telemetry message on `telemetry.parsed`.
///
/// ```
/// assert_eq!(backend_protocol::parsed_message_id(7, 42), "parsed-7-42");
/// ```
pub fn parsed_message_id(session: u32, counter: u32) -> String {
    format!("parsed-{session}-{counter}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn telemetry() -> Telemetry {
        Telemetry {
            session: 0xDEAD_BEEF,
            counter: 41,
            time_ms: 1_750_000_000_123,
            temperature_c: -12.25,
            voltage_v: 28.5,
            current_a: 0.75,
            status: STATUS_HEATER_ON | STATUS_FAULT,
        }
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Telemetry(telemetry()),
            Frame::Telecommand(Telecommand {
                id: "abc".into(),
                command: Command::SetRate { hz: 100 },
            }),
            Frame::Telecommand(Telecommand {
                id: "x".repeat(MAX_ID_LEN),
                command: Command::SetHeater { on: true },
            }),
            Frame::Telecommand(Telecommand {
                id: "p".into(),
                command: Command::Ping,
            }),
            Frame::Telecommand(Telecommand {
                id: "r".into(),
                command: Command::Reboot,
            }),
            Frame::TelecommandAck(TelecommandAck {
                id: "abc".into(),
                accepted: true,
                reason: None,
            }),
            Frame::TelecommandAck(TelecommandAck {
                id: "abc".into(),
                accepted: false,
                reason: Some("fault flag set: heater locked".into()),
            }),
            Frame::TelemetryAck(TelemetryAck {
                session: 1,
                counter: u32::MAX,
            }),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for frame in samples() {
            let body = encode_body(&frame);
            assert!(body.len() <= MAX_BODY_LEN);
            assert_eq!(decode_body(&body), Ok(frame.clone()), "{frame:?}");
            let wire = encode_frame(&frame);
            let (split, rest) = split_frame(&wire).unwrap().unwrap();
            assert_eq!(split, &body[..]);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn telemetry_body_has_the_documented_layout() {
        let body = encode_body(&Frame::Telemetry(telemetry()));
        assert_eq!(body.len(), TELEMETRY_BODY_LEN);
        assert_eq!(body[0], KIND_TELEMETRY);
        assert_eq!(&body[1..5], &0xDEAD_BEEFu32.to_be_bytes());
        assert_eq!(&body[5..9], &41u32.to_be_bytes());
        assert_eq!(&body[29..31], &3u16.to_be_bytes());
        assert_eq!(crc16(&body[..31]).to_be_bytes(), [body[31], body[32]]);
    }

    #[test]
    fn crc_matches_the_reference_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn a_flipped_bit_is_a_bad_checksum() {
        let mut body = encode_body(&Frame::Telemetry(telemetry()));
        body[10] ^= 0x01;
        assert!(matches!(
            decode_body(&body),
            Err(DecodeError::BadChecksum { .. })
        ));
        let last = body.len() - 1;
        body[10] ^= 0x01;
        body[last] ^= 0x80;
        assert!(matches!(
            decode_body(&body),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    #[test]
    fn a_short_telemetry_body_with_a_valid_checksum_is_truncated() {
        let full = encode_body(&Frame::Telemetry(telemetry()));
        let mut short = full[..17].to_vec();
        let crc = crc16(&short);
        short.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_body(&short),
            Err(DecodeError::Truncated {
                needed: 23,
                got: 19
            })
        );
        let error = decode_body(&short).unwrap_err().to_string();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn unknown_kinds_and_trailing_bytes_are_refused() {
        let mut body = vec![9, 1, 2];
        let crc = crc16(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_body(&body), Err(DecodeError::UnknownKind(9)));

        let mut body = encode_body(&Frame::Telemetry(telemetry()));
        body.truncate(body.len() - 2);
        body.push(0);
        let crc = crc16(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_body(&body),
            Err(DecodeError::Malformed("1 trailing bytes".into()))
        );
    }

    #[test]
    fn invalid_telecommand_fields_are_malformed() {
        for (id_len, code, arg) in [(0u8, 4u8, 0u32), (1, 9, 0), (1, 1, 2), (1, 3, 5)] {
            let mut body = vec![KIND_TELECOMMAND, id_len];
            body.extend(std::iter::repeat_n(b'a', usize::from(id_len)));
            body.push(code);
            body.extend_from_slice(&arg.to_be_bytes());
            let crc = crc16(&body);
            body.extend_from_slice(&crc.to_be_bytes());
            assert!(
                matches!(decode_body(&body), Err(DecodeError::Malformed(_))),
                "{id_len} {code} {arg}: {:?}",
                decode_body(&body)
            );
        }
        let mut body = vec![KIND_TELECOMMAND_ACK, 2, 0xff, 0xfe, 0, 0];
        let crc = crc16(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_body(&body),
            Err(DecodeError::Malformed("id is not UTF-8".into()))
        );
    }

    #[test]
    fn length_prefixes_are_checked() {
        assert_eq!(
            body_len([0, 2]),
            Err(DecodeError::Truncated { needed: 3, got: 2 })
        );
        assert_eq!(body_len([2, 1]), Err(DecodeError::TooLong { len: 513 }));
        assert_eq!(body_len([2, 0]), Ok(512));
        assert_eq!(split_frame(&[0]), Ok(None));
        assert_eq!(split_frame(&[0, 5, 1, 2]), Ok(None));
        assert_eq!(
            split_frame(&[0xff, 0xff, 1]),
            Err(DecodeError::TooLong { len: 65535 })
        );
        assert_eq!(
            decode_body(&vec![0; MAX_BODY_LEN + 1]),
            Err(DecodeError::TooLong {
                len: MAX_BODY_LEN + 1
            })
        );
    }

    #[test]
    fn long_ids_and_reasons_are_cut_at_a_character_boundary() {
        let ack = Frame::TelecommandAck(TelecommandAck {
            id: "ü".repeat(40),
            accepted: false,
            reason: Some("é".repeat(200)),
        });
        let Ok(Frame::TelecommandAck(decoded)) = decode_body(&encode_body(&ack)) else {
            panic!("does not decode");
        };
        assert_eq!(decoded.id, "ü".repeat(32));
        assert_eq!(decoded.reason.unwrap(), "é".repeat(127));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = decode_body(&bytes);
            let _ = split_frame(&bytes);
        }

        #[test]
        fn any_bytes_with_a_valid_checksum_decode_without_panicking(
            kind in 0u8..6,
            fields in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut body = vec![kind];
            body.extend_from_slice(&fields);
            let crc = crc16(&body);
            body.extend_from_slice(&crc.to_be_bytes());
            if let Ok(frame) = decode_body(&body) {
                // What decodes encodes back to the same bytes (NaN payloads
                // included: floats are copied bit for bit).
                prop_assert_eq!(encode_body(&frame), body);
            }
        }

        #[test]
        fn telemetry_round_trips(
            session in any::<u32>(), counter in any::<u32>(), time_ms in any::<u64>(),
            t in -200.0f32..200.0, v in 0.0f32..50.0, c in -5.0f32..5.0, status in any::<u16>(),
        ) {
            let frame = Frame::Telemetry(Telemetry {
                session, counter, time_ms, temperature_c: t, voltage_v: v, current_a: c, status,
            });
            prop_assert_eq!(decode_body(&encode_body(&frame)), Ok(frame));
        }

        #[test]
        fn every_single_byte_corruption_is_detected(index in 0usize..TELEMETRY_BODY_LEN, flip in 1u8..=255) {
            let mut body = encode_body(&Frame::Telemetry(telemetry()));
            body[index] ^= flip;
            prop_assert!(decode_body(&body).is_err());
        }

        #[test]
        fn a_stream_of_frames_splits_back(frames in proptest::collection::vec(0usize..8, 0..20)) {
            let all = samples();
            let mut wire = Vec::new();
            for &i in &frames {
                wire.extend(encode_frame(&all[i]));
            }
            let mut rest = &wire[..];
            for &i in &frames {
                let (body, after) = split_frame(rest).unwrap().unwrap();
                prop_assert_eq!(decode_body(body), Ok(all[i].clone()));
                rest = after;
            }
            prop_assert!(rest.is_empty());
        }
    }
}
