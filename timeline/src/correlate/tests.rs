use super::*;
use crate::synth::{self, frame};
use probes::{flags as fl, id, method as m};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

fn cfg() -> CorrelatorConfig {
    CorrelatorConfig {
        timeout_ns: 2_000 * MS,
        join_window_ns: 50 * MS,
        ..Default::default()
    }
}

fn ping(seq: u16) -> Vec<u8> {
    frame::icmp4_echo([10, 0, 1, 1], [10, 0, 2, 1], 7, seq, true)
}

fn ev(probe: u16, flags: u8, ts: u64, skb: u64, head: u64, f: &[u8]) -> Event {
    let meth = if probe >= id::TP_NET_DEV_QUEUE {
        m::TP_BTF
    } else {
        m::KPROBE
    };
    synth::event(probe, meth, flags, ts, skb, head, f, true)
}

fn probes_of(t: &Timeline) -> Vec<&str> {
    t.hops.iter().map(|h| h.probe.as_str()).collect()
}

#[test]
fn one_packet_through_veth_is_one_complete_timeline_after_the_join_window() {
    let mut c = Correlator::new(CorrelatorConfig {
        mono_to_realtime_ns: 1_700_000_000_000_000_000,
        ..cfg()
    });
    let f = ping(1);
    let t0 = 10_000 * MS;
    let mut e0 = ev(id::VETH_XMIT, fl::MATCH, t0, 0xa000, 0xb000, &f);
    synth::set_dev(&mut e0, "veth0");
    let mut e1 = ev(id::TP_NETIF_RX, 0, t0 + 12 * US, 0xa000, 0xb000, &f);
    synth::set_dev(&mut e1, "veth1");
    e1.netns = 4026532302;
    let e2 = synth::event(
        id::IP_RCV,
        m::KPROBE,
        0,
        t0 + 20 * US,
        0xa000,
        0xb000,
        &f,
        false,
    );
    let e3 = ev(
        id::TP_CONSUME_SKB,
        fl::END,
        t0 + 84 * US,
        0xa000,
        0xb000,
        &f,
    );
    for e in [e0, e1, e2, e3] {
        c.push(&e);
    }
    // Ended, but held for a possible fingerprint join.
    assert!(c.poll(t0 + 84 * US + 49 * MS).is_empty());
    let out = c.poll(t0 + 84 * US + 50 * MS);
    assert_eq!(out.len(), 1);
    let t = &out[0];
    assert_eq!(
        t.summary,
        "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1"
    );
    assert!(t.complete && !t.dropped && !t.lost_events);
    assert_eq!(
        probes_of(t),
        ["veth_xmit", "net:netif_rx", "ip_rcv", "skb:consume_skb"]
    );
    assert_eq!(
        t.hops.iter().map(|h| h.delta_ns).collect::<Vec<_>>(),
        [0, 12 * US, 8 * US, 64 * US]
    );
    assert_eq!(t.hops[0].method, "kprobe");
    assert_eq!(t.hops[1].method, "tracepoint");
    assert_eq!(
        (t.hops[0].dev.as_str(), t.hops[1].dev.as_str()),
        ("veth0", "veth1")
    );
    assert_eq!(t.hops[1].netns, 4026532302);
    assert_eq!(
        (t.hops[0].comm.as_str(), t.hops[0].pid, t.hops[0].cpu),
        ("ping", 1234, 1)
    );
    assert_eq!(t.total_ns, 84 * US);
    assert_eq!(t.start_ns, t0);
    assert_eq!(
        t.fingerprint,
        format!("0x{:016x}", probes::fingerprint::from_l3(0x0800, &f[14..]))
    );
    // 1.7e9 s + 10 s after the epoch.
    assert_eq!(t.wall_start, "2023-11-14T22:13:30.000000000Z");
    assert_eq!(t.hops[0].data, f[..probes::CAPTURE_LEN.min(f.len())]);
    assert!(t.hops[0].l2 && !t.hops[2].l2);
    assert_eq!(c.open_packets(), 0);
}

#[test]
fn a_clone_sharing_head_is_the_same_packet_until_every_copy_ends() {
    let mut c = Correlator::new(cfg());
    let f = ping(1);
    c.push(&ev(
        id::__NETIF_RECEIVE_SKB_CORE,
        0,
        1000,
        0xa000,
        0xb000,
        &f,
    ));
    // A tap (packet_rcv) got a clone: new skb address, same data buffer.
    c.push(&ev(id::PACKET_RCV, 0, 2000, 0xc000, 0xb000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 3000, 0xc000, 0xb000, &f));
    // The original is still alive: no emission even long after the window.
    assert!(c.poll(3000 + 100 * MS).is_empty());
    c.push(&ev(id::IP_RCV, 0, 4000, 0xa000, 0xb000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 5000, 0xa000, 0xb000, &f));
    let out = c.poll(5000 + 100 * MS);
    assert_eq!(out.len(), 1);
    assert!(out[0].complete);
    assert_eq!(
        probes_of(&out[0]),
        [
            "__netif_receive_skb_core",
            "packet_rcv",
            "skb:consume_skb",
            "ip_rcv",
            "skb:consume_skb"
        ]
    );
}

