//! One tcpdump-like line per packet from its captured bytes:
//! `ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1`,
//! `TCP 10.0.1.1:40000 > 10.0.2.1:5201 [S] seq 123 len 0`,
//! `ARP who-has 10.0.0.2 tell 10.0.0.1`, else the ethertype.
//!
//! Never panics on short or malformed bytes: a capture cut inside a header
//! says `[truncated]` after what could be read.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// The L3 protocol and where its header starts in `data`. `l2`: `data`
/// starts at the Ethernet header. `protocol` is skb->protocol, used when
/// there is no Ethernet header (0 = guess from the IP version nibble).
/// Returns `(ethertype, l3 offset, vlan ids)`.
pub fn locate_l3(data: &[u8], l2: bool, protocol: u16) -> Option<(u16, usize, Vec<u16>)> {
    if !l2 {
        let et = match protocol {
            0 => match data.first().map(|b| b >> 4) {
                Some(4) => ETH_P_IP,
                Some(6) => ETH_P_IPV6,
                _ => return None,
            },
            p => p,
        };
        return Some((et, 0, Vec::new()));
    }
    let mut off = 12;
    let mut vlans = Vec::new();
    loop {
        let et = be16(data, off)?;
        if (et == ETH_P_8021Q || et == ETH_P_8021AD) && vlans.len() < 2 {
            vlans.push(be16(data, off + 2)? & 0x0fff);
            off += 4;
            continue;
        }
        return Some((et, off + 2, vlans));
    }
}

/// The ethertype of a capture that starts at L3, for synthesising an
/// Ethernet header (pcapng). IP version nibble, else IPv4.
pub fn l3_ethertype(data: &[u8]) -> u16 {
    match data.first().map(|b| b >> 4) {
        Some(6) => ETH_P_IPV6,
        _ => ETH_P_IP,
    }
}

/// The summary line for one packet. Empty `data` gives `no data captured`.
pub fn summarize(data: &[u8], l2: bool, protocol: u16) -> String {
    let mut s = String::with_capacity(64);
    summarize_into(&mut s, data, l2, protocol);
    s
}

/// [`summarize`] into `s` (cleared first), reusing its buffer.
pub fn summarize_into(s: &mut String, data: &[u8], l2: bool, protocol: u16) {
    s.clear();
    if data.is_empty() {
        s.push_str("no data captured");
        return;
    }
    let Some((et, off, vlans)) = locate_l3(data, l2, protocol) else {
        s.push_str("Ethernet [truncated]");
        return;
    };
    let l3 = data.get(off..).unwrap_or(&[]);
    for v in vlans {
        let _ = write!(s, "vlan {v} ");
    }
    match et {
        ETH_P_IP => ipv4(s, l3),
        ETH_P_IPV6 => ipv6(s, l3),
        ETH_P_ARP => arp(s, l3),
        other => {
            let _ = write!(s, "ethertype 0x{other:04x}");
            if let Some(name) = ethertype_name(other) {
                let _ = write!(s, " ({name})");
            }
        }
    }
}

fn ethertype_name(et: u16) -> Option<&'static str> {
    Some(match et {
        0x8035 => "RARP",
        0x8847 => "MPLS",
        0x8863 | 0x8864 => "PPPoE",
        0x888e => "EAPOL",
        0x88cc => "LLDP",
        0x88f7 => "PTP",
        0x9000 => "loopback",
        _ => return None,
    })
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn v4(b: &[u8], i: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(be32(b, i)?))
}

