//! The live TUI fed by a made-up source, the way `skbtrace follow --tui`
//! feeds it, to try it out without root and to watch it keep up:
//!
//!     cargo run -p tui --release --example live -- [PACKETS_PER_SEC] [SECONDS]
//!
//! Defaults: 5000 packets/s for 60 s, then the source ends (the TUI stays
//! until q).

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/demo.rs"]
mod demo;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut last_status = Instant::now();
        let mut last_sent = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            // Catch up to the wanted rate in bursts, every 10 ms.
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let mut t = demo::demo(sent);
                t.hops.iter_mut().for_each(|h| h.cpu = (sent % 8) as u32);
                if tx.send(tui::Input::Timeline(t)).is_err() {
                    return; // the TUI quit
                }
                sent += 1;
            }
            if last_status.elapsed() >= Duration::from_secs(1) {
                let eps = (sent - last_sent) as f64 * 8.0 / last_status.elapsed().as_secs_f64();
                last_sent = sent;
                last_status = Instant::now();
                let status = tui::Status {
                    events_per_sec: eps,
                    lost_per_probe: vec![("net:netif_rx".into(), sent / 10_000)],
                    probes: vec![
                        ("veth_xmit".into(), "tracepoint".into()),
                        ("net:netif_rx".into(), "tp_btf".into()),
                        ("br_handle_frame".into(), "kprobe".into()),
                    ],
                    source: "live: demo0".into(),
                };
                if tx.send(tui::Input::Status(status)).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = tx.send(tui::Input::End);
    });
    tui::run(
        rx,
        tui::Options {
            max_packets: 2000,
            source: Some("live: demo0".into()),
            ..tui::Options::default()
        },
    )
}