#[test]
fn an_skb_address_reused_after_end_is_a_new_packet() {
    let mut c = Correlator::new(cfg());
    let (a, b) = (ping(1), ping(2));
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &a));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 2000, 0xa000, 0xb000, &a));
    // Same address, same head even (the slab gave both back): different packet.
    c.push(&ev(id::VETH_XMIT, 0, 3000, 0xa000, 0xb000, &b));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 4000, 0xa000, 0xb000, &b));
    let out = c.poll(4000 + 100 * MS);
    assert_eq!(out.len(), 2);
    assert_ne!(out[0].id, out[1].id);
    assert!(out[0].summary.ends_with("seq 1") && out[1].summary.ends_with("seq 2"));
    assert!(out.iter().all(|t| t.complete && t.hops.len() == 2));
}

#[test]
fn a_non_ip_skb_in_a_reused_buffer_does_not_join_the_ip_packet_still_holding_it() {
    let mut c = Correlator::new(cfg());
    let f = ping(1);
    // An skb and a clone of it share one head; the skb's free is never
    // seen (TCP coalescing), so the correlator thinks both are alive.
    c.push(&ev(id::TP_NETIF_RX, fl::MATCH, 1000, 0xa000, 0xb000, &f));
    c.push(&ev(id::PACKET_RCV, 0, 2000, 0xc000, 0xb000, &f));
    // The slab hands that skb and a head at the same address to a netlink
    // message, freed with consume_skb.
    let mut nl = synth::event(
        id::TP_CONSUME_SKB,
        m::TP_BTF,
        fl::END,
        3000,
        0xa000,
        0xb000,
        &[0u8; 60],
        false,
    );
    nl.protocol = 0;
    nl.fingerprint = 0;
    c.push(&nl);
    // A clone of the IP packet whose headers are not readable
    // (fingerprint 0, protocol IP) still joins through the shared head.
    let mut frag = ev(id::PACKET_RCV, 0, 4000, 0xd000, 0xb000, &f);
    frag.fingerprint = 0;
    c.push(&frag);
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 5000, 0xc000, 0xb000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 6000, 0xd000, 0xb000, &f));
    let out = c.finish();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(
        probes_of(&out[0]),
        [
            "net:netif_rx",
            "packet_rcv",
            "packet_rcv",
            "skb:consume_skb",
            "skb:consume_skb"
        ],
        "the netlink free is not a hop of the ping"
    );
}

#[test]
fn an_address_that_carried_arp_and_now_carries_ip_is_a_new_packet() {
    let mut c = Correlator::new(cfg());
    let arp = frame::arp(2, [2, 0, 0, 0, 0, 2], [10, 0, 1, 2], [10, 0, 1, 1]);
    // An ARP reply whose free no probe saw (the life stays open)...
    c.push(&ev(id::TP_NETIF_RX, fl::MATCH, 1000, 0xa000, 0xb000, &arp));
    // ...then slab reuse hands the same skb and head to a ping.
    let f = ping(1);
    c.push(&ev(id::IP_OUTPUT, fl::MATCH, 800 * MS, 0xa000, 0xb000, &f));
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        801 * MS,
        0xa000,
        0xb000,
        &f,
    ));
    let out = c.finish();
    let ping_tl: Vec<_> = out.iter().filter(|t| t.summary.contains("ICMP")).collect();
    assert_eq!(ping_tl.len(), 1, "{out:#?}");
    assert_eq!(
        probes_of(ping_tl[0]),
        ["ip_output", "skb:consume_skb"],
        "the ARP hop is not part of the ping"
    );
    assert_eq!(out.len(), 2, "the ARP packet is a timeline of its own");
}

#[test]
fn a_new_head_with_a_new_fingerprint_means_the_end_was_missed() {
    let mut c = Correlator::new(cfg());
    let (a, b) = (ping(1), ping(2));
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &a));
    // consume_skb of packet 1 lost; the address now carries packet 2.
    c.push(&ev(id::VETH_XMIT, 0, 3000, 0xa000, 0xe000, &b));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 4000, 0xa000, 0xe000, &b));
    let out = c.poll(4000 + 100 * MS);
    assert_eq!(out.len(), 2);
    assert!(
        !out[0].complete,
        "the life whose end was not seen is incomplete"
    );
    assert_eq!(out[0].hops.len(), 1);
    assert!(out[1].complete);
    assert_eq!(out[1].hops.len(), 2);
}

