//! Synthetic frames and events for tests, examples and the benchmark (not
//! used on any runtime path). Frames are real-looking: valid lengths and
//! checksums, so Wireshark and tshark decode them as they would a capture.

use probes::{CAPTURE_LEN, EVENT_VERSION, Event};

/// Builders of whole Ethernet frames (start at the Ethernet header; slice
/// `[14..]` for the L3 view).
pub mod frame {
    fn csum(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += w as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn ipv4(f: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, l4: &[u8]) {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = csum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(l4);
    }

    fn ipv6(f: &mut Vec<u8>, src: [u8; 16], dst: [u8; 16], next: u8, l4: &[u8]) {
        f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
    }

    /// ICMP echo request (`request`) or reply with 56 bytes of payload, like ping.
    pub fn icmp4_echo(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16, request: bool) -> Vec<u8> {
        let mut l4 = vec![if request { 8 } else { 0 }, 0, 0, 0];
        l4.extend_from_slice(&id.to_be_bytes());
        l4.extend_from_slice(&seq.to_be_bytes());
        l4.extend((0..56u8).map(|i| i.wrapping_add(0x10)));
        let c = csum(&l4);
        l4[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = eth(0x0800);
        ipv4(&mut f, src, dst, 1, seq, &l4);
        f
    }

    /// TCP segment with a 20-byte header and `payload` zero bytes
    /// (checksum left zero: offload-style, as the kernel often has it).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp4(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: usize,
    ) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(20 + payload);
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&seq.to_be_bytes());
        l4.extend_from_slice(&ack.to_be_bytes());
        l4.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        l4.resize(20 + payload, 0);
        let mut f = eth(0x0800);
        ipv4(&mut f, src, dst, 6, (seq & 0xffff) as u16, &l4);
        f
    }

    pub fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: usize) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(8 + payload);
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.resize(8 + payload, 0x61);
        let mut f = eth(0x0800);
        ipv4(&mut f, src, dst, 17, 1, &l4);
        f
    }

    pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: usize) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(8 + payload);
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.resize(8 + payload, 0x61);
        let mut f = eth(0x86dd);
        ipv6(&mut f, src, dst, 17, &l4);
        f
    }

    pub fn icmp6_echo(src: [u8; 16], dst: [u8; 16], id: u16, seq: u16) -> Vec<u8> {
        let mut l4 = vec![128, 0, 0, 0];
        l4.extend_from_slice(&id.to_be_bytes());
        l4.extend_from_slice(&seq.to_be_bytes());
        l4.extend_from_slice(&[0xab; 16]);
        let mut f = eth(0x86dd);
        ipv6(&mut f, src, dst, 58, &l4);
        f
    }

    /// ARP over Ethernet/IPv4: `op` 1 = request, 2 = reply.
    pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut f = eth(0x0806);
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&sha);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f.resize(60, 0);
        f
    }
}

/// An event as `on_skb` would write it: `frame` starts at the Ethernet
/// header; with `l2` false the capture starts at L3 (the first 14 bytes are
/// skipped). The fingerprint is computed from the bytes like the kernel does.
///
/// # Panics
///
/// If `frame` is shorter than an Ethernet header (14 bytes): test data only.
#[allow(clippy::too_many_arguments)]
pub fn event(
    probe: u16,
    method: u8,
    flags: u8,
    ts_ns: u64,
    skb: u64,
    head: u64,
    frame: &[u8],
    l2: bool,
) -> Event {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let bytes = if l2 { frame } else { &frame[14..] };
    let mut data = [0u8; CAPTURE_LEN];
    let n = bytes.len().min(CAPTURE_LEN);
    data[..n].copy_from_slice(&bytes[..n]);
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"ping");
    let mut dev = [0u8; 16];
    dev[..5].copy_from_slice(b"veth0");
    Event {
        version: EVENT_VERSION,
        probe,
        method,
        flags: flags | if l2 { probes::flags::L2 } else { 0 },
        cap_len: n as u16,
        ts_ns,
        skb,
        head,
        fingerprint: probes::fingerprint::from_l3(ethertype, &frame[14..]),
        pid: 1234,
        tid: 1234,
        cpu: 1,
        ifindex: 5,
        netns: 4026532301,
        len: bytes.len() as u32,
        mark: 0,
        reason: 0,
        protocol: ethertype,
        wire_len: Event::SIZE as u16,
        _pad: [0; 4],
        comm,
        dev,
        data,
    }
}

/// Sets the device name (truncated to 15 bytes, NUL-terminated).
pub fn set_dev(ev: &mut Event, name: &str) {
    ev.dev = [0; 16];
    let n = name.len().min(15);
    ev.dev[..n].copy_from_slice(&name.as_bytes()[..n]);
}