fn v6(b: &[u8], i: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(i..i + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

const TRUNC: &str = " [truncated]";

fn ipv4(s: &mut String, ip: &[u8]) {
    let (Some(vihl), Some(src), Some(dst)) = (ip.first(), v4(ip, 12), v4(ip, 16)) else {
        s.push_str("IPv4");
        s.push_str(TRUNC);
        return;
    };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    let total = be16(ip, 2).unwrap_or(0) as usize;
    let proto = ip[9];
    let frag = be16(ip, 6).unwrap_or(0) & 0x1fff;
    let l4 = ip.get(ihl..).unwrap_or(&[]);
    // Bytes of L4 header plus payload, by the IP header (not the capture).
    let l4_len = total.saturating_sub(ihl);
    if frag != 0 {
        let _ = write!(
            s,
            "IPv4 {src} > {dst} proto {proto} frag offset {}",
            frag as usize * 8
        );
        return;
    }
    l4_summary(s, proto, Addr::V4(src), Addr::V4(dst), l4, l4_len);
}

fn ipv6(s: &mut String, ip: &[u8]) {
    let (Some(src), Some(dst)) = (v6(ip, 8), v6(ip, 24)) else {
        s.push_str("IPv6");
        s.push_str(TRUNC);
        return;
    };
    let payload = be16(ip, 4).unwrap_or(0) as usize;
    let mut next = ip[6];
    let mut off = 40;
    // Walk the extension headers that commonly precede the L4 header.
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                let (Some(&nh), Some(&len)) = (ip.get(off), ip.get(off + 1)) else {
                    break;
                };
                next = nh;
                off += (len as usize + 1) * 8;
            }
            44 => {
                let Some(&nh) = ip.get(off) else { break };
                let frag = be16(ip, off + 2).unwrap_or(0) >> 3;
                if frag != 0 {
                    let _ = write!(
                        s,
                        "IPv6 {src} > {dst} next {nh} frag offset {}",
                        frag as usize * 8
                    );
                    return;
                }
                next = nh;
                off += 8;
            }
            _ => break,
        }
    }
    let l4 = ip.get(off..).unwrap_or(&[]);
    let l4_len = (payload + 40).saturating_sub(off);
    l4_summary(s, next, Addr::V6(src), Addr::V6(dst), l4, l4_len);
}

/// A source or destination address. The summary is made for every packet
/// the reader emits (one per four or five events following TCP), so the
/// common IPv4 case is written digit by digit: formatted with `write!`, the
/// summary was most of core::fmt's 7% of the reader's profile.
#[derive(Clone, Copy)]
enum Addr {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Addr {
    fn push(&self, s: &mut String) {
        match self {
            Addr::V4(a) => {
                for (i, b) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        s.push('.');
                    }
                    num(s, b);
                }
            }
            Addr::V6(a) => {
                let _ = write!(s, "{a}");
            }
        }
    }

    /// With a port; IPv6 addresses are bracketed so the port stays readable.
    fn push_port(&self, s: &mut String, port: u16) {
        let v6 = matches!(self, Addr::V6(_));
        if v6 {
            s.push('[');
        }
        self.push(s);
        s.push_str(if v6 { "]:" } else { ":" });
        num(s, port);
    }
}

fn num(s: &mut String, n: impl itoa::Integer) {
    s.push_str(itoa::Buffer::new().format(n));
}

/// `NAME SRC > DST`, the start of most summaries.
fn head(s: &mut String, name: &str, src: Addr, dst: Addr) {
    s.push_str(name);
    s.push(' ');
    src.push(s);
    s.push_str(" > ");
    dst.push(s);
}

/// `NAME SRC:PORT > DST:PORT`, the start of TCP and UDP summaries.
fn head_ports(s: &mut String, name: &str, (src, sp): (Addr, u16), (dst, dp): (Addr, u16)) {
    s.push_str(name);
    s.push(' ');
    src.push_port(s, sp);
    s.push_str(" > ");
    dst.push_port(s, dp);
}

