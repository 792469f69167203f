//! Per interface and queue counters.
//!
//! A worker counts in plain integers and publishes them with relaxed stores
//! after each burst: one writer per counter set, no locked instructions on
//! the per-frame path. Readers (the stats printer) may see a burst late.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Plain counters a worker updates per frame.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters { $(#[doc = $doc] pub $name: u64),* }

        /// The published copy of `Counters`.
        #[derive(Debug, Default)]
        pub struct Shared { $($name: AtomicU64),* }

        impl Shared {
            pub fn publish(&self, c: &Counters) {
                $(self.$name.store(c.$name, Ordering::Relaxed);)*
            }
            pub fn load(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed)),* }
            }
        }

        impl Counters {
            pub fn add(&mut self, o: &Counters) {
                $(self.$name += o.$name;)*
            }
            /// `key=value` pairs in a fixed order (logfmt).
            pub fn logfmt(&self) -> String {
                let mut s = String::new();
                $(let _ = write!(s, " {}={}", stringify!($name), self.$name);)*
                s.trim_start().to_string()
            }
        }
    };
}

counters! {
    rx_packets: "Frames read from the RX ring.",
    rx_bytes: "Bytes of those frames, as on the wire.",
    tx_packets: "Frames handed to the kernel (through the TX ring, or by sendmsg when large).",
    tx_bytes: "Bytes of those frames.",
    tx_direct: "Of tx_packets, large frames sent by sendmsg straight from the RX ring (one copy fewer).",
    drop_ring_full: "Frames not sent because this interface's TX ring was full.",
    drop_kernel: "Frames the kernel dropped because the RX ring was full (PACKET_STATISTICS tp_drops).",
    drop_truncated: "Frames cut short by the kernel to fit a ring block.",
    drop_oversized: "Frames larger than the TX frame slot or the egress MTU.",
    drop_malformed: "Frames shorter than an Ethernet header or with an inconsistent virtio-net header.",
    drop_send_error: "Large frames the kernel refused to send (sendmsg failed: interface down, no memory).",
    tx_kick_errors: "Failed TX kicks (sendto: interface down or gone); their frames stay queued in the ring.",
    filtered: "Bridge mode: frames whose destination is on the port they came from.",
    kernel_freezes: "Times the kernel found the RX ring full (PACKET_STATISTICS tp_freeze_q_cnt).",
}

impl Counters {
    pub fn drops(&self) -> u64 {
        self.drop_ring_full
            + self.drop_kernel
            + self.drop_truncated
            + self.drop_oversized
            + self.drop_malformed
            + self.drop_send_error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_format() {
        let s = Shared::default();
        let c = Counters {
            rx_packets: 3,
            tx_bytes: 180,
            drop_kernel: 1,
            drop_oversized: 2,
            ..Default::default()
        };
        s.publish(&c);
        let got = s.load();
        assert_eq!(got, c);
        assert_eq!(got.drops(), 3);
        let line = got.logfmt();
        assert!(
            line.starts_with("rx_packets=3 rx_bytes=0 tx_packets=0 tx_bytes=180"),
            "{line}"
        );
        let mut sum = Counters::default();
        sum.add(&c);
        sum.add(&c);
        assert_eq!(sum.rx_packets, 6);
    }
}
