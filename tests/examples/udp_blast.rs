//! Sends UDP datagrams at a fixed rate, in sendmmsg batches, for the
//! benchmarks: iperf3 cannot drive 100k small packets/s on a loaded
//! 2-vCPU machine while the tracer runs, this can (one syscall per 32).
//!
//!   udp_blast DST_IP:PORT PACKETS_PER_SEC SECONDS [PAYLOAD_BYTES]
//!
//! Prints `sent N packets in S s (R pkt/s)`. Every datagram carries its
//! sequence number, so each is a distinct packet to skbtrace.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const BATCH: usize = 32;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| -> Option<(SocketAddr, u64, f64, usize)> {
        Some((
            args.first()?.parse().ok()?,
            args.get(1)?.parse().ok()?,
            args.get(2)?.parse().ok()?,
            args.get(3).map_or(Some(18), |s| s.parse().ok())?,
        ))
    })();
    let Some((dst, rate, secs, payload)) = parsed.filter(|p| p.1 > 0 && p.3 >= 8) else {
        eprintln!("usage: udp_blast DST_IP:PORT PACKETS_PER_SEC SECONDS [PAYLOAD_BYTES >= 8]");
        return ExitCode::from(2);
    };
    match blast(dst, rate, Duration::from_secs_f64(secs), payload) {
        Ok((n, took)) => {
            println!(
                "sent {n} packets in {:.2} s ({:.0} pkt/s)",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("udp_blast: {e}");
            ExitCode::FAILURE
        }
    }
}

fn blast(
    dst: SocketAddr,
    rate: u64,
    duration: Duration,
    payload: usize,
) -> std::io::Result<(u64, Duration)> {
    let sock = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(dst)?;
    let mut bufs = vec![vec![0u8; payload]; BATCH];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        // Pace by batch: send when the schedule says these packets are due.
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        let now = start.elapsed();
        if due > now {
            std::thread::sleep(due - now);
        }
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        for (i, b) in bufs.iter_mut().enumerate() {
            b[..8].copy_from_slice(&(sent + i as u64).to_be_bytes());
            iov.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            });
        }
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: all-zero is a valid mmsghdr; the fields set below
                // point into `iov`, which outlives the call.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: `msgs` holds BATCH valid headers for a connected socket.
        let n =
            unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // A full socket buffer or no ARP entry yet: try again. So for
            // ECONNREFUSED: the receiver's ICMP port-unreachable for an
            // earlier datagram (nothing listens, on purpose), reported once.
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS | libc::EAGAIN | libc::ECONNREFUSED)
            ) {
                continue;
            }
            return Err(e);
        }
        sent += n as u64;
    }
    Ok((sent, start.elapsed()))
}