fn l4_summary(s: &mut String, proto: u8, src: Addr, dst: Addr, l4: &[u8], l4_len: usize) {
    match proto {
        6 => {
            let (Some(sp), Some(dp), Some(seq), Some(ack), Some(&off), Some(&fl)) = (
                be16(l4, 0),
                be16(l4, 2),
                be32(l4, 4),
                be32(l4, 8),
                l4.get(12),
                l4.get(13),
            ) else {
                head(s, "TCP", src, dst);
                s.push_str(TRUNC);
                return;
            };
            let hdr = ((off >> 4) as usize) * 4;
            head_ports(s, "TCP", (src, sp), (dst, dp));
            s.push_str(" [");
            tcp_flags(s, fl);
            s.push_str("] seq ");
            num(s, seq);
            if fl & 0x10 != 0 {
                s.push_str(" ack ");
                num(s, ack);
            }
            s.push_str(" len ");
            num(s, l4_len.saturating_sub(hdr));
        }
        17 => {
            let (Some(sp), Some(dp), Some(ulen)) = (be16(l4, 0), be16(l4, 2), be16(l4, 4)) else {
                head(s, "UDP", src, dst);
                s.push_str(TRUNC);
                return;
            };
            head_ports(s, "UDP", (src, sp), (dst, dp));
            s.push_str(" len ");
            num(s, (ulen as usize).saturating_sub(8));
        }
        1 => icmp4(s, src, dst, l4),
        58 => icmp6(s, src, dst, l4),
        p => {
            let fam = if matches!(src, Addr::V6(_)) {
                "IPv6"
            } else {
                "IPv4"
            };
            head(s, fam, src, dst);
            let _ = write!(s, " proto {p} len {l4_len}");
        }
    }
}

/// tcpdump's flag letters: S F R P U E W and `.` for ACK.
fn tcp_flags(s: &mut String, fl: u8) {
    let before = s.len();
    for (bit, c) in [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ] {
        if fl & bit != 0 {
            s.push(c);
        }
    }
    if fl & 0x10 != 0 {
        s.push('.');
    }
    if s.len() == before {
        s.push_str("none");
    }
}

fn icmp4(s: &mut String, src: Addr, dst: Addr, l4: &[u8]) {
    let (Some(&ty), Some(&code)) = (l4.first(), l4.get(1)) else {
        head(s, "ICMP", src, dst);
        s.push_str(TRUNC);
        return;
    };
    head(s, "ICMP", src, dst);
    s.push(' ');
    match ty {
        0 | 8 => {
            let what = if ty == 8 {
                "echo-request"
            } else {
                "echo-reply"
            };
            match (be16(l4, 4), be16(l4, 6)) {
                (Some(id), Some(seq)) => {
                    s.push_str(what);
                    s.push_str(" id ");
                    num(s, id);
                    s.push_str(" seq ");
                    num(s, seq);
                }
                _ => {
                    let _ = write!(s, "{what}{TRUNC}");
                }
            }
        }
        3 => {
            let why = match code {
                0 => "net",
                1 => "host",
                2 => "protocol",
                3 => "port",
                4 => "frag-needed",
                13 => "admin-prohibited",
                _ => "",
            };
            if why.is_empty() {
                let _ = write!(s, "unreachable code {code}");
            } else {
                let _ = write!(s, "{why}-unreachable");
            }
        }
        11 => s.push_str("time-exceeded"),
        5 => s.push_str("redirect"),
        _ => {
            let _ = write!(s, "type {ty} code {code}");
        }
    }
}

fn icmp6(s: &mut String, src: Addr, dst: Addr, l4: &[u8]) {
    let (Some(&ty), Some(&code)) = (l4.first(), l4.get(1)) else {
        head(s, "ICMP6", src, dst);
        s.push_str(TRUNC);
        return;
    };
    head(s, "ICMP6", src, dst);
    s.push(' ');
    match ty {
        128 | 129 => {
            let what = if ty == 128 {
                "echo-request"
            } else {
                "echo-reply"
            };
            match (be16(l4, 4), be16(l4, 6)) {
                (Some(id), Some(seq)) => {
                    let _ = write!(s, "{what} id {id} seq {seq}");
                }
                _ => {
                    let _ = write!(s, "{what}{TRUNC}");
                }
            }
        }
        133 => s.push_str("router-solicitation"),
        134 => s.push_str("router-advertisement"),
        135 | 136 => {
            let what = if ty == 135 {
                "neighbor-solicitation who-has"
            } else {
                "neighbor-advertisement tgt-is"
            };
            match v6(l4, 8) {
                Some(t) => {
                    let _ = write!(s, "{what} {t}");
                }
                None => {
                    let _ = write!(s, "{what}{TRUNC}");
                }
            }
        }
        1 => {
            let _ = write!(s, "unreachable code {code}");
        }
        2 => s.push_str("packet-too-big"),
        3 => s.push_str("time-exceeded"),
        _ => {
            let _ = write!(s, "type {ty} code {code}");
        }
    }
}