#[test]
fn a_new_head_with_the_same_fingerprint_is_the_same_packet() {
    // pskb_expand_head moves the data to a new buffer under the same skb.
    let mut c = Correlator::new(cfg());
    let a = ping(1);
    c.push(&ev(id::IP_OUTPUT, 0, 1000, 0xa000, 0xb000, &a));
    c.push(&ev(id::VETH_XMIT, 0, 2000, 0xa000, 0xe000, &a));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 3000, 0xa000, 0xe000, &a));
    let out = c.poll(3000 + 100 * MS);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].hops.len(), 3);
    assert!(out[0].complete);
}

#[test]
fn a_new_skb_with_the_fingerprint_of_a_recent_packet_joins_it() {
    // AF_PACKET forwarder: the packet is copied into a TPACKET ring and its
    // skb freed; the forwarder sends it out again as a new skb.
    let mut c = Correlator::new(cfg());
    let f = ping(1);
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &f));
    c.push(&ev(id::TPACKET_RCV, 0, 2000, 0xa000, 0xb000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 3000, 0xa000, 0xb000, &f));
    c.push(&synth::no_skb_event(
        id::PACKET_SENDMSG,
        m::KPROBE,
        10 * US,
        98,
    ));
    // 40 ms later (inside the 50 ms window): a new skb, new head, same bytes.
    let t = 3000 + 40 * MS;
    c.push(&ev(id::__DEV_QUEUE_XMIT, 0, t, 0xf000, 0x1_0000, &f));
    c.push(&ev(id::VETH_XMIT, 0, t + 1000, 0xf000, 0x1_0000, &f));
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        t + 2000,
        0xf000,
        0x1_0000,
        &f,
    ));
    // The first piece's window has passed, but the join reopened it.
    assert!(c.poll(t + 2000 + 49 * MS).is_empty());
    let out = c.poll(t + 2000 + 50 * MS);
    assert_eq!(out.len(), 1);
    assert_eq!(
        probes_of(&out[0]),
        [
            "veth_xmit",
            "tpacket_rcv",
            "skb:consume_skb",
            "__dev_queue_xmit",
            "veth_xmit",
            "skb:consume_skb"
        ]
    );
    assert!(out[0].complete);
    assert_eq!(out[0].total_ns, 40 * MS + 4000);
}

#[test]
fn no_fingerprint_join_after_the_window_or_without_a_fingerprint() {
    let mut c = Correlator::new(cfg());
    let f = ping(1);
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 2000, 0xa000, 0xb000, &f));
    // 51 ms after the end, not yet polled: still too late to join.
    c.push(&ev(id::VETH_XMIT, 0, 2000 + 51 * MS, 0xf000, 0x1_0000, &f));
    // ARP has no fingerprint: two ARP skbs never join.
    let arp = frame::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 2]);
    c.push(&ev(
        id::VETH_XMIT,
        0,
        3000 + 51 * MS,
        0x2_0000,
        0x3_0000,
        &arp,
    ));
    c.push(&ev(
        id::VETH_XMIT,
        0,
        4000 + 51 * MS,
        0x4_0000,
        0x5_0000,
        &arp,
    ));
    let out = c.finish();
    assert_eq!(out.len(), 4);
    assert!(out[0].complete, "the first piece ended");
    assert!(out[1..].iter().all(|t| !t.complete && t.hops.len() == 1));
    assert_eq!(out[2].fingerprint, "0x0000000000000000");
    assert_eq!(out[2].summary, "ARP who-has 10.0.0.2 tell 10.0.0.1");
}

#[test]
fn a_silent_packet_times_out_as_incomplete() {
    let mut c = Correlator::new(CorrelatorConfig {
        timeout_ns: 2_000 * MS,
        ..cfg()
    });
    let f = ping(1);
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &f));
    c.push(&ev(id::TP_NETIF_RX, 0, 5000, 0xa000, 0xb000, &f));
    assert!(c.poll(5000 + 2_000 * MS - 1).is_empty());
    let out = c.poll(5000 + 2_000 * MS);
    assert_eq!(out.len(), 1);
    assert!(!out[0].complete && !out[0].ended_unseen);
    // Its skb is forgotten: a later event on that address is a new packet.
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END | fl::DROP,
        3_000 * MS,
        0xa000,
        0xb000,
        &f,
    ));
    let late = c.finish();
    assert_eq!(late.len(), 1);
    assert_ne!(late[0].id, out[0].id);
}

#[test]
fn lost_events_mark_the_packets_open_at_the_time() {
    let mut c = Correlator::new(cfg());
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &ping(1)));
    c.note_lost(id::TP_NETIF_RX, 0);
    c.push(&ev(id::VETH_XMIT, 0, 2000, 0xc000, 0xd000, &ping(2)));
    c.note_lost(id::TP_NETIF_RX, 3);
    // Cumulative counter unchanged: no new loss.
    c.push(&ev(id::VETH_XMIT, 0, 3000, 0xe000, 0xf000, &ping(3)));
    c.note_lost(id::TP_NETIF_RX, 3);
    // Ended before the next loss: done, not affected.
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        3500,
        0xe000,
        0xf000,
        &ping(3),
    ));
    c.note_lost(id::TP_NETIF_RX, 4);
    let out = c.finish();
    let lost: Vec<bool> = out.iter().map(|t| t.lost_events).collect();
    assert_eq!(lost, [true, true, false]);
    let s = c.summary();
    assert_eq!(s.lost_events, 4);
    let rx = s
        .probes
        .iter()
        .find(|p| p.probe == "net:netif_rx")
        .expect("probe with losses listed");
    assert_eq!((rx.events, rx.lost), (0, 4));
}