/// Sets the task name (truncated to 15 bytes, NUL-terminated).
pub fn set_comm(ev: &mut Event, name: &str) {
    ev.comm = [0; 16];
    let n = name.len().min(15);
    ev.comm[..n].copy_from_slice(&name.as_bytes()[..n]);
}

/// A packet-less event (packet_sendmsg).
pub fn no_skb_event(probe: u16, method: u8, ts_ns: u64, len: u32) -> Event {
    let mut ev = event(
        probe,
        method,
        probes::flags::NO_SKB,
        ts_ns,
        0,
        0,
        &[0u8; 14],
        false,
    );
    ev.cap_len = 0;
    ev.fingerprint = 0;
    ev.len = len;
    ev.ifindex = 0;
    ev.netns = 0;
    ev.dev = [0; 16];
    ev
}

/// Three packets run through a [`crate::Correlator`], for sink tests and
/// demos: a ping over a veth pair into another netns (complete, one hop
/// captured from L3), a UDP datagram dropped with `NO_SOCKET`, and a TCP SYN
/// that timed out after a ring-buffer loss. Wall clock: the first hop is at
/// 2024-02-29T12:00:00Z.
pub fn demo_timelines() -> (Vec<crate::Timeline>, crate::Summary) {
    use probes::{flags as fl, id, method as m};
    let t0: u64 = 5_000_000_000;
    let mut reasons = std::collections::HashMap::new();
    reasons.insert(3, "NO_SOCKET".to_string());
    let mut c = crate::Correlator::new(crate::CorrelatorConfig {
        mono_to_realtime_ns: 1_709_208_000_000_000_000 - t0 as i64,
        drop_reasons: reasons,
        ..Default::default()
    });
    let ping = frame::icmp4_echo([10, 0, 1, 1], [10, 0, 2, 1], 7, 1, true);
    let hop =
        |probe: u16, meth: u8, flags: u8, dt: u64, dev: &str, netns: u32, cpu: u32, l2: bool| {
            let mut e = event(
                probe,
                meth,
                flags,
                t0 + dt,
                0xffff_8880_0a00_0000,
                0xffff_8880_0b00_0000,
                &ping,
                l2,
            );
            set_dev(&mut e, dev);
            e.netns = netns;
            e.cpu = cpu;
            if cpu == 0 {
                set_comm(&mut e, "swapper/0");
                e.pid = 0;
            }
            e
        };
    c.push(&hop(
        id::VETH_XMIT,
        m::KPROBE,
        fl::MATCH,
        0,
        "veth0",
        4026531840,
        1,
        true,
    ));
    c.push(&hop(
        id::TP_NETIF_RX,
        m::TP_BTF,
        0,
        12_300,
        "veth1",
        4026532301,
        1,
        true,
    ));
    c.push(&hop(
        id::__NETIF_RECEIVE_SKB_CORE,
        m::KPROBE,
        0,
        47_100,
        "veth1",
        4026532301,
        0,
        true,
    ));
    c.push(&hop(
        id::IP_RCV,
        m::KPROBE,
        0,
        52_000,
        "veth1",
        4026532301,
        0,
        false,
    ));
    c.push(&hop(
        id::TP_CONSUME_SKB,
        m::TP_BTF,
        fl::END,
        84_200,
        "veth1",
        4026532301,
        0,
        true,
    ));

    let udp = frame::udp4([10, 0, 1, 1], [10, 0, 2, 1], 40000, 9, 12);
    let mut u0 = event(
        id::UDP_RCV,
        m::KPROBE,
        0,
        t0 + 1_000_000,
        0xffff_8880_0c00_0000,
        0xffff_8880_0d00_0000,
        &udp,
        false,
    );
    set_dev(&mut u0, "veth1");
    u0.netns = 4026532301;
    let mut u1 = u0;
    u1.probe = id::TP_KFREE_SKB;
    u1.method = m::RAW_TP;
    u1.flags |= fl::END | fl::DROP;
    u1.ts_ns += 3_400;
    u1.reason = 3;
    c.push(&u0);
    c.push(&u1);

    let syn = frame::tcp4([10, 0, 1, 1], [10, 0, 2, 1], 40000, 5201, 123, 0, 0x02, 0);
    let mut s0 = event(
        id::VETH_XMIT,
        m::FENTRY,
        0,
        t0 + 2_000_000,
        0xffff_8880_0e00_0000,
        0xffff_8880_0f00_0000,
        &syn,
        true,
    );
    set_comm(&mut s0, "iperf3");
    s0.pid = 4242;
    c.push(&s0);
    c.note_lost(id::TP_NETIF_RX, 2);

    let mut out = c.poll(t0 + 2_000_000 + 100_000_000);
    out.extend(c.finish());
    (out, c.summary())
}
