//! pcapng: one interface per probe point (if_name = the probe, linktype
//! Ethernet, nanosecond timestamps), one enhanced packet block per hop with
//! the bytes captured there and a comment `packet N hop i/n +delta`.
//!
//! Captures that start at L3 get a synthesised 14-byte Ethernet header
//! (zero MACs, ethertype from the IP version) so every block is Ethernet.
//! Interfaces are declared the first time a probe appears (or up front with
//! [`PcapSink::declare_probe`]). The writer is flushed after every packet,
//! so the file stays readable if the trace is interrupted.

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
        self.w.get_mut().flush()
    }

    fn finish(&mut self, _s: &Summary) -> io::Result<()> {
        self.w.get_mut().flush()
    }
}