fn arp(s: &mut String, a: &[u8]) {
    // Only Ethernet/IPv4 ARP has fixed offsets worth decoding.
    let (Some(op), Some(spa), Some(tpa), Some(sha)) =
        (be16(a, 6), v4(a, 14), v4(a, 24), a.get(8..14))
    else {
        s.push_str("ARP");
        s.push_str(TRUNC);
        return;
    };
    if be16(a, 0) != Some(1) || be16(a, 2) != Some(ETH_P_IP) {
        let _ = write!(s, "ARP op {op}");
        return;
    }
    match op {
        1 => {
            let _ = write!(s, "ARP who-has {tpa} tell {spa}");
        }
        2 => {
            let _ = write!(
                s,
                "ARP reply {spa} is-at {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                sha[0], sha[1], sha[2], sha[3], sha[4], sha[5]
            );
        }
        _ => {
            let _ = write!(s, "ARP op {op} {spa} > {tpa}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::frame;

    #[test]
    fn icmp_echo_from_l2_and_from_l3() {
        let f = frame::icmp4_echo([10, 0, 1, 1], [10, 0, 2, 1], 7, 1, true);
        assert_eq!(
            summarize(&f, true, 0),
            "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1"
        );
        // The same packet captured from the IP header (skb without mac header).
        assert_eq!(
            summarize(&f[14..], false, ETH_P_IP),
            "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1"
        );
        let r = frame::icmp4_echo([10, 0, 2, 1], [10, 0, 1, 1], 7, 1, false);
        assert_eq!(
            summarize(&r[14..], false, 0),
            "ICMP 10.0.2.1 > 10.0.1.1 echo-reply id 7 seq 1"
        );
    }

    #[test]
    fn tcp_syn_synack_and_data() {
        let syn = frame::tcp4([10, 0, 1, 1], [10, 0, 2, 1], 40000, 5201, 123, 0, 0x02, 0);
        assert_eq!(
            summarize(&syn, true, 0),
            "TCP 10.0.1.1:40000 > 10.0.2.1:5201 [S] seq 123 len 0"
        );
        let synack = frame::tcp4([10, 0, 2, 1], [10, 0, 1, 1], 5201, 40000, 900, 124, 0x12, 0);
        assert_eq!(
            summarize(&synack, true, 0),
            "TCP 10.0.2.1:5201 > 10.0.1.1:40000 [S.] seq 900 ack 124 len 0"
        );
        // 1448 bytes of payload: only the first bytes are captured, the
        // length still comes from the IP header.
        let data = frame::tcp4(
            [10, 0, 1, 1],
            [10, 0, 2, 1],
            40000,
            5201,
            124,
            901,
            0x18,
            1448,
        );
        assert!(data.len() > 128);
        assert_eq!(
            summarize(&data[..128], true, 0),
            "TCP 10.0.1.1:40000 > 10.0.2.1:5201 [P.] seq 124 ack 901 len 1448"
        );
    }

    #[test]
    fn tcp_without_flags_and_other_ip_protocols() {
        let bare = frame::tcp4([10, 0, 1, 1], [10, 0, 2, 1], 1, 65535, u32::MAX, 7, 0, 0);
        assert_eq!(
            summarize(&bare, true, 0),
            "TCP 10.0.1.1:1 > 10.0.2.1:65535 [none] seq 4294967295 len 0"
        );
        // Every flag bit set.
        let all = frame::tcp4([255, 0, 0, 9], [0, 0, 0, 0], 80, 8080, 0, 1, 0xff, 3);
        assert_eq!(
            summarize(&all, true, 0),
            "TCP 255.0.0.9:80 > 0.0.0.0:8080 [SFRPUEW.] seq 0 ack 1 len 3"
        );
        let mut gre = frame::udp4([10, 9, 8, 7], [10, 0, 0, 1], 1, 2, 4);
        gre[14 + 9] = 47;
        assert_eq!(
            summarize(&gre, true, 0),
            "IPv4 10.9.8.7 > 10.0.0.1 proto 47 len 12"
        );
    }

    #[test]
    fn udp_and_ipv6() {
        let u = frame::udp4([192, 168, 1, 2], [192, 168, 1, 3], 5353, 53, 20);
        assert_eq!(
            summarize(&u, true, 0),
            "UDP 192.168.1.2:5353 > 192.168.1.3:53 len 20"
        );
        let a: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let b: [u8; 16] = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let e = frame::icmp6_echo(a, b, 9, 3);
        assert_eq!(
            summarize(&e, true, 0),
            "ICMP6 fd00::1 > fd00::2 echo-request id 9 seq 3"
        );
        let u6 = frame::udp6(a, b, 1000, 2000, 5);
        assert_eq!(
            summarize(&u6[14..], false, 0),
            "UDP [fd00::1]:1000 > [fd00::2]:2000 len 5"
        );
    }

    #[test]
    fn arp_request_and_reply() {
        let req = frame::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 2]);
        assert_eq!(
            summarize(&req, true, 0),
            "ARP who-has 10.0.0.2 tell 10.0.0.1"
        );
        let rep = frame::arp(2, [2, 0, 0, 0, 0, 2], [10, 0, 0, 2], [10, 0, 0, 1]);
        assert_eq!(
            summarize(&rep, true, 0),
            "ARP reply 10.0.0.2 is-at 02:00:00:00:00:02"
        );
    }

    #[test]
    fn vlan_other_ethertypes_and_garbage() {
        let mut f = frame::icmp4_echo([10, 0, 1, 1], [10, 0, 2, 1], 7, 1, true);
        // Insert an 802.1Q tag with VLAN 100.
        f.splice(12..12, [0x81, 0x00, 0x00, 100]);
        assert_eq!(
            summarize(&f, true, 0),
            "vlan 100 ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1"
        );
        let mut lldp = vec![0u8; 60];
        lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        assert_eq!(summarize(&lldp, true, 0), "ethertype 0x88cc (LLDP)");
        assert_eq!(summarize(&[], true, 0), "no data captured");
        assert_eq!(summarize(&[1, 2, 3], true, 0), "Ethernet [truncated]");
        let f = frame::icmp4_echo([10, 0, 1, 1], [10, 0, 2, 1], 7, 1, true);
        assert_eq!(summarize(&f[..20], true, 0), "IPv4 [truncated]");
        assert_eq!(
            summarize(&f[..34], true, 0),
            "ICMP 10.0.1.1 > 10.0.2.1 [truncated]"
        );
        assert_eq!(
            summarize(&f[..38], true, 0),
            "ICMP 10.0.1.1 > 10.0.2.1 echo-request [truncated]"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // xorshift: deterministic garbage, with the ethertype and IP
        // version/IHL/protocol bytes forced to the values that reach each
        // parser, at every length up to a full capture.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for et in [0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x1234] {
            for proto in [1u8, 6, 17, 58, 0, 43, 44, 60, 99] {
                for len in 0..=probes::CAPTURE_LEN {
                    let mut b: Vec<u8> = (0..len).map(|_| next()).collect();
                    if len >= 14 {
                        b[12..14].copy_from_slice(&et.to_be_bytes());
                    }
                    if len > 14 {
                        b[14] = if et == 0x86dd {
                            0x60
                        } else {
                            0x40 | (next() & 0x0f)
                        };
                    }
                    if len > 23 {
                        b[23] = proto;
                    }
                    if len > 20 {
                        b[20] = proto;
                    }
                    let _ = summarize(&b, true, 0);
                    let _ = summarize(&b, false, 0);
                    let _ = summarize(&b, false, et);
                    if let Some(l3) = b.get(14..) {
                        let _ = summarize(l3, false, et);
                    }
                }
            }
        }
    }
}
