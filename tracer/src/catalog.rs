//! The probe catalog: every logical point skbtrace follows packets through,
//! which argument holds the skb, and the ladder of ways to reach it, best
//! first: fentry, kprobe, then the nearest tracepoint.

use probes::id;

/// A kernel function point.
#[derive(Clone, Copy, Debug)]
pub struct FuncPoint {
    pub func: &'static str,
    pub id: u16,
    /// Which argument is the skb (0-based); None when the function has none.
    pub skb_arg: Option<u8>,
    /// The argument is a `struct sk_buff **`.
    pub skb_pp: bool,
    /// eBPF program names for each rung.
    pub fentry_prog: &'static str,
    pub kprobe_prog: &'static str,
    /// The tracepoint that fires at or next to the same place, if any.
    pub fallback: Option<u16>,
    /// What a user learns from this point.
    pub about: &'static str,
}

/// A tracepoint target.
#[derive(Clone, Copy, Debug)]
pub struct TracePoint {
    pub id: u16,
    pub category: &'static str,
    pub name: &'static str,
    pub tp_btf_prog: &'static str,
    pub raw_tp_prog: &'static str,
    /// Attached even when no function point falls back to it.
    pub always: bool,
    pub about: &'static str,
}

impl TracePoint {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.category, self.name)
    }
}

macro_rules! fp {
    ($func:literal, $id:expr, $arg:expr, $pp:expr, $fe:literal, $kp:literal, $fb:expr, $about:literal) => {
        FuncPoint {
            func: $func,
            id: $id,
            skb_arg: $arg,
            skb_pp: $pp,
            fentry_prog: $fe,
            kprobe_prog: $kp,
            fallback: $fb,
            about: $about,
        }
    };
}

