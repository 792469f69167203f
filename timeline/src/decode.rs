//! Ring-buffer records to [`probes::Event`]: a bounds-checked,
//! alignment-safe copy (ring-buffer records are only 8-byte aligned by
//! convention, and a truncated or foreign record must not be trusted).

use probes::{CAPTURE_LEN, EVENT_HEADER, EVENT_VERSION, Event, wire_len};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event record is {got} bytes, expected at least {want}")]
    Size { got: usize, want: usize },
    #[error(
        "event version {got}, this skbtrace understands {want}: rebuild skbtrace and its eBPF object together"
    )]
    Version { got: u16, want: u16 },
    #[error(
        "event of {got} bytes says it is {wire_len} bytes with {cap_len} bytes of packet data: a corrupt record"
    )]
    Length {
        got: usize,
        wire_len: u16,
        cap_len: u16,
    },
}

/// One event from exactly its `wire_len` bytes of a record (see
/// [`split`]); the packet bytes it left out read as zeros.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < EVENT_HEADER {
        return Err(DecodeError::Size {
            got: bytes.len(),
            want: EVENT_HEADER,
        });
    }
    // A whole event is one fixed-size copy; a shorter one is copied
    // into zeros (a variable-length copy is a libc call, several times
    // slower than the fixed one at these sizes).
    let mut whole = [0u8; Event::SIZE];
    let ev_bytes = match bytes.first_chunk::<{ Event::SIZE }>() {
        Some(b) => b,
        None => {
            // Most events are a header alone (no packet bytes): a
            // fixed-size copy too.
            match <&[u8; EVENT_HEADER]>::try_from(bytes) {
                Ok(h) => whole[..EVENT_HEADER].copy_from_slice(h),
                Err(_) => whole[..bytes.len()].copy_from_slice(bytes),
            }
            &whole
        }
    };
    // SAFETY: Event is plain integers, valid for every bit pattern, and
    // exactly Event::SIZE bytes; read_unaligned copes with any alignment.
    let ev = unsafe { core::ptr::read_unaligned(ev_bytes.as_ptr().cast::<Event>()) };
    if ev.version != EVENT_VERSION {
        return Err(DecodeError::Version {
            got: ev.version,
            want: EVENT_VERSION,
        });
    }
    if ev.wire_len as usize != bytes.len()
        || bytes.len() > Event::SIZE
        || ev.cap_len as usize > bytes.len() - EVENT_HEADER
    {
        return Err(DecodeError::Length {
            got: bytes.len(),
            wire_len: ev.wire_len,
            cap_len: ev.cap_len,
        });
    }
    Ok(ev)
}

/// Splits a ring record into its events, each `wire_len` bytes: the
/// lengths of the events, in order, then what is left when the record
/// does not split cleanly (a corrupt or foreign record; empty when it does).
pub fn split<'a>(rec: &'a [u8], mut each: impl FnMut(&'a [u8])) -> &'a [u8] {
    const AT: usize = core::mem::offset_of!(Event, wire_len);
    let mut rest = rec;
    while rest.len() >= EVENT_HEADER {
        let w = u16::from_ne_bytes([rest[AT], rest[AT + 1]]) as usize;
        if !(EVENT_HEADER..=Event::SIZE).contains(&w) || !w.is_multiple_of(8) || w > rest.len() {
            break;
        }
        each(&rest[..w]);
        rest = &rest[w..];
    }
    rest
}

/// The inverse of [`decode`], for recordings and tests: the event's
/// header and its captured bytes, as the kernel writes it.
pub fn encode(ev: &Event) -> Vec<u8> {
    let mut ev = *ev;
    ev.wire_len = wire_len((ev.cap_len as usize).min(CAPTURE_LEN)) as u16;
    // SAFETY: Event is #[repr(C)] without implicit padding, so all of its
    // bytes are initialised; wire_len <= size_of::<Event>().
    unsafe { core::slice::from_raw_parts(&raw const ev as *const u8, ev.wire_len as usize) }
        .to_vec()
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
            wire_len: Event::SIZE as u16,
            _pad: [0; 4],
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
        let mut ev = sample();
        ev.data[..4].copy_from_slice(&[0x45, 0, 0, 84]);
        let bytes = encode(&ev);
        // The header and the 4 captured bytes, rounded up to 8.
        assert_eq!(bytes.len(), EVENT_HEADER + 8);
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(&bytes);
        let back = decode(&shifted[1..]).unwrap();
        assert_eq!(back.wire_len as usize, EVENT_HEADER + 8);
        assert_eq!(
            back,
            Event {
                wire_len: back.wire_len,
                ..ev
            }
        );
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
    fn a_record_splits_into_events_of_their_own_lengths() {
        let mut full = sample();
        full.cap_len = 128;
        let mut bare = sample();
        bare.cap_len = 0;
        bare.flags = probes::flags::ELIDED;
        let mut rec = encode(&full);
        rec.extend(encode(&bare));
        rec.extend(encode(&sample()));
        let mut lens = vec![];
        let rest = split(&rec, |e| lens.push(decode(e).unwrap().cap_len));
        assert_eq!(lens, vec![128, 0, 4]);
        assert!(rest.is_empty());
        // A length that points past the record stops the split there.
        let mut bad = encode(&bare);
        bad[core::mem::offset_of!(Event, wire_len)] = 248;
        rec.extend(&bad);
        let mut n = 0;
        assert_eq!(split(&rec, |_| n += 1).len(), bad.len());
        assert_eq!(n, 3);
    }

    #[test]
    fn rejects_short_foreign_and_inconsistent_records() {
        let bytes = encode(&sample());
        assert_eq!(
            decode(&bytes[..100]),
            Err(DecodeError::Size {
                got: 100,
                want: EVENT_HEADER
            })
        );
        // Cut short of what its header says.
        assert!(matches!(
            decode(&bytes[..EVENT_HEADER]),
            Err(DecodeError::Length { got: 112, .. })
        ));
        let mut other = bytes.clone();
        other[0] = 0xfe;
        assert!(matches!(
            decode(&other),
            Err(DecodeError::Version { got: 0xfe, .. })
        ));
    }
}
