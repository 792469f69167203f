//! The whole user-space path on recorded bytes: ring-buffer records ->
//! decode -> correlate -> JSON Lines -> replay -> text, as `skbtrace follow
//! --json` then `skbtrace replay` would run it.

use std::collections::HashMap;

use probes::{flags, id, method};
use timeline::decode::{decode, encode};
use timeline::sink::text::{render_summary, render_timeline};
use timeline::synth::{self, frame};
use timeline::{Correlator, CorrelatorConfig, JsonSink, Sink};

#[test]
fn recorded_bytes_to_json_to_replayed_text() {
    // Two pings and their replies crossing a veth pair, records back to
    // back as the ring buffer hands them out (interleaved packets).
    let mut records = Vec::new();
    for seq in 1..=2u16 {
        let req = frame::icmp4_echo([10, 0, 1, 1], [10, 0, 2, 1], 7, seq, true);
        let rep = frame::icmp4_echo([10, 0, 2, 1], [10, 0, 1, 1], 7, seq, false);
        let t = seq as u64 * 1_000_000_000;
        let (a, b) = (
            0xffff_8880_0000_1000 + seq as u64 * 0x100,
            0xffff_8880_0000_9000 + seq as u64 * 0x100,
        );
        for (probe, meth, fl, dt, skb, f) in [
            (id::VETH_XMIT, method::KPROBE, flags::MATCH, 0, a, &req),
            (id::TP_NETIF_RX, method::TP_BTF, 0, 5_000, a, &req),
            (id::VETH_XMIT, method::KPROBE, flags::MATCH, 40_000, b, &rep),
            (id::ICMP_RCV, method::KPROBE, 0, 20_000, a, &req),
            (
                id::TP_CONSUME_SKB,
                method::TP_BTF,
                flags::END,
                30_000,
                a,
                &req,
            ),
            (id::TP_NETIF_RX, method::TP_BTF, 0, 45_000, b, &rep),
            (
                id::TP_CONSUME_SKB,
                method::TP_BTF,
                flags::END,
                60_000,
                b,
                &rep,
            ),
        ] {
            records.extend_from_slice(&encode(&synth::event(
                probe,
                meth,
                fl,
                t + dt,
                skb,
                skb + 0x10_0000,
                f,
                true,
            )));
        }
    }
    records.extend_from_slice(&encode(&synth::no_skb_event(
        id::PACKET_SENDMSG,
        method::KPROBE,
        3_000_000_000,
        98,
    )));

    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut sink = JsonSink::new(Vec::new());
    let rest = timeline::decode::split(&records, |rec| {
        c.push(&decode(rec).expect("valid record"));
    });
    assert!(rest.is_empty(), "records split into whole events");
    c.poll_each(3_000_000_000, |t| sink.timeline(t).expect("write to Vec"));
    c.finish_each(|t| sink.timeline(t).expect("write to Vec"));
    sink.finish(&c.summary()).expect("write to Vec");
    let json = sink.into_inner();

    let r = timeline::replay::read(&json[..]).expect("replays");
    assert!(!r.summary_recomputed);
    let summaries: Vec<&str> = r.timelines.iter().map(|t| t.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1",
            "ICMP 10.0.2.1 > 10.0.1.1 echo-reply id 7 seq 1",
            "ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 2",
            "ICMP 10.0.2.1 > 10.0.1.1 echo-reply id 7 seq 2",
        ]
    );
    assert!(
        r.timelines
            .iter()
            .all(|t| t.complete && !t.lost_events && !t.dropped)
    );
    assert_eq!(r.summary.events, 15);
    assert_eq!(r.summary.packets, 4);

    let text = render_timeline(&r.timelines[0], &HashMap::new());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "#1 ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1  total 30.0us"
    );
    let deltas: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(deltas, ["+0ns", "+5.00us", "+15.0us", "+10.0us"]);
    assert!(
        lines[3].contains("icmp_rcv")
            && lines[3].contains("veth0@4026532301")
            && lines[3].contains("ping:1234")
    );
    let sum = render_summary(&r.summary);
    assert!(
        sum.starts_with(
            "4 packets (4 complete, 0 incomplete, 0 dropped), 15 events, 0 lost events"
        ),
        "{sum}"
    );
    assert!(
        sum.contains("packet_sendmsg"),
        "NO_SKB events are counted: {sum}"
    );
}