#[test]
fn a_drop_marks_the_timeline_and_names_the_reason() {
    let mut reasons = HashMap::new();
    reasons.insert(2, "SKB_DROP_REASON_NO_SOCKET".to_string());
    let mut c = Correlator::new(CorrelatorConfig {
        drop_reasons: reasons,
        ..cfg()
    });
    let udp = frame::udp4([10, 0, 1, 1], [10, 0, 2, 1], 1000, 9, 4);
    c.push(&ev(id::UDP_RCV, 0, 1000, 0xa000, 0xb000, &udp));
    let mut d = ev(
        id::TP_KFREE_SKB,
        fl::END | fl::DROP,
        2000,
        0xa000,
        0xb000,
        &udp,
    );
    d.reason = 2;
    c.push(&d);
    // A drop of a packet seen nowhere else still makes a timeline...
    let mut d2 = ev(
        id::TP_KFREE_SKB,
        fl::END | fl::DROP,
        3000,
        0xc000,
        0xd000,
        &ping(5),
    );
    d2.reason = 77;
    c.push(&d2);
    // ...but a bare consume of an unknown skb does not.
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        4000,
        0xe000,
        0xf000,
        &ping(6),
    ));
    let out = c.poll(4000 + 100 * MS);
    assert_eq!(out.len(), 2);
    assert!(out[0].dropped && out[0].complete);
    assert_eq!(out[0].hops[0].drop_reason, None);
    assert_eq!(
        out[0].hops[1].drop_reason.as_deref(),
        Some("SKB_DROP_REASON_NO_SOCKET")
    );
    assert!(out[1].dropped);
    assert_eq!(out[1].hops.len(), 1);
    assert_eq!(
        out[1].hops[0].drop_reason.as_deref(),
        Some("77"),
        "unknown reasons fall back to the number"
    );
    assert_eq!(c.event_counts(), (4, 0, 1));
    assert_eq!(c.summary().dropped, 2);
}

#[test]
fn out_of_order_events_are_sorted_and_late_hops_of_an_ended_skb_stay() {
    let mut c = Correlator::new(cfg());
    let f = ping(1);
    // Per-CPU ring: the netif_rx hop (CPU 0) is read after the END (CPU 1)
    // although it happened before it. ARP has no fingerprint, so only the
    // ended-address memory can place the late hop.
    let arp = frame::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 2]);
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &arp));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 3000, 0xa000, 0xb000, &arp));
    c.push(&ev(id::TP_NETIF_RX, 0, 2000, 0xa000, 0xb000, &arp));
    // An IP packet whose hops arrive shuffled.
    c.push(&ev(id::IP_RCV, 0, 12_000, 0xc000, 0xd000, &f));
    c.push(&ev(id::VETH_XMIT, 0, 10_000, 0xc000, 0xd000, &f));
    c.push(&ev(id::TP_NETIF_RX, 0, 11_000, 0xc000, 0xd000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 13_000, 0xc000, 0xd000, &f));
    let out = c.poll(13_000 + 100 * MS);
    assert_eq!(out.len(), 2);
    for t in &out {
        assert!(t.complete);
        assert_eq!(
            probes_of(t)[..3],
            ["veth_xmit", "net:netif_rx", t.hops[2].probe.as_str()]
        );
        assert!(t.hops.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
        assert_eq!(t.hops[0].delta_ns, 0);
        assert_eq!(t.total_ns, t.hops.iter().map(|h| h.delta_ns).sum::<u64>());
    }
    assert_eq!(
        probes_of(&out[0]),
        ["veth_xmit", "net:netif_rx", "skb:consume_skb"]
    );
    assert_eq!(
        probes_of(&out[1]),
        ["veth_xmit", "net:netif_rx", "ip_rcv", "skb:consume_skb"]
    );
}

#[test]
fn tcp_queue_rcv_ends_the_skb_and_no_skb_events_are_only_counted() {
    let mut c = Correlator::new(cfg());
    let syn = frame::tcp4([10, 0, 1, 1], [10, 0, 2, 1], 40000, 5201, 123, 0, 0x02, 0);
    c.push(&synth::no_skb_event(id::PACKET_SENDMSG, m::KPROBE, 500, 60));
    c.push(&ev(id::TCP_V4_RCV, 0, 1000, 0xa000, 0xb000, &syn));
    c.push(&ev(id::TCP_QUEUE_RCV, 0, 2000, 0xa000, 0xb000, &syn));
    let out = c.poll(2000 + 50 * MS);
    assert_eq!(out.len(), 1, "queued to a socket = arrived");
    assert!(out[0].complete);
    assert_eq!(
        out[0].summary,
        "TCP 10.0.1.1:40000 > 10.0.2.1:5201 [S] seq 123 len 0"
    );
    let s = c.summary();
    assert_eq!((s.packets, s.events), (1, 3));
    let send = s
        .probes
        .iter()
        .find(|p| p.probe == "packet_sendmsg")
        .expect("sendmsg counted");
    assert_eq!((send.events, send.method.as_str()), (1, "kprobe"));
}

