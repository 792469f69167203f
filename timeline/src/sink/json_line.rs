//! The `{"type":"timeline",...}` line, written directly into a byte buffer.
//!
//! serde_json wrote the same bytes, but following iperf3 it took ~0.45 us
//! of the reader's ~1.2 us per event: it escape-scans every key and every
//! value (the hex capture is most of a hop's bytes) and goes through a
//! generic serializer per field. Here keys are byte literals, numbers go
//! through itoa (as in serde_json), hex is written as it is encoded, and
//! only the free-text strings (summary, probe, dev, comm, drop reason) are
//! escaped. The output is byte-for-byte serde_json's (the tests compare the
//! two on every field shape), so the schema stays [`crate::model::Record`]
//! and serde reads it back.

use crate::model::{Hop, Timeline};

/// Appends one timeline record, without the newline. `data: false` leaves
/// out the hop bytes (`data`, `l2`, `same_data`), as
/// [`super::JsonSink::without_data`] asks.
pub fn write_timeline(out: &mut Vec<u8>, t: &Timeline, data: bool) {
    out.extend_from_slice(b"{\"type\":\"timeline\",\"id\":");
    int(out, t.id);
    out.extend_from_slice(b",\"summary\":");
    string(out, &t.summary);
    out.extend_from_slice(b",\"fingerprint\":");
    string(out, &t.fingerprint);
    out.extend_from_slice(b",\"complete\":");
    boolean(out, t.complete);
    out.extend_from_slice(b",\"lost_events\":");
    boolean(out, t.lost_events);
    out.extend_from_slice(b",\"dropped\":");
    boolean(out, t.dropped);
    if t.ended_unseen {
        out.extend_from_slice(b",\"ended_unseen\":true");
    }
    out.extend_from_slice(b",\"start_ns\":");
    int(out, t.start_ns);
    out.extend_from_slice(b",\"wall_start\":");
    string(out, &t.wall_start);
    out.extend_from_slice(b",\"total_ns\":");
    int(out, t.total_ns);
    out.extend_from_slice(b",\"hops\":[");
    let mut prev: Option<&Hop> = None;
    for (i, h) in t.hops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        hop(out, h, if data { prev } else { None }, data);
        prev = Some(h);
    }
    out.extend_from_slice(b"]}");
}

/// One hop, as `model::hops_json` defines it: `same_data` instead of
/// `data`/`l2` when the bytes repeat the previous hop's.
fn hop(out: &mut Vec<u8>, h: &Hop, prev: Option<&Hop>, data: bool) {
    out.extend_from_slice(b"{\"probe\":");
    string(out, &h.probe);
    out.extend_from_slice(b",\"method\":");
    string(out, &h.method);
    out.extend_from_slice(b",\"dev\":");
    string(out, &h.dev);
    out.extend_from_slice(b",\"ifindex\":");
    int(out, h.ifindex);
    out.extend_from_slice(b",\"netns\":");
    int(out, h.netns);
    out.extend_from_slice(b",\"cpu\":");
    int(out, h.cpu);
    out.extend_from_slice(b",\"pid\":");
    int(out, h.pid);
    out.extend_from_slice(b",\"comm\":");
    string(out, &h.comm);
    out.extend_from_slice(b",\"ts_ns\":");
    int(out, h.ts_ns);
    out.extend_from_slice(b",\"delta_ns\":");
    int(out, h.delta_ns);
    out.extend_from_slice(b",\"len\":");
    int(out, h.len);
    if let Some(r) = &h.drop_reason {
        out.extend_from_slice(b",\"drop_reason\":");
        string(out, r);
    }
    if data && !h.data.is_empty() {
        if h.repeats_data_of(prev) {
            out.extend_from_slice(b",\"same_data\":true");
        } else {
            out.extend_from_slice(b",\"data\":\"");
            hex(out, &h.data);
            out.push(b'"');
            if h.l2 {
                out.extend_from_slice(b",\"l2\":true");
            }
        }
    } else if data && h.l2 {
        // No bytes but marked l2: serde writes the flag on its own.
        out.extend_from_slice(b",\"l2\":true");
    }
    if let Some(b) = h.batch {
        out.extend_from_slice(b",\"batch\":");
        int(out, b);
    }
    if h.by_time {
        out.extend_from_slice(b",\"by_time\":true");
    }
    out.push(b'}');
}

fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn boolean(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    // The output slice is exactly twice the input, the only way this fails.
    let _ = hex::encode_to_slice(bytes, &mut out[start..]);
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, the five short
/// control escapes, `\u00XX` (lowercase hex) for the other control bytes;
/// everything else, UTF-8 included, as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Names, devices, comms and summaries almost never need an escape: one
    // branch-free scan, then one copy (the byte loop below was 7% of the
    // reader's profile following iperf3).
    if !bytes.iter().fold(false, |esc, &b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\')
    }) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            hex(out, &[b]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    fn hop(probe: &str, data: &[u8], l2: bool) -> Hop {
        Hop {
            probe: probe.into(),
            method: "tracepoint".into(),
            dev: "veth1".into(),
            ifindex: 5,
            netns: 4026532301,
            cpu: 1,
            pid: 1234,
            comm: "ping".into(),
            ts_ns: 1_000_000_123,
            delta_ns: 0,
            len: 98,
            data: data.to_vec(),
            l2,
            ..Hop::default()
        }
    }

    fn sample() -> Timeline {
        let mut h2 = hop("net:netif_rx", &[0xde, 0xad, 0x00, 0xff], true);
        h2.delta_ns = 840;
        h2.ts_ns += 840;
        let mut h3 = h2.clone(); // same bytes: same_data
        h3.probe = "skb:kfree_skb".into();
        h3.drop_reason = Some("NETFILTER_DROP".into());
        let mut h4 = hop("vpp:af_packet", &[], true); // l2 without bytes
        h4.method = "uprobe".into();
        h4.batch = Some(32);
        h4.by_time = true;
        Timeline {
            id: 7,
            summary: "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1".into(),
            fingerprint: "0x00000000deadbeef".into(),
            complete: true,
            lost_events: false,
            dropped: true,
            ended_unseen: false,
            start_ns: 1_000_000_123,
            wall_start: "2026-11-22T12:00:00.000000123Z".into(),
            total_ns: u64::MAX,
            hops: vec![hop("net:net_dev_queue", &[0x45, 0], false), h2, h3, h4],
        }
    }

    fn serde_line(t: &Timeline) -> String {
        serde_json::to_string(&Record::Timeline(t.clone())).unwrap()
    }

    fn fast_line(t: &Timeline, data: bool) -> String {
        let mut out = Vec::new();
        write_timeline(&mut out, t, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let t = sample();
        assert_eq!(fast_line(&t, true), serde_line(&t));
        assert_eq!(
            fast_line(&Timeline::default(), true),
            serde_line(&Timeline::default())
        );
        let unseen = Timeline {
            complete: false,
            ended_unseen: true,
            ..sample()
        };
        assert_eq!(fast_line(&unseen, true), serde_line(&unseen));
        assert!(
            fast_line(&unseen, true).contains(r#""dropped":true,"ended_unseen":true,"start_ns""#)
        );
    }

    #[test]
    fn escapes_strings_as_serde_json_does() {
        let mut t = sample();
        // Every ASCII byte, then non-ASCII text, in each free-text field.
        let all: String = (0u8..0x80).map(char::from).collect::<String>() + "ü→🙂";
        t.summary = all.clone();
        t.hops[0].dev = all.clone();
        t.hops[0].comm = "a\"b\\c\u{1f}".into();
        t.hops[2].drop_reason = Some(all);
        assert_eq!(fast_line(&t, true), serde_line(&t));
    }

    #[test]
    fn without_data_matches_a_timeline_with_the_bytes_cleared() {
        let t = sample();
        let mut slim = t.clone();
        for h in &mut slim.hops {
            h.data.clear();
            h.l2 = false;
        }
        assert_eq!(fast_line(&t, false), serde_line(&slim));
    }

    #[test]
    fn reads_back_to_the_same_timeline() {
        let t = sample();
        let back: Record = serde_json::from_str(&fast_line(&t, true)).unwrap();
        assert_eq!(back, Record::Timeline(t));
    }
}
