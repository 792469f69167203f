//! Checks on received frames and the small rewrites a forwarder needs
//! (virtio-net header, VLAN tag re-insertion). Pure functions on bytes, so
//! they are unit-tested without a kernel.

/// `struct virtio_net_hdr` as AF_PACKET's PACKET_VNET_HDR exchanges it
/// (legacy layout, host byte order).
pub const VNET_HDR_LEN: usize = 10;
pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
/// Linear bytes asked for in a sent frame's skb: Ethernet, VLAN, IPv6 with
/// extension headers, TCP with options.
pub const LINEAR_HEADERS: u16 = 256;

pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u16at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16at(2),
            gso_size: u16at(4),
            csum_start: u16at(6),
            csum_offset: u16at(8),
        }
    }

    pub fn write(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    pub fn is_gso(&self) -> bool {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE
    }

    /// Checks the header against the frame it describes (`frame_len` bytes
    /// of Ethernet frame, as it will be sent) and prepares it for sending:
    /// DATA_VALID is a receive-side hint the transmit path does not take.
    pub fn for_tx(mut self, frame_len: usize) -> Result<VnetHdr, &'static str> {
        match self.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_NONE => {}
            VIRTIO_NET_HDR_GSO_TCPV4
            | VIRTIO_NET_HDR_GSO_TCPV6
            | VIRTIO_NET_HDR_GSO_UDP
            | VIRTIO_NET_HDR_GSO_UDP_L4 => {
                if self.gso_size == 0 {
                    return Err("GSO frame with gso_size 0");
                }
            }
            _ => return Err("unknown virtio-net GSO type"),
        }
        if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
            && self.csum_start as usize + self.csum_offset as usize + 2 > frame_len
        {
            return Err("checksum offset past the end of the frame");
        }
        // hdr_len is how many bytes the kernel puts in the new skb's linear
        // area (the rest go to page fragments). The receive side reports
        // its own linear length, 0 for a frame that is not GSO: then even
        // the IP header would sit in a fragment (a TX-ring skb's fragment
        // is our ring's memory), where tracers cannot read it and the stack
        // must pull it. Ask for room for every header, never past the frame.
        self.hdr_len = self
            .hdr_len
            .max(LINEAR_HEADERS)
            .min(frame_len.min(u16::MAX as usize) as u16);
        self.flags &= !VIRTIO_NET_HDR_F_DATA_VALID;
        Ok(self)
    }

    /// The same header after a 4-byte VLAN tag was inserted before the
    /// EtherType: offsets into the frame move by 4.
    pub fn shifted_for_vlan(mut self) -> VnetHdr {
        if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            self.csum_start = self.csum_start.saturating_add(VLAN_HLEN as u16);
        }
        if self.hdr_len != 0 {
            self.hdr_len = self.hdr_len.saturating_add(VLAN_HLEN as u16);
        }
        self
    }
}

/// Why a received frame was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Shorter than an Ethernet header, or its ring metadata is inconsistent.
    Malformed,
    /// The kernel cut it to fit the ring block (tp_snaplen < tp_len).
    Truncated,
    /// Larger than the TX frame slot or the egress MTU.
    Oversized,
}

/// A VLAN tag the kernel took out of the frame (veth and most NICs strip it
/// into skb metadata) that must be put back before forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: u16,
    pub tci: u16,
}

/// Copies `frame` to `out`, re-inserting `vlan` after the MAC addresses when
/// present. Returns the written length. `out` must have room for
/// `frame.len() + VLAN_HLEN`; `frame` must hold at least the two MACs.
pub fn copy_with_vlan(frame: &[u8], vlan: Option<VlanTag>, out: &mut [u8]) -> usize {
    match vlan {
        None => {
            out[..frame.len()].copy_from_slice(frame);
            frame.len()
        }
        Some(tag) => {
            out[..12].copy_from_slice(&frame[..12]);
            out[12..14].copy_from_slice(&tag.tpid.to_be_bytes());
            out[14..16].copy_from_slice(&tag.tci.to_be_bytes());
            out[16..frame.len() + VLAN_HLEN].copy_from_slice(&frame[12..]);
            frame.len() + VLAN_HLEN
        }
    }
}

pub type Mac = [u8; 6];

pub fn dst_mac(frame: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[..6]);
    m
}

pub fn src_mac(frame: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[6..12]);
    m
}

/// Broadcast and multicast addresses have the group bit set.
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// Largest frame (Ethernet header included, virtio header excluded) an
/// interface with `mtu` takes without GSO: the kernel allows a VLAN tag on
/// top of the MTU.
pub fn max_plain_frame(mtu: u32) -> usize {
    mtu as usize + ETH_HLEN + VLAN_HLEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_roundtrip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.write(&mut b);
        assert_eq!(VnetHdr::parse(&b), h);
        assert!(h.is_gso());
    }

    #[test]
    fn vnet_checks() {
        let ok = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let tx = ok.for_tx(100).expect("valid header");
        assert_eq!(
            tx.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM,
            "DATA_VALID is cleared for tx"
        );
        assert!(ok.for_tx(51).is_err(), "checksum field past the end");
        let gso0 = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
            ..Default::default()
        };
        assert!(gso0.for_tx(1000).is_err());
        let unknown = VnetHdr {
            gso_type: 9,
            gso_size: 100,
            ..Default::default()
        };
        assert!(unknown.for_tx(1000).is_err());
        let long_hdr = VnetHdr {
            hdr_len: 500,
            ..Default::default()
        };
        assert_eq!(long_hdr.for_tx(100).map(|h| h.hdr_len), Ok(100));
        assert_eq!(long_hdr.for_tx(60_000).map(|h| h.hdr_len), Ok(500));
        let none = VnetHdr::default();
        assert_eq!(
            none.for_tx(60_000).map(|h| h.hdr_len),
            Ok(LINEAR_HEADERS),
            "the headers are asked to be linear"
        );
        assert_eq!(none.for_tx(60).map(|h| h.hdr_len), Ok(60));
    }

    #[test]
    fn vlan_reinsertion() {
        let mut frame = vec![0u8; 60];
        frame[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        frame[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        let mut out = vec![0u8; 64];
        let n = copy_with_vlan(
            &frame,
            Some(VlanTag {
                tpid: 0x8100,
                tci: 42,
            }),
            &mut out,
        );
        assert_eq!(n, 64);
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0, 42]);
        assert_eq!(&out[16..18], &[0x08, 0x00]);
        assert_eq!(out[18], 0x45);
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            hdr_len: 54,
            ..Default::default()
        }
        .shifted_for_vlan();
        assert_eq!((h.csum_start, h.hdr_len), (38, 58));
        assert_eq!(copy_with_vlan(&frame, None, &mut out), 60);
    }

    #[test]
    fn macs() {
        let f = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6];
        assert!(is_group(&dst_mac(&f)));
        assert!(!is_group(&src_mac(&f)));
        assert_eq!(max_plain_frame(1500), 1518);
    }
}