#[test]
fn finish_emits_held_packets_complete_and_open_ones_incomplete() {
    let mut c = Correlator::new(cfg());
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &ping(1)));
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        2000,
        0xa000,
        0xb000,
        &ping(1),
    ));
    c.push(&ev(id::VETH_XMIT, 0, 3000, 0xc000, 0xd000, &ping(2)));
    let out = c.finish();
    assert_eq!(
        out.iter().map(|t| t.complete).collect::<Vec<_>>(),
        [true, false]
    );
    let s = c.summary();
    assert_eq!((s.packets, s.complete, s.incomplete), (2, 1, 1));
    assert_eq!(s.ended_unseen, 0, "still open at exit is not ended unseen");
    assert_eq!(c.open_packets(), 0);
}

#[test]
fn uprobe_hops_are_named_by_the_callers_table() {
    let mut c = Correlator::new(cfg());
    c.set_probe_name(id::UPROBE_BASE + 1, "af_packet_input_node_fn");
    let f = ping(1);
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &f));
    let mut u = ev(id::UPROBE_BASE + 1, 0, 2000, 0xa000, 0xb000, &f);
    u.method = m::UPROBE;
    c.push(&u);
    let out = c.finish();
    assert_eq!(out[0].hops[1].probe, "af_packet_input_node_fn");
    assert_eq!(out[0].hops[1].method, "uprobe");
}

#[test]
fn hop_pair_latencies_are_summarised_over_packets() {
    let mut c = Correlator::new(cfg());
    for i in 0..100u64 {
        let skb = 0x10_0000 + i * 0x1000;
        let f = ping(i as u16);
        let t = i * 10 * MS;
        c.push(&ev(id::VETH_XMIT, 0, t, skb, skb + 0x800, &f));
        // veth_xmit -> netif_rx takes (i+1) us: p50 = 50us, p99 = 99us.
        c.push(&ev(
            id::TP_NETIF_RX,
            0,
            t + (i + 1) * US,
            skb,
            skb + 0x800,
            &f,
        ));
        c.push(&ev(
            id::TP_CONSUME_SKB,
            fl::END,
            t + (i + 1) * US + 500,
            skb,
            skb + 0x800,
            &f,
        ));
    }
    c.finish();
    let s = c.summary();
    assert_eq!(s.packets, 100);
    let p = s
        .hop_pairs
        .iter()
        .find(|p| p.from == "veth_xmit" && p.to == "net:netif_rx")
        .expect("pair present");
    assert_eq!(p.count, 100);
    // hdrhistogram with 3 significant digits: within 0.1%.
    let near = |v: u64, want: u64| v.abs_diff(want) * 1000 <= want;
    assert!(near(p.p50_ns, 50 * US), "p50 {}", p.p50_ns);
    assert!(near(p.p90_ns, 90 * US), "p90 {}", p.p90_ns);
    assert!(near(p.p99_ns, 99 * US), "p99 {}", p.p99_ns);
    assert!(near(p.max_ns, 100 * US), "max {}", p.max_ns);
    let q = s
        .hop_pairs
        .iter()
        .find(|p| p.to == "skb:consume_skb")
        .expect("second pair");
    assert_eq!((q.from.as_str(), q.count), ("net:netif_rx", 100));
    assert!(near(q.max_ns, 500));
}

#[test]
fn poll_each_reuses_its_buffer_without_leaking_the_previous_packet() {
    // A long dropped packet, then a short one without bytes: built in the
    // same buffer, the second must carry nothing of the first.
    let feed = |c: &mut Correlator| {
        let arp = frame::arp(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 2]);
        for (i, p) in [
            id::VETH_XMIT,
            id::TP_NETIF_RX,
            id::__NETIF_RECEIVE_SKB_CORE,
            id::IP_RCV,
        ]
        .into_iter()
        .enumerate()
        {
            c.push(&ev(p, 0, 1000 + i as u64, 0xa000, 0xb000, &ping(1)));
        }
        let mut d = ev(
            id::TP_KFREE_SKB,
            fl::END | fl::DROP,
            2000,
            0xa000,
            0xb000,
            &ping(1),
        );
        d.reason = 5;
        c.push(&d);
        let mut e = ev(id::VETH_XMIT, 0, 3000, 0xc000, 0xd000, &arp);
        synth::set_comm(&mut e, "");
        c.push(&e);
    };
    let mut fresh = Correlator::new(cfg());
    feed(&mut fresh);
    let want = fresh.finish();
    let mut reused = Correlator::new(cfg());
    feed(&mut reused);
    let mut got = Vec::new();
    reused.finish_each(|t| got.push(t.clone()));
    assert_eq!(got, want);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].hops.len(), 1);
    assert_eq!(got[1].hops[0].drop_reason, None);
    assert_eq!(got[1].hops[0].comm, "");
    assert!(got[1].summary.starts_with("ARP") && !got[1].dropped);
    assert_eq!(got[0].hops[4].drop_reason.as_deref(), Some("5"));
}

