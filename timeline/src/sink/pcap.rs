//! pcapng: one interface per probe point (if_name = the probe, linktype
//! Ethernet, nanosecond timestamps), one enhanced packet block per hop with
//! the bytes captured there and a comment `packet N hop i/n +delta`.
//!
//! Captures that start at L3 get a synthesised 14-byte Ethernet header
//! (zero MACs, ethertype from the IP version) so every block is Ethernet.
//! Interfaces are declared the first time a probe appears (or up front with
//! [`PcapSink::declare_probe`]). Whole blocks are buffered and written out
//! by [`Sink::flush`] (every 100 ms tick of the tracer), so the file stays
//! readable up to the last flush if the trace is killed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};

use super::Sink;
use crate::fmt::{duration, parse_rfc3339_ns};
use crate::model::{Hop, Summary, Timeline};
use crate::summarize::{l3_ethertype, locate_l3};

/// Default bytes kept per block.
pub const DEFAULT_SNAPLEN: u32 = 128;

fn io_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}

/// Writes pcapng to `W`.
pub struct PcapSink<W: Write> {
    w: PcapNgWriter<W>,
    snaplen: u32,
    ifaces: HashMap<String, u32>,
    buf: Vec<u8>,
}

impl<W: Write> PcapSink<W> {
    /// Writes the section header. `snaplen` caps the bytes kept per hop
    /// (0 = keep all captured bytes).
    pub fn new(w: W, snaplen: u32) -> io::Result<Self> {
        let shb = SectionHeaderBlock {
            options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                "skbtrace",
            ))],
            ..Default::default()
        };
        let w = PcapNgWriter::with_section_header(w, shb).map_err(io_err)?;
        Ok(Self {
            w,
            snaplen,
            ifaces: HashMap::new(),
            buf: Vec::with_capacity(256),
        })
    }

    /// Declares the interface for `probe` now (e.g. every attached probe at
    /// start, so the interface list is in catalog order). Returns its id.
    pub fn declare_probe(&mut self, probe: &str) -> io::Result<u32> {
        if let Some(&i) = self.ifaces.get(probe) {
            return Ok(i);
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(probe.to_string())),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                    "skbtrace probe {probe}"
                ))),
                // Timestamps are written in nanoseconds (pcap-file writes
                // Duration::as_nanos): readers must be told, or they read µs.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.w.write_pcapng_block(idb).map_err(io_err)?;
        let i = self.ifaces.len() as u32;
        self.ifaces.insert(probe.to_string(), i);
        Ok(i)
    }

    pub fn into_inner(self) -> W {
        self.w.into_inner()
    }

    /// The frame for one hop into `self.buf`; returns the original length.
    fn frame(&mut self, h: &Hop) -> u32 {
        self.buf.clear();
        if !h.l2 && !h.data.is_empty() {
            self.buf.extend_from_slice(&[0u8; 12]);
            self.buf
                .extend_from_slice(&l3_ethertype(&h.data).to_be_bytes());
        }
        self.buf.extend_from_slice(&h.data);
        let orig = original_len(&self.buf, h.len as usize);
        if self.snaplen != 0 {
            self.buf.truncate(self.snaplen as usize);
        }
        orig as u32
    }
}

/// The frame's length on the wire: from the IP header's length field when
/// readable (the capture may be cut at 128 bytes, and skb->len excludes the
/// Ethernet header on receive), else the larger of skb->len and what was
/// captured.
fn original_len(frame: &[u8], skb_len: usize) -> usize {
    let from_ip = locate_l3(frame, true, 0).and_then(|(et, off, _)| {
        let b = |i: usize| frame.get(off + i).copied();
        match et {
            0x0800 => Some(off + u16::from_be_bytes([b(2)?, b(3)?]) as usize),
            0x86dd => Some(off + 40 + u16::from_be_bytes([b(4)?, b(5)?]) as usize),
            _ => None,
        }
    });
    from_ip.unwrap_or(skb_len).max(frame.len())
}

impl<W: Write> Sink for PcapSink<W> {
    fn timeline(&mut self, t: &Timeline) -> io::Result<()> {
        // Wall-clock ns of the first hop; hops keep their monotonic spacing.
        // Without a parseable wall_start the monotonic time is used as is.
        let wall0 = parse_rfc3339_ns(&t.wall_start).unwrap_or(t.start_ns as i128);
        let n = t.hops.len();
        for (i, h) in t.hops.iter().enumerate() {
            let iface = self.declare_probe(&h.probe)?;
            let orig = self.frame(h);
            let wall = wall0 + (h.ts_ns as i128 - t.start_ns as i128);
            let ts = Duration::from_nanos(u64::try_from(wall).unwrap_or(0));
            let mut comment = format!(
                "packet {} hop {}/{} +{} ({} ns)",
                t.id,
                i + 1,
                n,
                duration(h.delta_ns),
                h.delta_ns
            );
            if let Some(r) = &h.drop_reason {
                comment.push_str(" drop: ");
                comment.push_str(r);
            }
            let epb = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: ts,
                original_len: orig,
                data: Cow::Borrowed(&self.buf),
                options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
            };
            self.w.write_pcapng_block(epb).map_err(io_err)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.get_mut().flush()
    }

