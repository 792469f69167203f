//! The live source side: draining the channel never waits, is bounded in
//! time during a burst, and keeps statistics for packets the list evicts.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use timeline::model::{Hop, Timeline};
use tui::{App, Input, Options, Status, drain};

fn two_hops(id: u64) -> Timeline {
    Timeline {
        id,
        summary: format!("UDP 10.0.0.1:5000 > 10.0.0.2:6000 len 64 #{id}"),
        complete: true,
        start_ns: id * 1000,
        total_ns: 500,
        hops: vec![
            Hop {
                probe: "veth_xmit".into(),
                ts_ns: id * 1000,
                ..Hop::default()
            },
            Hop {
                probe: "net:netif_rx".into(),
                ts_ns: id * 1000 + 500,
                delta_ns: 500,
                ..Hop::default()
            },
        ],
        ..Timeline::default()
    }
}

#[test]
fn an_empty_channel_returns_at_once() {
    let (_tx, rx) = mpsc::channel::<Input>();
    let mut app = App::new(&Options::default());
    let t = Instant::now();
    let d = drain(&mut app, &rx, Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_millis(100));
    assert_eq!((d.received, d.more, d.disconnected), (0, false, false));
}

#[test]
fn a_burst_is_taken_in_time_bounded_slices_and_nothing_is_lost() {
    let (tx, rx) = mpsc::channel();
    let n = 200_000u64;
    for id in 0..n {
        tx.send(Input::Timeline(two_hops(id))).expect("send");
    }
    let mut app = App::new(&Options {
        max_packets: 5_000,
        ..Options::default()
    });
    // A zero budget stops at the first clock check: proof the loop yields
    // to keys mid-burst instead of draining everything first.
    let d = drain(&mut app, &rx, Duration::ZERO);
    assert!(d.more && d.received < n as usize, "{d:?}");
    let mut total = d.received;
    while total < n as usize {
        let d = drain(&mut app, &rx, Duration::from_millis(30));
        assert!(d.received > 0, "stalled at {total}");
        total += d.received;
    }
    app.refresh();
    assert_eq!(total, n as usize);
    assert_eq!(app.shown(), 5_000);
    // The newest packet is the one followed.
    assert_eq!(app.selected_timeline().map(|t| t.id), Some(n - 1));
}

#[test]
fn status_end_and_hangup_reach_the_model() {
    let (tx, rx) = mpsc::channel();
    tx.send(Input::Status(Status {
        events_per_sec: 10.0,
        source: "live: veth9".into(),
        ..Status::default()
    }))
    .expect("send");
    tx.send(Input::Timeline(two_hops(1))).expect("send");
    tx.send(Input::End).expect("send");
    drop(tx);
    let mut app = App::new(&Options::default());
    let d = drain(&mut app, &rx, Duration::from_secs(1));
    assert_eq!(d.received, 3);
    assert!(d.disconnected);
    app.refresh();
    assert_eq!(app.shown(), 1);
}