#[test]
fn a_looping_packet_keeps_its_first_hops_and_says_it_lost_the_rest() {
    let mut c = Correlator::new(cfg());
    let f = ping(1);
    for i in 0..(MAX_HOPS as u64 + 10) {
        c.push(&ev(id::BR_FORWARD, 0, 1000 + i, 0xa000, 0xb000, &f));
    }
    let out = c.finish();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].hops.len(), MAX_HOPS);
    assert!(out[0].lost_events);
    assert_eq!(out[0].hops[0].ts_ns, 1000);
}

#[test]
fn attached_probes_are_listed_even_without_events() {
    let mut c = Correlator::new(cfg());
    c.note_attached(id::BR_HANDLE_FRAME, m::FENTRY);
    c.note_attached(id::VETH_XMIT, m::KPROBE);
    c.push(&ev(id::VETH_XMIT, 0, 1000, 0xa000, 0xb000, &ping(1)));
    let probes = c.probe_counts();
    let listed: Vec<(&str, &str, u64)> = probes
        .iter()
        .map(|p| (p.probe.as_str(), p.method.as_str(), p.events))
        .collect();
    assert_eq!(
        listed,
        [("veth_xmit", "kprobe", 1), ("br_handle_frame", "fentry", 0)]
    );
}

/// An event of the one skb address (0xa000) and head (0xb000) that the
/// reuse tests below follow through several lives.
fn at(probe: u16, flags: u8, ts: u64, f: &[u8]) -> Event {
    ev(probe, flags, ts, 0xa000, 0xb000, f)
}

fn ack(id_seq: u32, ack_no: u32) -> Vec<u8> {
    // A pure ACK from 10.0.2.1:5201 to 10.0.1.1:40000; synth sets the IP
    // id from the low bits of seq, so id_seq gives each ACK its own id.
    frame::tcp4(
        [10, 0, 2, 1],
        [10, 0, 1, 1],
        5201,
        40000,
        id_seq,
        ack_no,
        0x10,
        0,
    )
}

#[test]
fn the_next_ack_of_a_flow_in_a_reused_skb_is_a_new_packet() {
    // TCP's backlog coalesces a pure ACK and frees its skb where no
    // tracepoint fires; the slab hands skb and head to the flow's next ACK,
    // first seen away from the filter device (no MATCH yet). Seen on 6.18
    // following iperf3: one timeline in eight held two ACKs.
    let mut c = Correlator::new(cfg());
    let (a1, a2) = (ack(1000, 5000), ack(1001, 70000));
    c.push(&at(id::TP_NET_DEV_QUEUE, 0, 1000, &a1));
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 2000, &a1));
    c.push(&at(id::TP_NETIF_RECEIVE_SKB, 0, 3000, &a1));
    c.push(&at(id::TP_NET_DEV_QUEUE, 0, 40_000, &a2));
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 41_000, &a2));
    c.push(&at(id::TP_CONSUME_SKB, fl::END, 42_000, &a2));
    let out = c.finish();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].summary.contains("ack 5000"), "{}", out[0].summary);
    assert_eq!(
        probes_of(&out[0]),
        ["net:net_dev_queue", "net:netif_rx", "net:netif_receive_skb"]
    );
    assert!(!out[0].complete, "its end was not seen");
    assert!(out[1].summary.contains("ack 70000"), "{}", out[1].summary);
    assert_eq!(
        probes_of(&out[1]),
        ["net:net_dev_queue", "net:netif_rx", "skb:consume_skb"]
    );
    assert!(out[1].complete);
}

#[test]
fn nat_keeps_the_packet_although_its_fingerprint_changes() {
    // DNAT rewrites the destination in place: the flow half of the
    // identity changes, the packet half (IP id, seq, ack) does not.
    let mut c = Correlator::new(cfg());
    let before = ack(1000, 5000);
    let mut after = before.clone();
    after[14 + 19] = 9; // 10.0.1.1 -> 10.0.1.9
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 1000, &before));
    c.push(&at(id::IP_OUTPUT, 0, 2000, &after));
    c.push(&at(id::TP_CONSUME_SKB, fl::END, 3000, &after));
    let out = c.finish();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].hops.len(), 3);
    assert!(out[0].complete);
}

