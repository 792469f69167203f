//! The packet fingerprint: a hash of header fields that survive forwarding
//! (not TTL, not checksums, not MAC addresses), computed the same way by the
//! kernel programs, the uprobe programs and user space, so pieces of one
//! packet's path can be joined where a new skb is built.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// IP protocol numbers the fingerprint knows about.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

#[inline(always)]
pub fn mix(h: u64, v: u32) -> u64 {
    (h ^ v as u64).wrapping_mul(FNV_PRIME)
}

/// The L4 words that go into a fingerprint, taken from the first 16 bytes of
/// the L4 header (`l4` as read from the packet, in network byte order).
/// TCP: ports, seq, ack. UDP: ports and length. ICMP: type/code, id/seq.
#[inline(always)]
pub fn l4_words(proto: u8, l4: &[u8; 16]) -> [u32; 3] {
    let w = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
    match proto {
        IPPROTO_TCP => [w(0), w(4), w(8)],
        // Checksum excluded: it may be filled in late (offload).
        IPPROTO_UDP => [w(0), w(4) & 0xffff_0000, 0],
        // type and code, then id and sequence; the checksum is skipped.
        IPPROTO_ICMP | IPPROTO_ICMPV6 => [w(0) & 0xffff_0000, w(4), 0],
        _ => [0, 0, 0],
    }
}

/// Fingerprint of an IPv4 packet. Addresses and words in network order as
/// read from the packet (`u32::from_be_bytes`). The total length keeps a
/// pure ACK and the data segment that follows it (same seq/ack, often the
/// same IP id) apart.
#[inline(always)]
pub fn ipv4(saddr: u32, daddr: u32, proto: u8, ip_id: u16, tot_len: u16, l4: [u32; 3]) -> u64 {
    let mut h = FNV_OFFSET;
    h = mix(h, 4);
    h = mix(h, saddr);
    h = mix(h, daddr);
    h = mix(h, ((proto as u32) << 16) | ip_id as u32);
    h = mix(h, tot_len as u32);
    h = mix(h, l4[0]);
    h = mix(h, l4[1]);
    h = mix(h, l4[2]);
    finish(h)
}

/// Fingerprint of an IPv6 packet: addresses as 4+4 words, flow label,
/// next header, then the same L4 words as IPv4.
#[inline(always)]
pub fn ipv6(
    saddr: [u32; 4],
    daddr: [u32; 4],
    flow_label: u32,
    next: u8,
    payload_len: u16,
    l4: [u32; 3],
) -> u64 {
    let mut h = FNV_OFFSET;
    h = mix(h, 6);
    h = mix(h, saddr[0]);
    h = mix(h, saddr[1]);
    h = mix(h, saddr[2]);
    h = mix(h, saddr[3]);
    h = mix(h, daddr[0]);
    h = mix(h, daddr[1]);
    h = mix(h, daddr[2]);
    h = mix(h, daddr[3]);
    h = mix(h, ((next as u32) << 20) | (flow_label & 0x000f_ffff));
    h = mix(h, payload_len as u32);
    h = mix(h, l4[0]);
    h = mix(h, l4[1]);
    h = mix(h, l4[2]);
    finish(h)
}

/// Zero means "no fingerprint"; a real hash never returns it.
#[inline(always)]
fn finish(h: u64) -> u64 {
    if h == 0 { 1 } else { h }
}

/// The header fields both [`from_l3`] and [`identity_from_l3`] hash, read
/// from bytes that start at the IP header.
struct Headers {
    v6: bool,
    /// IPv4 uses word 0 of each.
    saddr: [u32; 4],
    daddr: [u32; 4],
    proto: u8,
    ip_id: u16,
    /// IPv4 total length, IPv6 payload length.
    len: u16,
    /// IPv6's first word (version, class, flow label).
    word0: u32,
    /// The first 16 bytes of the L4 header, zero-padded.
    l4: [u8; 16],
    /// L4 bytes present (up to 16); None when the IPv4 header claims more
    /// than was captured.
    l4_len: Option<usize>,
}

fn parse(ethertype: u16, l3: &[u8]) -> Option<Headers> {
    let be32 = |i: usize| u32::from_be_bytes([l3[i], l3[i + 1], l3[i + 2], l3[i + 3]]);
    let be16 = |i: usize| u16::from_be_bytes([l3[i], l3[i + 1]]);
    let (v6, l4_off) = match ethertype {
        0x0800 if l3.len() >= 20 && l3[0] >> 4 == 4 => (false, ((l3[0] & 0xf) as usize) * 4),
        0x86dd if l3.len() >= 40 && l3[0] >> 4 == 6 => (true, 40),
        _ => return None,
    };
    let mut h = Headers {
        v6,
        saddr: [0; 4],
        daddr: [0; 4],
        proto: if v6 { l3[6] } else { l3[9] },
        ip_id: if v6 { 0 } else { be16(4) },
        len: if v6 { be16(4) } else { be16(2) },
        word0: be32(0),
        l4: [0; 16],
        l4_len: (l4_off <= l3.len()).then(|| (l3.len() - l4_off).min(16)),
    };
    if v6 {
        h.saddr = [be32(8), be32(12), be32(16), be32(20)];
        h.daddr = [be32(24), be32(28), be32(32), be32(36)];
    } else {
        h.saddr[0] = be32(12);
        h.daddr[0] = be32(16);
    }
    if let Some(n) = h.l4_len {
        h.l4[..n].copy_from_slice(&l3[l4_off..l4_off + n]);
    }
    Some(h)
}