pub const FUNCTIONS: &[FuncPoint] = &[
    fp!(
        "__dev_queue_xmit",
        id::__DEV_QUEUE_XMIT,
        Some(0),
        false,
        "fe_dev_queue_xmit",
        "kp_dev_queue_xmit",
        Some(id::TP_NET_DEV_QUEUE),
        "a packet is queued for transmission on a device"
    ),
    fp!(
        "dev_hard_start_xmit",
        id::DEV_HARD_START_XMIT,
        Some(0),
        false,
        "fe_dev_hard_start_xmit",
        "kp_dev_hard_start_xmit",
        Some(id::TP_NET_DEV_START_XMIT),
        "the qdisc hands the packet to the driver"
    ),
    fp!(
        "veth_xmit",
        id::VETH_XMIT,
        Some(0),
        false,
        "fe_veth_xmit",
        "kp_veth_xmit",
        Some(id::TP_NET_DEV_START_XMIT),
        "veth driver transmit: the skb moves to the peer"
    ),
    fp!(
        "netif_rx",
        id::NETIF_RX,
        Some(0),
        false,
        "fe_netif_rx",
        "kp_netif_rx",
        Some(id::TP_NETIF_RX),
        "the packet is queued to a CPU backlog"
    ),
    fp!(
        "__netif_rx",
        id::__NETIF_RX,
        Some(0),
        false,
        "fe_dunder_netif_rx",
        "kp_dunder_netif_rx",
        Some(id::TP_NETIF_RX),
        "backlog enqueue as veth calls it on 6.1"
    ),
    fp!(
        "__netif_receive_skb_core",
        id::__NETIF_RECEIVE_SKB_CORE,
        Some(0),
        true,
        "fe_nrsc",
        "kp_nrsc",
        Some(id::TP_NETIF_RECEIVE_SKB),
        "softirq receive: taps, rx handlers, protocol dispatch"
    ),
    fp!(
        "br_handle_frame",
        id::BR_HANDLE_FRAME,
        Some(0),
        true,
        "fe_br_handle_frame",
        "kp_br_handle_frame",
        Some(id::TP_NETIF_RECEIVE_SKB),
        "a bridge port receives the frame"
    ),
    fp!(
        "br_forward",
        id::BR_FORWARD,
        Some(1),
        false,
        "fe_br_forward",
        "kp_br_forward",
        None,
        "the bridge forwards the frame to a port"
    ),
    fp!(
        "packet_rcv",
        id::PACKET_RCV,
        Some(0),
        false,
        "fe_packet_rcv",
        "kp_packet_rcv",
        None,
        "an AF_PACKET socket receives the packet"
    ),
    fp!(
        "tpacket_rcv",
        id::TPACKET_RCV,
        Some(0),
        false,
        "fe_tpacket_rcv",
        "kp_tpacket_rcv",
        None,
        "an AF_PACKET mmap ring receives the packet"
    ),
    fp!(
        "packet_sendmsg",
        id::PACKET_SENDMSG,
        None,
        false,
        "fe_packet_sendmsg",
        "kp_packet_sendmsg",
        None,
        "a process sends on an AF_PACKET socket (no skb yet)"
    ),
    fp!(
        "ip_rcv",
        id::IP_RCV,
        Some(0),
        false,
        "fe_ip_rcv",
        "kp_ip_rcv",
        None,
        "IPv4 receive"
    ),
    fp!(
        "ip_forward",
        id::IP_FORWARD,
        Some(0),
        false,
        "fe_ip_forward",
        "kp_ip_forward",
        None,
        "IPv4 forwarding"
    ),
    fp!(
        "ip_local_deliver",
        id::IP_LOCAL_DELIVER,
        Some(0),
        false,
        "fe_ip_local_deliver",
        "kp_ip_local_deliver",
        None,
        "IPv4 delivery to this host"
    ),
    fp!(
        "icmp_rcv",
        id::ICMP_RCV,
        Some(0),
        false,
        "fe_icmp_rcv",
        "kp_icmp_rcv",
        None,
        "ICMP receive"
    ),
    fp!(
        "udp_rcv",
        id::UDP_RCV,
        Some(0),
        false,
        "fe_udp_rcv",
        "kp_udp_rcv",
        None,
        "UDP receive"
    ),
    fp!(
        "tcp_v4_rcv",
        id::TCP_V4_RCV,
        Some(0),
        false,
        "fe_tcp_v4_rcv",
        "kp_tcp_v4_rcv",
        None,
        "TCP receive"
    ),
    fp!(
        "tcp_queue_rcv",
        id::TCP_QUEUE_RCV,
        Some(1),
        false,
        "fe_tcp_queue_rcv",
        "kp_tcp_queue_rcv",
        Some(id::TP_TCP_PROBE),
        "TCP data is queued to the socket"
    ),
    fp!(
        "tcp_add_backlog",
        id::TCP_ADD_BACKLOG,
        Some(1),
        false,
        "fe_tcp_add_backlog",
        "kp_tcp_add_backlog",
        None,
        "TCP segment queued to a busy socket's backlog"
    ),
    fp!(
        "ip_output",
        id::IP_OUTPUT,
        Some(2),
        false,
        "fe_ip_output",
        "kp_ip_output",
        None,
        "IPv4 output"
    ),
    fp!(
        "ip_finish_output2",
        id::IP_FINISH_OUTPUT2,
        Some(2),
        false,
        "fe_ip_finish_output2",
        "kp_ip_finish_output2",
        None,
        "IPv4 output after netfilter: neighbour lookup"
    ),
];

macro_rules! tp {
    ($id:expr, $cat:literal, $name:literal, $tb:literal, $rt:literal, $always:expr, $about:literal) => {
        TracePoint {
            id: $id,
            category: $cat,
            name: $name,
            tp_btf_prog: $tb,
            raw_tp_prog: $rt,
            always: $always,
            about: $about,
        }
    };
}