#[test]
fn a_match_compares_with_what_the_kernel_tracked_not_the_last_hop() {
    // An address reused by another flow's packet, first seen away from the
    // filter device: the bytes cannot tell it from a decapsulation, so it
    // stays with the old packet until the filter device sees it. There the
    // kernel compares with the fingerprint it tracked (the first packet's)
    // and flags MATCH: a new packet, which takes along the hops it had
    // before.
    let mut c = Correlator::new(cfg());
    let p1 = ping(1);
    let other = frame::udp4([10, 0, 3, 1], [10, 0, 4, 1], 53, 53, 20);
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 1000, &p1));
    c.push(&at(id::TP_NET_DEV_QUEUE, 0, 9000, &other));
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 10_000, &other));
    c.push(&at(id::TP_CONSUME_SKB, fl::END, 11_000, &other));
    let out = c.finish();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(probes_of(&out[0]), ["net:netif_rx"]);
    assert!(!out[0].complete);
    // Told apart from a timeout: the address came back with a new packet.
    assert!(out[0].ended_unseen);
    assert!(!out[1].ended_unseen);
    assert_eq!(
        probes_of(&out[1]),
        ["net:net_dev_queue", "net:netif_rx", "skb:consume_skb"]
    );
    assert!(out[1].summary.starts_with("UDP"), "{}", out[1].summary);
}

#[test]
fn an_ip_skb_sharing_the_head_of_an_unended_arp_packet_is_not_its_clone() {
    // Seen on 6.1 through skbtrace-fwd: an ARP frame's free was not seen,
    // so its head stayed "live"; the slab gave that head to a TX-ring skb
    // (another address) carrying the ping, which joined the ARP timeline
    // as its clone instead of the ping's.
    let mut c = Correlator::new(cfg());
    let arp = frame::arp(1, [2, 0, 0, 0, 0, 2], [10, 0, 1, 2], [10, 0, 1, 1]);
    let f = ping(1);
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 1000, &arp));
    c.push(&ev(id::IP_OUTPUT, fl::MATCH, 2000, 0xc000, 0xd000, &f));
    c.push(&ev(id::TP_CONSUME_SKB, fl::END, 3000, 0xc000, 0xd000, &f));
    // The forwarder's copy of the ping, in the ARP frame's old head.
    c.push(&ev(id::VETH_XMIT, 0, 10 * MS, 0xe000, 0xb000, &f));
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        11 * MS,
        0xe000,
        0xb000,
        &f,
    ));
    let out = c.finish();
    let pings: Vec<_> = out.iter().filter(|t| t.summary.contains("ICMP")).collect();
    assert_eq!(pings.len(), 1, "{out:#?}");
    assert_eq!(
        probes_of(pings[0]),
        [
            "ip_output",
            "skb:consume_skb",
            "veth_xmit",
            "skb:consume_skb"
        ]
    );
    let arps: Vec<_> = out.iter().filter(|t| t.summary.contains("ARP")).collect();
    assert_eq!(probes_of(arps[0]), ["net:netif_rx"]);
}

#[test]
fn the_next_ack_in_a_reused_skb_that_reaches_dev_only_as_a_copy_is_a_new_packet() {
    // Through an AF_PACKET forwarder: the reused skb ends at the forwarder's
    // socket and a new skb, the forwarder's copy, reaches DEV. No MATCH
    // ever names the reused address; the bytes say it is the flow's next
    // ACK (same addresses and ports, other IP id and ack).
    let mut c = Correlator::new(cfg());
    let (a1, a2) = (ack(1000, 5000), ack(1001, 70000));
    c.push(&at(id::TP_NETIF_RX, fl::MATCH, 1000, &a1));
    c.push(&at(id::TP_NETIF_RECEIVE_SKB, 0, 2000, &a1));
    // a1 coalesced unseen; a2 is built in the same skb and head.
    c.push(&at(id::TP_NET_DEV_QUEUE, 0, 40_000, &a2));
    c.push(&at(id::PACKET_RCV, 0, 41_000, &a2));
    c.push(&at(id::TP_KFREE_SKB, fl::END | fl::DROP, 42_000, &a2));
    // The forwarder's copy, a new skb, on DEV.
    c.push(&ev(id::TP_NETIF_RX, fl::MATCH, 50_000, 0xc000, 0xd000, &a2));
    c.push(&ev(
        id::TP_CONSUME_SKB,
        fl::END,
        51_000,
        0xc000,
        0xd000,
        &a2,
    ));
    let out = c.finish();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(
        probes_of(&out[0]),
        ["net:netif_rx", "net:netif_receive_skb"]
    );
    assert!(!out[0].complete && out[0].ended_unseen);
    assert!(out[1].summary.contains("ack 70000"), "{}", out[1].summary);
    let s = c.summary();
    assert_eq!((s.incomplete, s.ended_unseen), (1, 1));
    assert_eq!(out[1].hops.len(), 5);
}