    fn finish(&mut self, _s: &Summary) -> io::Result<()> {
        self.w.get_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// `tshark -r FILE -T fields -e ...` rows, split on tabs. Fails with a
    /// clear message when tshark is missing (CI installs it).
    fn tshark(path: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(path)
            .args(["-T", "fields", "-E", "separator=\t"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => panic!(
                "cannot run tshark ({e}): this test reads the pcapng back with it; install it (apt-get install tshark)"
            ),
        };
        assert!(
            out.status.success(),
            "tshark rejected {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    fn write(timelines: &[Timeline], snaplen: u32) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .suffix(".pcapng")
            .tempfile()
            .expect("temp file");
        let mut sink = PcapSink::new(
            std::io::BufWriter::new(file.reopen().expect("reopen")),
            snaplen,
        )
        .expect("section header");
        for t in timelines {
            sink.timeline(t).expect("write packet");
        }
        // No finish(): the tracer's periodic flush alone must leave a
        // valid file (an interrupted trace).
        // Forgotten, not dropped: BufWriter's drop would flush again.
        sink.flush().expect("flush");
        std::mem::forget(sink);
        file
    }

    #[test]
    fn tshark_reads_every_hop_in_time_order_with_probe_interfaces_and_comments() {
        let (timelines, _) = crate::synth::demo_timelines();
        let file = write(&timelines, DEFAULT_SNAPLEN);
        let rows = tshark(
            file.path(),
            &[
                "frame.time_epoch",
                "frame.comment",
                "frame.interface_name",
                "frame.protocols",
                "frame.len",
                "frame.cap_len",
            ],
        );
        let hops: Vec<(&Timeline, usize)> = timelines
            .iter()
            .flat_map(|t| (0..t.hops.len()).map(move |i| (t, i)))
            .collect();
        assert_eq!(rows.len(), hops.len(), "one block per hop: {rows:?}");
        let mut prev = 0i128;
        for (row, (t, i)) in rows.iter().zip(&hops) {
            let h = &t.hops[*i];
            // Epoch seconds with 9 decimals: nanosecond timestamps.
            let (secs, frac) = row[0].split_once('.').expect("fractional epoch");
            assert_eq!(frac.len(), 9, "if_tsresol 9: {}", row[0]);
            let ns: i128 = secs.parse::<i128>().expect("secs") * 1_000_000_000
                + frac.parse::<i128>().expect("ns");
            let want = 1_709_208_000_000_000_000i128 + (h.ts_ns as i128 - 5_000_000_000);
            assert_eq!(ns, want, "wall clock of hop {i} of packet {}", t.id);
            assert!(ns >= prev, "time order");
            prev = ns;
            assert_eq!(row[2], h.probe, "interface named after the probe");
            assert!(
                row[1].starts_with(&format!("packet {} hop {}/{} +", t.id, i + 1, t.hops.len())),
                "comment: {}",
                row[1]
            );
            assert!(
                row[1].contains(&format!("({} ns)", h.delta_ns)),
                "delta in comment: {}",
                row[1]
            );
        }
        // The drop reason is in the drop hop's comment.
        assert!(rows[6][1].ends_with("drop: NO_SOCKET"), "{}", rows[6][1]);
        // Every block decodes as Ethernet/IP, including the ip_rcv hop whose
        // bytes started at L3 (synthesised Ethernet header).
        for row in &rows {
            assert!(row[3].starts_with("eth:ethertype:ip:"), "{row:?}");
        }
        assert_eq!(rows[3][2], "ip_rcv");
        assert_eq!(rows[3][3], "eth:ethertype:ip:icmp:data");
        // The ping is 98 bytes on the wire, all captured.
        assert_eq!((rows[0][4].as_str(), rows[0][5].as_str()), ("98", "98"));
        assert_eq!((rows[3][4].as_str(), rows[3][5].as_str()), ("98", "98"));
    }

    #[test]
    fn snaplen_cuts_the_bytes_not_the_original_length() {
        let (timelines, _) = crate::synth::demo_timelines();
        let file = write(&timelines[..1], 60);
        let rows = tshark(
            file.path(),
            &["frame.len", "frame.cap_len", "frame.interface_name"],
        );
        assert_eq!(rows.len(), 5);
        assert!(
            rows.iter().all(|r| r[0] == "98" && r[1] == "60"),
            "{rows:?}"
        );
        // Interfaces are declared once per probe, in first-seen order.
        let names: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
        assert_eq!(
            names,
            [
                "veth_xmit",
                "net:netif_rx",
                "__netif_receive_skb_core",
                "ip_rcv",
                "skb:consume_skb"
            ]
        );
    }

    #[test]
    fn original_length_comes_from_the_ip_header_when_the_capture_is_cut() {
        let f = crate::synth::frame::tcp4([10, 0, 1, 1], [10, 0, 2, 1], 1, 2, 3, 4, 0x18, 1448);
        // 14 + 20 + 20 + 1448 bytes; skb->len on receive (1488) excludes
        // the Ethernet header and the capture stops at 128.
        assert_eq!(original_len(&f[..128], 1488), 1502);
        let arp = crate::synth::frame::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 2]);
        assert_eq!(original_len(&arp, 46), 60);
    }
}
