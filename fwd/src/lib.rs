//! skbtrace-fwd: an AF_PACKET forwarder built like a VPP host-interface.
//!
//! Per interface and queue: a SOCK_RAW ETH_P_ALL socket with a TPACKET_V3
//! RX ring and a TX ring (kicked with `sendto(fd, NULL, 0, MSG_DONTWAIT)`),
//! PACKET_QDISC_BYPASS, PACKET_FANOUT across queues, PACKET_VNET_HDR for
//! GSO/checksum offload; frames of 8 KiB and more leave by `sendmsg` from the
//! RX ring instead (one copy fewer). One worker thread per queue index owns that queue's
//! socket on every interface, so a frame is received and transmitted by the
//! same thread without locks.

pub mod bridge;
pub mod direct;
pub mod frame;
pub mod hooks;
pub mod ring;
pub mod stats;
pub mod sys;
pub mod worker;