#[test]
fn an_address_that_carried_ipv6_and_now_carries_ipv4_is_a_new_packet() {
    // Seen with ovs-vswitchd: its TX skb sent an IPv6 multicast whose free
    // no probe saw; 200 ms later the same skb sent a ping, away from DEV.
    let mut c = Correlator::new(cfg());
    let mld = frame::icmp6_echo([0xfe; 16], [0xff; 16], 1, 1);
    let f = ping(1);
    c.push(&at(id::TP_NET_DEV_QUEUE, fl::MATCH, 1000, &mld));
    c.push(&at(id::TP_NET_DEV_QUEUE, 0, 200 * MS, &f));
    c.push(&at(id::TP_CONSUME_SKB, fl::END, 201 * MS, &f));
    let out = c.finish();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(
        out[1].summary.starts_with("ICMP 10.0.1.1"),
        "{}",
        out[1].summary
    );
    assert_eq!(out[1].hops.len(), 2);
}

#[test]
fn a_match_on_a_packet_grown_in_place_is_the_same_packet() {
    // GRO merges later segments into the first skb: on DEV the kernel sees
    // new bytes (the total length) and flags MATCH, but flow and packet
    // (addresses, ports, IP id, seq, ack) are those it followed.
    let mut c = Correlator::new(cfg());
    let seg = frame::tcp4(
        [10, 0, 1, 1],
        [10, 0, 2, 1],
        40000,
        5201,
        7000,
        9,
        0x10,
        1448,
    );
    let mut merged = seg.clone();
    merged[14 + 2..14 + 4].copy_from_slice(&(20u16 + 20 + 2896).to_be_bytes());
    c.push(&at(id::TP_NET_DEV_START_XMIT, fl::MATCH, 1000, &seg));
    c.push(&at(id::TP_NETIF_RECEIVE_SKB, fl::MATCH, 2000, &merged));
    c.push(&at(id::TP_CONSUME_SKB, fl::END, 3000, &merged));
    let out = c.finish();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].hops.len(), 3);
    assert!(out[0].complete);
}

/// Hops the kernel sent without the packet's bytes (the same packet as the
/// skb's earlier event) stay in the timeline, with no bytes and no `l2`;
/// the summary comes from the hop that has them.
#[test]
fn hops_whose_bytes_were_elided_stay_in_the_timeline_without_bytes() {
    let mut c = Correlator::new(cfg());
    let f = ping(3);
    let t0 = 10_000 * MS;
    let first = ev(id::TP_NET_DEV_QUEUE, fl::MATCH, t0, 0xa000, 0xb000, &f);
    let bare = |probe, flags, ts| {
        let mut e = ev(probe, flags | fl::ELIDED, ts, 0xa000, 0xb000, &f);
        e.cap_len = 0;
        e.data = [0; probes::CAPTURE_LEN];
        // As it comes out of a ring record: the header alone.
        crate::decode::decode(&crate::decode::encode(&e)).expect("a header-only event")
    };
    c.push(&first);
    c.push(&bare(id::TP_NETIF_RX, 0, t0 + 5 * US));
    c.push(&bare(id::TP_CONSUME_SKB, fl::END, t0 + 9 * US));
    let out = c.finish();
    assert_eq!(out.len(), 1);
    let t = &out[0];
    assert_eq!(
        probes_of(t),
        ["net:net_dev_queue", "net:netif_rx", "skb:consume_skb"]
    );
    assert!(t.complete);
    assert_eq!(
        t.summary,
        "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 3"
    );
    assert_eq!(t.hops[0].data, f);
    assert!(t.hops[0].l2);
    for h in &t.hops[1..] {
        assert!(h.data.is_empty() && !h.l2, "{h:?}");
    }
}

#[test]
fn with_matched_only_hops_of_a_packet_never_seen_on_the_device_make_no_timeline() {
    // `--sample`: a followed ping ends unseen; its address carries an
    // unsampled packet for two hops before DEV, where the kernel stops
    // following it. Those two hops are not a packet of the trace.
    let run = |matched_only: bool| {
        let mut c = Correlator::new(CorrelatorConfig {
            matched_only,
            ..cfg()
        });
        let other = frame::udp4([10, 0, 3, 1], [10, 0, 4, 1], 53, 53, 20);
        c.push(&ev(
            id::TP_NETIF_RX,
            fl::MATCH,
            1000,
            0xa000,
            0xb000,
            &ping(1),
        ));
        c.push(&ev(id::TP_NET_DEV_QUEUE, 0, 9000, 0xa000, 0xc000, &other));
        c.push(&ev(
            id::TP_NET_DEV_START_XMIT,
            0,
            9500,
            0xa000,
            0xc000,
            &other,
        ));
        let out = c.finish();
        (
            out.iter().map(|t| t.hops.len()).collect::<Vec<_>>(),
            c.summary().packets,
        )
    };
    assert_eq!(run(false), (vec![1, 2], 2));
    assert_eq!(run(true), (vec![1], 1));
}
