//! Ring-buffer records to [`probes::Event`]: a bounds-checked,
//! alignment-safe copy (ring-buffer records are only 8-byte aligned by
//! convention, and a truncated or foreign record must not be trusted).

use probes::{EVENT_VERSION, Event};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event record is {got} bytes, expected {want}")]
    Size { got: usize, want: usize },
    #[error(
        "event version {got}, this skbtrace understands {want}: rebuild skbtrace and its eBPF object together"
    )]
    Version { got: u16, want: u16 },
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < Event::SIZE {
        return Err(DecodeError::Size {
            got: bytes.len(),
            want: Event::SIZE,
        });
    }
    // SAFETY: the length was checked above; read_unaligned copes with any
    // alignment, and Event is plain integers, valid for every bit pattern.
    let ev = unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const Event) };
    if ev.version != EVENT_VERSION {
        return Err(DecodeError::Version {
            got: ev.version,
            want: EVENT_VERSION,
        });
    }
    Ok(ev)
}

/// The inverse of [`decode`], for recordings and tests.
pub fn encode(ev: &Event) -> Vec<u8> {
    // SAFETY: Event is #[repr(C)] without implicit padding, so all of its
    // bytes are initialised.
    unsafe { core::slice::from_raw_parts(ev as *const Event as *const u8, Event::SIZE) }.to_vec()
}

/// A NUL-terminated C string field as text.
pub fn cstr(b: &[u8]) -> &str {
    let end = match <&[u8; 16]>::try_from(b) {
        Ok(b16) => nul16(b16),
        Err(_) => b.iter().position(|&c| c == 0).unwrap_or(b.len()),
    };
    std::str::from_utf8(&b[..end]).unwrap_or("?")
}

/// Index of the first NUL in a 16-byte name (`comm`, a device name), 16 if
/// none: one word test instead of a byte loop. The byte loop over every
/// hop's two names was 4-5% of the reader's profile following iperf3.
fn nul16(b: &[u8; 16]) -> usize {
    const LO: u128 = u128::from_le_bytes([0x01; 16]);
    const HI: u128 = u128::from_le_bytes([0x80; 16]);
    let x = u128::from_le_bytes(*b);
    // The lowest set bit marks the first zero byte exactly (a borrow only
    // ever flags bytes above a real zero byte).
    let zeros = x.wrapping_sub(LO) & !x & HI;
    (zeros.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut ev = Event {
            version: EVENT_VERSION,
            probe: probes::id::VETH_XMIT,
            method: probes::method::KPROBE,
            flags: 0,
            cap_len: 4,
            ts_ns: 123,
            skb: 0xffff_8880_0000_1000,
            head: 0xffff_8880_0000_2000,
            fingerprint: 0xdead_beef,
            pid: 10,
            tid: 11,
            cpu: 1,
            ifindex: 5,
            netns: 4026531840,
            len: 98,
            mark: 0,
            reason: 0,
            protocol: 0x0800,
            _pad: [0; 6],
            comm: [0; 16],
            dev: [0; 16],
            data: [0; probes::CAPTURE_LEN],
        };
        ev.comm[..4].copy_from_slice(b"ping");
        ev.dev[..5].copy_from_slice(b"veth1");
        ev
    }

    #[test]
    fn round_trip_through_bytes_at_any_alignment() {
        let ev = sample();
        let bytes = encode(&ev);
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(&bytes);
        assert_eq!(decode(&shifted[1..]).unwrap(), ev);
        assert_eq!(cstr(&ev.dev), "veth1");
        assert_eq!(cstr(&ev.comm), "ping");
    }

    #[test]
    fn names_end_at_their_first_nul_whatever_the_bytes_around_it() {
        let loop_end = |b: &[u8; 16]| b.iter().position(|&c| c == 0).unwrap_or(16);
        let mut cases: Vec<[u8; 16]> = vec![[0; 16], [b'a'; 16], [0xff; 16], [0x80; 16]];
        // A NUL at every position, with bytes that trip word tricks (0x01
        // right above it, 0x80 and 0xff around it) and stale bytes after it.
        for at in 0..16 {
            for fill in [0x01u8, 0x7f, 0x80, 0xff, b'x'] {
                let mut b = [fill; 16];
                b[at] = 0;
                cases.push(b);
                if at + 1 < 16 {
                    b[at + 1] = 0x01;
                    cases.push(b);
                }
            }
        }
        for b in &cases {
            assert_eq!(nul16(b), loop_end(b), "{b:?}");
        }
        assert_eq!(cstr(b"eth0\0\x01\xffgarbage\0\0\0\0"), "eth0");
        assert_eq!(cstr(b"0123456789abcdef"), "0123456789abcdef");
        assert_eq!(cstr(b"lo\0"), "lo");
    }

    #[test]
    fn rejects_short_and_foreign_records() {
        let bytes = encode(&sample());
        assert_eq!(
            decode(&bytes[..100]),
            Err(DecodeError::Size {
                got: 100,
                want: Event::SIZE
            })
        );
        let mut other = bytes.clone();
        other[0] = 0xfe;
        assert!(matches!(
            decode(&other),
            Err(DecodeError::Version { got: 0xfe, .. })
        ));
    }
}