pub const TRACEPOINTS: &[TracePoint] = &[
    tp!(
        id::TP_NET_DEV_QUEUE,
        "net",
        "net_dev_queue",
        "tb_net_dev_queue",
        "rt_net_dev_queue",
        false,
        "dev_queue_xmit entry"
    ),
    tp!(
        id::TP_NET_DEV_START_XMIT,
        "net",
        "net_dev_start_xmit",
        "tb_net_dev_start_xmit",
        "rt_net_dev_start_xmit",
        false,
        "right before the driver's ndo_start_xmit (veth_xmit)"
    ),
    tp!(
        id::TP_NETIF_RX,
        "net",
        "netif_rx",
        "tb_netif_rx",
        "rt_netif_rx",
        false,
        "backlog enqueue"
    ),
    tp!(
        id::TP_NETIF_RECEIVE_SKB,
        "net",
        "netif_receive_skb",
        "tb_netif_receive_skb",
        "rt_netif_receive_skb",
        false,
        "in __netif_receive_skb_core, before taps and rx handlers"
    ),
    tp!(
        id::TP_KFREE_SKB,
        "skb",
        "kfree_skb",
        "tb_kfree_skb",
        "rt_kfree_skb",
        true,
        "the packet is dropped, with the reason"
    ),
    tp!(
        id::TP_CONSUME_SKB,
        "skb",
        "consume_skb",
        "tb_consume_skb",
        "rt_consume_skb",
        true,
        "the packet's life ends normally"
    ),
    tp!(
        id::TP_TCP_PROBE,
        "tcp",
        "tcp_probe",
        "tb_tcp_probe",
        "rt_tcp_probe",
        false,
        "an established TCP socket takes the segment (tcp_rcv_established): the packet arrived"
    ),
];

pub fn tracepoint(id: u16) -> Option<&'static TracePoint> {
    TRACEPOINTS.iter().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalog_covers_the_points_users_ask_for() {
        let names: HashSet<&str> = FUNCTIONS.iter().map(|f| f.func).collect();
        for want in [
            "veth_xmit",
            "netif_rx",
            "__netif_rx",
            "br_handle_frame",
            "__netif_receive_skb_core",
            "tcp_queue_rcv",
            "__dev_queue_xmit",
            "dev_hard_start_xmit",
            "ip_rcv",
            "ip_output",
            "ip_finish_output2",
            "packet_rcv",
            "tpacket_rcv",
            "packet_sendmsg",
        ] {
            assert!(names.contains(want), "{want} missing from the catalog");
        }
        let tps: HashSet<String> = TRACEPOINTS.iter().map(|t| t.full_name()).collect();
        for want in [
            "skb:kfree_skb",
            "skb:consume_skb",
            "net:netif_receive_skb",
            "net:netif_rx",
        ] {
            assert!(tps.contains(want), "{want} missing");
        }
    }

    #[test]
    fn skb_argument_positions_match_the_kernel_prototypes() {
        let get = |n: &str| FUNCTIONS.iter().find(|f| f.func == n).unwrap();
        // struct sk_buff ** in both.
        assert!(get("br_handle_frame").skb_pp && get("__netif_receive_skb_core").skb_pp);
        assert!(!get("veth_xmit").skb_pp);
        // tcp_queue_rcv(struct sock *sk, struct sk_buff *skb, bool *fragstolen)
        assert_eq!(get("tcp_queue_rcv").skb_arg, Some(1));
        // ip_output(struct net *, struct sock *, struct sk_buff *)
        assert_eq!(get("ip_output").skb_arg, Some(2));
        assert_eq!(get("packet_sendmsg").skb_arg, None);
    }

    #[test]
    fn ids_are_unique_and_named_like_the_kernel() {
        let mut seen = HashSet::new();
        for f in FUNCTIONS {
            assert!(seen.insert(f.id), "duplicate id {}", f.id);
            assert_eq!(probes::id::name(f.id), Some(f.func));
        }
        for t in TRACEPOINTS {
            assert!(seen.insert(t.id), "duplicate id {}", t.id);
            assert_eq!(probes::id::name(t.id), Some(t.full_name().as_str()));
        }
        for f in FUNCTIONS {
            if let Some(fb) = f.fallback {
                assert!(
                    tracepoint(fb).is_some(),
                    "{} falls back to unknown id {fb}",
                    f.func
                );
            }
        }
    }
}