/// Computes the fingerprint from a frame's bytes: `l3` is the slice starting
/// at the IP header, `ethertype` the L3 protocol. Used by user space (and
/// tests) to check what the kernel computed. Returns 0 when the packet is not
/// IP or is too short.
pub fn from_l3(ethertype: u16, l3: &[u8]) -> u64 {
    let Some(h) = parse(ethertype, l3) else {
        return 0;
    };
    let words = l4_words(h.proto, &h.l4);
    if h.v6 {
        ipv6(h.saddr, h.daddr, h.word0, h.proto, h.len, words)
    } else {
        ipv4(h.saddr[0], h.daddr[0], h.proto, h.ip_id, h.len, words)
    }
}

/// A packet's identity split in two: `flow`, the fields NAT may rewrite
/// (addresses, ports, ICMP id) with the protocol, and `packet`, the fields
/// that tell packets of one flow apart and that forwarding and NAT keep
/// (IPv4 id, TCP seq and ack, ICMP type and sequence). Not the lengths:
/// GRO and reassembly grow a packet in place.
///
/// Why: the kernel frees some skbs where no tracepoint fires (TCP's
/// backlog coalescing of pure ACKs), and the slab hands the same skb and
/// head straight to the flow's next packet. One address whose fingerprint
/// changes with the same `flow` and another `packet` is two packets; a
/// change of `flow` alone is NAT, and of both, a tunnel's decapsulation or
/// a reuse by another flow, which the bytes cannot tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub flow: u64,
    pub packet: u64,
}

/// The [`Identity`] of the packet whose IP header starts `l3`; `None` when
/// it is not IP or too short to hold its L4 header's identity fields.
pub fn identity_from_l3(ethertype: u16, l3: &[u8]) -> Option<Identity> {
    let h = parse(ethertype, l3)?;
    let l4_len = h.l4_len?;
    let (addr_words, version) = if h.v6 { (4, 6) } else { (1, 4) };
    let mut flow = mix(FNV_OFFSET, version);
    for w in h.saddr[..addr_words].iter().chain(&h.daddr[..addr_words]) {
        flow = mix(flow, *w);
    }
    flow = mix(flow, h.proto as u32);
    let mut packet = if h.v6 {
        FNV_OFFSET
    } else {
        mix(FNV_OFFSET, h.ip_id as u32)
    };
    let w = l4_words(h.proto, &h.l4);
    let need = match h.proto {
        IPPROTO_TCP => {
            // Ports; seq and ack.
            flow = mix(flow, w[0]);
            packet = mix(mix(packet, w[1]), w[2]);
            12
        }
        IPPROTO_UDP => {
            flow = mix(flow, w[0]);
            4
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            // The id; type (and code) and sequence.
            flow = mix(flow, w[1] >> 16);
            packet = mix(mix(packet, w[0] >> 16), w[1] & 0xffff);
            8
        }
        _ => 0,
    };
    (l4_len >= need).then_some(Identity { flow, packet })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 + TCP header with the given id, total length, seq, ack, TTL.
    fn tcp(id: u16, tot_len: u16, seq: u32, ack: u32, ttl: u8) -> [u8; 40] {
        let mut p = [0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&tot_len.to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[8] = ttl;
        p[9] = IPPROTO_TCP;
        p[10] = ttl; // a checksum that changes with the TTL
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p
    }

    #[test]
    fn forwarding_changes_do_not_change_the_fingerprint() {
        // A router decrements the TTL and rewrites the checksum.
        let a = from_l3(0x0800, &tcp(7, 140, 1000, 5, 64));
        let b = from_l3(0x0800, &tcp(7, 140, 1000, 5, 63));
        assert_ne!(a, 0);
        assert_eq!(a, b);
    }

    #[test]
    fn an_ack_and_the_data_segment_after_it_differ() {
        let ack = from_l3(0x0800, &tcp(7, 40, 1000, 5, 64));
        let data = from_l3(0x0800, &tcp(7, 140, 1000, 5, 64));
        assert_ne!(ack, data);
        assert_ne!(
            from_l3(0x0800, &tcp(8, 140, 1000, 5, 64)),
            data,
            "IP id counts"
        );
        assert_ne!(
            from_l3(0x0800, &tcp(7, 140, 1100, 5, 64)),
            data,
            "seq counts"
        );
    }

    #[test]
    fn non_ip_and_short_packets_have_none() {
        assert_eq!(from_l3(0x0806, &[0u8; 28]), 0);
        assert_eq!(from_l3(0x0800, &[0x45u8; 10]), 0);
        assert_eq!(from_l3(0x86dd, &[0x60u8; 20]), 0);
    }

    #[test]
    fn identity_separates_the_flow_from_the_packet() {
        let id = |p: &[u8]| identity_from_l3(0x0800, p).unwrap();
        let ack1 = id(&tcp(7, 40, 1000, 5, 64));
        // The flow's next ACK in the same buffer: same flow, other packet.
        let ack2 = id(&tcp(8, 40, 1000, 6, 64));
        assert_eq!(ack1.flow, ack2.flow);
        assert_ne!(ack1.packet, ack2.packet);
        // Forwarding (TTL) and GRO (length) keep both halves.
        assert_eq!(id(&tcp(7, 1500, 1000, 5, 63)), ack1);
        // NAT rewrites an address: the flow changes, the packet does not.
        let mut natted = tcp(7, 40, 1000, 5, 64);
        natted[12] = 192;
        let n = id(&natted);
        assert_ne!(n.flow, ack1.flow);
        assert_eq!(n.packet, ack1.packet);
        // Not IP, or too short for the TCP seq and ack: no identity.
        assert_eq!(identity_from_l3(0x0806, &[0u8; 40]), None);
        assert_eq!(identity_from_l3(0x0800, &tcp(7, 40, 1, 2, 64)[..28]), None);
    }
}
