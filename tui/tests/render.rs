//! What a user sees: the app rendered into ratatui's TestBackend, checked
//! line by line and against text snapshots in tests/snapshots/ (regenerate
//! with UPDATE_SNAPSHOTS=1 after a deliberate change, and read the diff).

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use timeline::model::{Hop, ProbeCount, Record, Summary, Timeline};
use tui::{Action, App, ExportFormat, Options, Status};

/// A packet whose hops have these (probe, dev, delta) values, starting at
/// `start_ns`.
fn packet(id: u64, start_ns: u64, hops: &[(&str, &str, u64)]) -> Timeline {
    let mut ts = start_ns;
    let hops: Vec<Hop> = hops
        .iter()
        .enumerate()
        .map(|(i, (probe, dev, delta))| {
            let delta = if i == 0 { 0 } else { *delta };
            ts += delta;
            Hop {
                probe: probe.to_string(),
                method: "tracepoint".into(),
                dev: dev.to_string(),
                ifindex: 2,
                netns: 4026531840 + i as u32,
                cpu: (id % 4) as u32,
                pid: 0,
                comm: "swapper/1".into(),
                ts_ns: ts,
                delta_ns: delta,
                len: 98,
                ..Hop::default()
            }
        })
        .collect();
    Timeline {
        id,
        summary: format!("ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq {id}"),
        fingerprint: format!("0x{id:016x}"),
        complete: true,
        lost_events: false,
        dropped: false,
        ended_unseen: false,
        start_ns,
        wall_start: format!(
            "2025-03-01T10:00:{:02}.{:06}000Z",
            id / 1000,
            (id % 1000) * 1000
        ),
        total_ns: ts - start_ns,
        hops,
    }
}

/// A 4-hop veth path whose slowest hop is `netif_receive_skb` (`slow` ns).
fn veth_packet(id: u64, slow: u64) -> Timeline {
    packet(
        id,
        1_000_000 + id * 10_000,
        &[
            ("veth_xmit", "veth0", 0),
            ("net:netif_rx", "veth1", 700),
            ("net:netif_receive_skb", "veth1", slow),
            ("tcp_v4_rcv", "veth1", 900),
        ],
    )
}

fn opts() -> Options {
    Options {
        max_packets: 1000,
        source: Some("live: veth1".into()),
        ..Options::default()
    }
}

fn render(app: &App, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| f.render_widget(app, f.area())).expect("draw");
    term.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.y..a.y + a.height)
        .map(|y| {
            (a.x..a.x + a.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

fn screen(buf: &Buffer) -> String {
    lines(buf).join("\n") + "\n"
}

/// The first line containing `needle`, with its row number.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, String)> {
    lines(buf)
        .into_iter()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .map(|(i, l)| (i as u16, l))
}

fn line_with(buf: &Buffer, needle: &str) -> String {
    find(buf, needle)
        .unwrap_or_else(|| panic!("no line contains {needle:?} on screen:\n{}", screen(buf)))
        .1
}

/// Lines of the waterfall pane (between its title and its bottom border).
fn waterfall_rows(buf: &Buffer) -> Vec<String> {
    let ls = lines(buf);
    let start = ls
        .iter()
        .position(|l| l.contains("Waterfall"))
        .unwrap_or_else(|| panic!("no waterfall on screen:\n{}", screen(buf)));
    ls[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with('└'))
        .cloned()
        .collect()
}

fn snapshot(name: &str, buf: &Buffer) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    let got = screen(buf);
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    match std::fs::read_to_string(&path) {
        Ok(want) if !update => {
            assert!(
                want == got,
                "snapshot {name} differs ({}); if the change is intended, rerun with UPDATE_SNAPSHOTS=1\n--- want\n{want}--- got\n{got}",
                path.display()
            )
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!(
                "snapshot {} is missing; create it with UPDATE_SNAPSHOTS=1 and commit it",
                path.display()
            )
        }
        _ => std::fs::write(&path, got).expect("write snapshot"),
    }
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        app.on_key(key(c));
    }
}

#[test]
fn empty_live_trace_says_it_is_waiting() {
    let mut app = App::new(&opts());
    app.refresh();
    let buf = render(&app, 100, 30);
    line_with(&buf, "waiting for packets (live: veth1)");
    line_with(&buf, "no packet selected");
    line_with(&buf, "no hop pairs yet");
    assert!(line_with(&buf, "LIVE").contains("live: veth1"));
    snapshot("empty_live", &buf);
    // Keys on an empty list must not panic or select anything.
    for k in ['j', 'k', 'G', 'g', 's', 'e', 'p', 'p', ' '] {
        assert_eq!(app.on_key(key(k)), Action::None);
    }
    app.on_key(code(KeyCode::Enter));
    let buf = render(&app, 100, 30);
    line_with(&buf, "no packet selected");
    assert!(app.selected_timeline().is_none());
}

#[test]
fn empty_replay_says_the_trace_is_empty() {
    let app = App::replay(Vec::new(), None, &Options::default());
    let buf = render(&app, 80, 20);
    line_with(&buf, "no packets in this trace");
    line_with(&buf, "REPLAY");
}

#[test]
fn one_packet_shows_its_waterfall_with_the_slowest_hop_highlighted() {
    let mut app = App::new(&opts());
    app.push(veth_packet(1, 25_000));
    app.refresh();
    let buf = render(&app, 110, 30);
    snapshot("one_packet", &buf);

    // The list row: time of day, total latency, hop count, summary.
    let row = line_with(&buf, "echo-request id 7 seq 1");
    assert!(row.contains("10:00:00.001000"), "{row}");
    assert!(row.contains("26.6µs"), "{row}");
    assert!(row.contains("  4 "), "{row}");
    assert!(row.starts_with("│>"), "selected row is marked: {row}");

    // One waterfall row per hop with probe, dev@netns, cpu and delta.
    let wf = waterfall_rows(&buf);
    let hop = |p: &str| {
        wf.iter()
            .find(|l| l.contains(p))
            .unwrap_or_else(|| panic!("no waterfall row for {p}:\n{}", wf.join("\n")))
            .clone()
    };
    assert!(hop("veth_xmit").contains("veth0@4026531840"));
    assert!(hop("veth_xmit").contains("start"));
    assert!(hop("net:netif_rx").contains("veth1@4026531841"));
    assert!(hop("net:netif_rx").contains("+700ns"));
    assert!(hop("net:netif_receive_skb").contains("+25.0µs"));
    assert!(hop("tcp_v4_rcv").contains("cpu1"));

    // The slowest hop, and only it, is marked and drawn in light red.
    let slow = hop("net:netif_receive_skb");
    assert!(slow.starts_with("│* "), "{slow}");
    for p in ["veth_xmit", "net:netif_rx", "tcp_v4_rcv"] {
        assert!(hop(p).starts_with("│  "), "{}", hop(p));
    }
    let (y, _) = find(&buf, "* net:netif_receive_skb").expect("slow row");
    assert_eq!(buf[(3, y)].fg, Color::LightRed);
    let (y_fast, _) = find(&buf, "  net:netif_rx").expect("fast row");
    assert_ne!(buf[(3, y_fast)].fg, Color::LightRed);

    // The slowest hop's bar is the widest, and bars go left to right.
    let bar_extent = |l: &str| {
        let cs: Vec<char> = l.chars().collect();
        let first = cs.iter().position(|&c| c == '█');
        let last = cs.iter().rposition(|&c| c == '█');
        (first, last)
    };
    let (s1, e1) = bar_extent(&hop("net:netif_rx"));
    let (s2, e2) = bar_extent(&hop("net:netif_receive_skb"));
    let (s3, _) = bar_extent(&hop("tcp_v4_rcv"));
    let (s2, e2, e1) = (s2.expect("bar"), e2.expect("bar"), e1.expect("bar"));
    assert!(e2 - s2 > e1 - s1.expect("bar"));
    assert!(s2 >= e1 && s3.expect("bar") >= e2);

    // Pair statistics for the three hop pairs.
    let pair = line_with(&buf, "net:netif_rx → net:netif_receive_skb");
    assert!(pair.contains("25.0µs"), "{pair}");
}

#[test]
fn one_hop_packet_renders_without_a_slowest_hop() {
    let mut app = App::new(&opts());
    app.push(packet(9, 5_000, &[("net:netif_receive_skb", "", 0)]));
    app.refresh();
    let buf = render(&app, 100, 24);
    let wf = waterfall_rows(&buf);
    let row = wf
        .iter()
        .find(|l| l.contains("net:netif_receive_skb"))
        .expect("the hop");
    assert!(row.contains("-@4026531840"), "no device shows as -: {row}");
    assert!(
        row.contains('▏'),
        "a zero-length bar marks the start: {row}"
    );
    assert!(!wf.iter().any(|l| l.starts_with("│* ")));
    line_with(&buf, "no hop pairs yet");
    app.on_key(code(KeyCode::Enter));
    let buf = render(&app, 100, 24);
    line_with(&buf, "fingerprint 0x0000000000000009");
}

#[test]
fn many_packets_keep_the_newest_and_count_all_in_the_statistics() {
    let mut app = App::new(&Options {
        max_packets: 100,
        ..opts()
    });
    // 500 packets; every 50th has a 90 µs softirq delay, the others 1-2 µs.
    for id in 1..=500u64 {
        let slow = if id % 50 == 0 {
            90_000
        } else {
            1_000 + id % 1000
        };
        app.push(veth_packet(id, slow));
    }
    app.refresh();
    let buf = render(&app, 120, 40);
    snapshot("many_packets", &buf);
    line_with(&buf, "Packets 100/100 │ seen 500");
    line_with(&buf, "over all 500 packets (400 no longer listed)");
    // Evicted packets still count in the percentiles: 500 per pair, and the
    // 90 µs ones (1 in 50 = 2%) show at p99.
    let pair = line_with(&buf, "net:netif_rx → net:netif_receive_skb");
    assert!(pair.contains(" 500 "), "{pair}");
    assert!(pair.contains("90.0µs"), "p99/max: {pair}");
    // Live: the newest packet is selected and its waterfall shown.
    assert_eq!(app.selected_timeline().map(|t| t.id), Some(500));
    line_with(&buf, "Waterfall #500");

    // Sorted by time, oldest kept (401) on top.
    app.on_key(key('g'));
    let buf = render(&app, 120, 40);
    let first = lines(&buf)[2].clone();
    assert!(first.contains("seq 401"), "{first}");

    // Sorted by latency, the slow ones first: 450 and 500 are the kept 90 µs ones.
    app.on_key(key('s'));
    app.on_key(key('g'));
    let buf = render(&app, 120, 40);
    line_with(&buf, "sort: latency");
    let ls = lines(&buf);
    // 90 µs + 700 ns + 900 ns each; the next one is a few µs.
    for row in &ls[2..4] {
        assert!(row.contains("seq 450") || row.contains("seq 500"), "{row}");
        assert!(row.contains("91.6µs"), "{row}");
    }
    assert!(!ls[4].contains("91.6µs"), "{}", ls[4]);

    // Filter by text: only seq 42x remain.
    app.on_key(key('/'));
    typed(&mut app, "seq 42");
    app.on_key(code(KeyCode::Enter));
    let buf = render(&app, 120, 40);
    line_with(&buf, "Packets 10/100");
    line_with(&buf, "filter: \"seq 42\"");
    let listed: Vec<String> = lines(&buf)
        .into_iter()
        .filter(|l| l.starts_with('│') && l.contains("echo-request"))
        .collect();
    assert_eq!(listed.len(), 10, "{listed:?}");
    assert!(listed.iter().all(|l| l.contains("seq 42")));
    // Esc clears the filter.
    app.on_key(code(KeyCode::Esc));
    let buf = render(&app, 120, 40);
    line_with(&buf, "Packets 100/100");
}

#[test]
fn moving_the_selection_changes_the_waterfall() {
    let mut app = App::replay(
        vec![
            veth_packet(1, 3_000),
            packet(
                2,
                9_000_000,
                &[("ip_rcv", "eth0", 0), ("ip_local_deliver", "eth0", 400)],
            ),
        ],
        None,
        &Options::default(),
    );
    let buf = render(&app, 100, 30);
    line_with(&buf, "Waterfall #1");
    assert!(waterfall_rows(&buf).iter().any(|l| l.contains("veth_xmit")));
    app.on_key(key('j'));
    let buf = render(&app, 100, 30);
    line_with(&buf, "Waterfall #2");
    let wf = waterfall_rows(&buf);
    assert!(wf.iter().any(|l| l.contains("ip_local_deliver")));
    assert!(!wf.iter().any(|l| l.contains("veth_xmit")));
    // Down past the end stays on the last packet.
    app.on_key(code(KeyCode::Down));
    assert_eq!(app.selected_timeline().map(|t| t.id), Some(2));
    app.on_key(code(KeyCode::Up));
    assert_eq!(app.selected_timeline().map(|t| t.id), Some(1));
}

#[test]
fn a_dropped_packet_is_flagged_with_its_reason() {
    let mut t = veth_packet(3, 2_000);
    t.dropped = true;
    t.hops.truncate(3);
    t.total_ns = t.hops[2].ts_ns - t.start_ns;
    t.hops[2].drop_reason = Some("NETFILTER_DROP".into());
    let mut lost = veth_packet(4, 1_000);
    lost.lost_events = true;
    lost.complete = false;
    let mut app = App::replay(vec![t, lost], None, &Options::default());
    let buf = render(&app, 110, 30);
    snapshot("dropped_packet", &buf);
    let row = line_with(&buf, "seq 3");
    assert!(row.contains(" D "), "D flag: {row}");
    let row = line_with(&buf, "seq 4");
    assert!(row.contains(" IL "), "incomplete and lost flags: {row}");
    let title = line_with(&buf, "Waterfall #3");
    assert!(title.contains("DROPPED NETFILTER_DROP"), "{title}");
    // Zoomed, the reason is spelled out under the hop that dropped it.
    app.on_key(code(KeyCode::Enter));
    let buf = render(&app, 110, 30);
    let (y_hop, _) = find(&buf, "net:netif_receive").expect("the dropping hop");
    let (y_why, _) = find(&buf, "✗ dropped here: NETFILTER_DROP").expect("the reason");
    assert_eq!(y_why, y_hop + 1);
    // The incomplete/lost packet says so in its waterfall title.
    app.on_key(key('j'));
    let buf = render(&app, 110, 30);
    let title = line_with(&buf, "Waterfall #4");
    assert!(
        title.contains("INCOMPLETE") && title.contains("EVENTS LOST"),
        "{title}"
    );
}

#[test]
fn narrow_and_tiny_terminals_still_show_the_list() {
    let mut app = App::new(&opts());
    for id in 1..=30 {
        app.push(veth_packet(id, 5_000 + id));
    }
    app.refresh();
    let buf = render(&app, 40, 14);
    snapshot("narrow", &buf);
    // The time column goes, total latency and summary stay.
    let row = line_with(&buf, "ICMP");
    assert!(row.contains("µs") && !row.contains("10:00"), "{row}");
    // Every size down to 1x1 renders without panicking, zoomed or not,
    // with help open or not.
    for zoom in [false, true] {
        for help in [false, true] {
            let mut a = App::new(&opts());
            a.push(veth_packet(1, 5_000));
            a.push(packet(2, 1, &[("x", "", 0)]));
            a.refresh();
            if zoom {
                a.on_key(code(KeyCode::Enter));
            }
            if help {
                a.on_key(key('?'));
            }
            for w in [1, 2, 5, 10, 20, 33, 60] {
                for h in [1, 2, 3, 5, 8, 11, 12, 20] {
                    render(&a, w, h);
                }
            }
        }
    }
    // Very short: only the list and the status line.
    let buf = render(&app, 60, 6);
    line_with(&buf, "ICMP 10.0.1.1 > 10.0.2.1");
    assert!(find(&buf, "Waterfall").is_none());
}

#[test]
fn resizing_redraws_for_the_new_size() {
    let mut app = App::new(&opts());
    app.push(veth_packet(1, 5_000));
    app.refresh();
    let mut term = Terminal::new(TestBackend::new(100, 30)).expect("test terminal");
    term.draw(|f| f.render_widget(&app, f.area()))
        .expect("draw");
    term.backend_mut().resize(60, 20);
    term.autoresize().expect("resize");
    term.draw(|f| f.render_widget(&app, f.area()))
        .expect("draw");
    let buf = term.backend().buffer().clone();
    assert_eq!(buf.area.width, 60);
    // The right border moved with the width.
    assert!(lines(&buf)[0].ends_with('┐'));
    assert_eq!(lines(&buf)[0].chars().count(), 60);
    line_with(&buf, "Waterfall #1");
}

#[test]
fn pause_holds_the_list_while_statistics_keep_counting() {
    let mut app = App::new(&opts());
    app.push(veth_packet(1, 1_000));
    app.refresh();
    app.on_key(key('p'));
    app.push(veth_packet(2, 1_000));
    app.push(veth_packet(3, 1_000));
    app.refresh();
    let buf = render(&app, 100, 30);
    line_with(&buf, "PAUSED +2");
    line_with(&buf, "Packets 1/1 │ seen 3");
    assert!(find(&buf, "seq 2").is_none());
    assert!(line_with(&buf, "veth_xmit → net:netif_rx").contains(" 3 "));
    app.on_key(key('p'));
    let buf = render(&app, 100, 30);
    line_with(&buf, "LIVE");
    line_with(&buf, "Packets 3/3");
    // Following the newest packet again.
    line_with(&buf, "Waterfall #3");
}

#[test]
fn a_long_pause_keeps_the_frozen_list_and_the_newest_waiting() {
    let mut app = App::new(&Options {
        max_packets: 10,
        ..opts()
    });
    for id in 1..=10 {
        app.push(veth_packet(id, 1_000));
    }
    app.refresh();
    app.on_key(key('p'));
    for id in 11..=40 {
        app.push(veth_packet(id, 1_000));
    }
    app.refresh();
    let buf = render(&app, 100, 30);
    // Still the ten packets that were there when p was pressed.
    line_with(&buf, "Packets 10/10 │ seen 40");
    line_with(&buf, "seq 10");
    line_with(&buf, "PAUSED +10");
    app.on_key(key('p'));
    let buf = render(&app, 100, 30);
    // On resume the newest ten replace them.
    line_with(&buf, "seq 40");
    assert!(find(&buf, "seq 10 ").is_none() && !lines(&buf).iter().any(|l| l.ends_with("seq 10")));
    line_with(&buf, "over all 40 packets (30 no longer listed)");
}

#[test]
fn status_line_shows_rate_losses_and_probes() {
    let mut app = App::new(&opts());
    app.set_status(Status {
        events_per_sec: 1234.4,
        lost_per_probe: vec![("veth_xmit".into(), 3), ("net:netif_rx".into(), 0)],
        probes: vec![
            ("veth_xmit".into(), "kprobe".into()),
            ("net:netif_rx".into(), "tp_btf".into()),
        ],
        source: "live: veth1".into(),
    });
    app.refresh();
    let buf = render(&app, 140, 20);
    let st = line_with(&buf, "LIVE");
    for want in [
        "live: veth1",
        "1234 ev/s",
        "lost: veth_xmit=3",
        "2 probes: veth_xmit(kprobe) net:netif_rx(tp_btf)",
    ] {
        assert!(st.contains(want), "{want:?} missing from {st}");
    }
    assert!(!st.contains("netif_rx=0"), "{st}");
    app.end_of_source();
    let buf = render(&app, 140, 20);
    line_with(&buf, "ENDED");

    // A replay takes probes and losses from the trace's summary.
    let summary = Summary {
        events: 40,
        lost_events: 2,
        probes: vec![ProbeCount {
            probe: "veth_xmit".into(),
            method: "tracepoint".into(),
            events: 40,
            lost: 2,
        }],
        ..Summary::default()
    };
    let app = App::replay(
        vec![veth_packet(1, 1)],
        Some(summary),
        &Options {
            source: Some("replay: t.jsonl".into()),
            ..Options::default()
        },
    );
    let st = line_with(&render(&app, 140, 20), "REPLAY");
    for want in [
        "replay: t.jsonl",
        "40 events, 2 lost",
        "lost: veth_xmit=2",
        "veth_xmit(tracepoint)",
    ] {
        assert!(st.contains(want), "{want:?} missing from {st}");
    }
}

#[test]
fn help_lists_the_keys() {
    let mut app = App::new(&opts());
    app.refresh();
    app.on_key(key('?'));
    let buf = render(&app, 100, 30);
    for k in ["j k", "Enter", "sort", "filter", "export", "quit"] {
        line_with(&buf, k);
    }
    // Any key closes it, q quits.
    assert_eq!(app.on_key(key('x')), Action::None);
    assert!(find(&render(&app, 100, 30), "Keys (any key closes)").is_none());
    app.on_key(key('?'));
    assert_eq!(app.on_key(key('q')), Action::Quit);
}

#[test]
fn quit_keys() {
    let mut app = App::new(&opts());
    assert_eq!(app.on_key(key('q')), Action::Quit);
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
    // In the filter prompt q is text, Ctrl-C still quits.
    app.on_key(key('/'));
    assert_eq!(app.on_key(key('q')), Action::None);
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn export_writes_marked_or_listed_packets_as_json_lines() {
    let dir = std::env::temp_dir().join(format!("tui-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tls: Vec<Timeline> = (1..=5).map(|i| veth_packet(i, 1_000 * i)).collect();
    let mut app = App::replay(tls.clone(), None, &Options::default());
    let read = |p: &std::path::Path| -> Vec<Timeline> {
        std::fs::read_to_string(p)
            .expect("export file")
            .lines()
            .map(
                |l| match serde_json::from_str::<Record>(l).expect("a record") {
                    Record::Timeline(t) => t,
                    Record::Summary(_) => panic!("no summary expected"),
                },
            )
            .collect()
    };

    // Nothing marked: the listed (filtered) packets.
    app.on_key(key('/'));
    typed(&mut app, "seq 4");
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.on_key(key('e')), Action::None);
    line_with(
        &render(&app, 120, 30),
        "export 1 listed packets as: j JSON Lines",
    );
    assert_eq!(
        app.on_key(key('j')),
        Action::Export(ExportFormat::JsonLines)
    );
    let (path, n) = tui::export(&app, ExportFormat::JsonLines, &dir).expect("export");
    assert_eq!(n, 1);
    assert_eq!(read(&path), vec![tls[3].clone()]);
    // The line is exactly the JSON Lines sink's record.
    let first = std::fs::read_to_string(&path).expect("export file");
    assert_eq!(
        first.lines().next(),
        Some(
            serde_json::to_string(&Record::Timeline(tls[3].clone()))
                .expect("json")
                .as_str()
        )
    );

    // Marked packets win over the list.
    app.on_key(code(KeyCode::Esc));
    app.on_key(key('g'));
    app.on_key(key(' '));
    app.on_key(key('j'));
    app.on_key(key('j'));
    app.on_key(key(' '));
    let buf = render(&app, 120, 30);
    assert!(
        line_with(&buf, "seq 1").starts_with("│ +") || line_with(&buf, "seq 1").starts_with("│>+")
    );
    let (path2, n) = tui::export(&app, ExportFormat::JsonLines, &dir).expect("export");
    assert_ne!(path, path2, "a second export never overwrites the first");
    assert_eq!(n, 2);
    assert_eq!(read(&path2), vec![tls[0].clone(), tls[2].clone()]);

    // pcapng: one interface per probe, one packet block per hop of each
    // exported packet (2 packets x 4 hops), in a file of its own.
    let (path3, n) = tui::export(&app, ExportFormat::Pcapng, &dir).expect("pcapng export");
    assert_eq!(n, 2);
    assert_eq!(path3.extension().and_then(|e| e.to_str()), Some("pcapng"));
    let mut r = pcap_file::pcapng::PcapNgReader::new(std::fs::File::open(&path3).expect("open"))
        .expect("a pcapng file");
    let (mut ifaces, mut packets) = (Vec::new(), 0);
    while let Some(block) = r.next_block() {
        match block.expect("a block") {
            pcap_file::pcapng::Block::InterfaceDescription(idb) => {
                for o in idb.options {
                    if let pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfName(n) = o {
                        ifaces.push(n.to_string());
                    }
                }
            }
            pcap_file::pcapng::Block::EnhancedPacket(_) => packets += 1,
            _ => {}
        }
    }
    assert_eq!(packets, 8);
    assert_eq!(
        ifaces,
        [
            "veth_xmit",
            "net:netif_rx",
            "net:netif_receive_skb",
            "tcp_v4_rcv"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_burst_is_bounded_by_max_packets() {
    let mut app = App::new(&Options {
        max_packets: 1000,
        ..opts()
    });
    let t = veth_packet(1, 2_000);
    for i in 0..50_000u64 {
        let mut p = t.clone();
        p.id = i;
        app.push(p);
    }
    app.refresh();
    assert_eq!(app.shown(), 1000);
    assert_eq!(app.selected_timeline().map(|t| t.id), Some(49_999));
    let buf = render(&app, 120, 40);
    line_with(&buf, "Packets 1000/1000 │ seen 50000");
    assert!(line_with(&buf, "veth_xmit → net:netif_rx").contains("50000"));
}

#[test]
fn selected_row_is_reversed() {
    let mut app = App::replay(
        vec![veth_packet(1, 1), veth_packet(2, 1)],
        None,
        &Options::default(),
    );
    app.on_key(key('j'));
    let buf = render(&app, 100, 30);
    let (y2, _) = find(&buf, "seq 2").expect("row 2");
    let (y1, _) = find(&buf, "seq 1").expect("row 1");
    assert!(buf[(5, y2)].modifier.contains(Modifier::REVERSED));
    assert!(!buf[(5, y1)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn long_packets_keep_the_slowest_hop_in_view_and_scroll_when_zoomed() {
    // 30 hops, the 25th slow: more than the waterfall pane's rows.
    let hops: Vec<(String, u64)> = (0..30)
        .map(|i| (format!("hop_{i:02}"), if i == 25 { 50_000 } else { 300 }))
        .collect();
    let spec: Vec<(&str, &str, u64)> = hops
        .iter()
        .map(|(p, d)| (p.as_str(), "veth0", *d))
        .collect();
    let mut app = App::replay(vec![packet(1, 0, &spec)], None, &Options::default());
    let buf = render(&app, 100, 30);
    let wf = waterfall_rows(&buf);
    assert!(
        wf.iter().any(|l| l.starts_with("│* hop_25")),
        "{}",
        wf.join("\n")
    );

    app.on_key(code(KeyCode::Enter));
    let buf = render(&app, 100, 20);
    line_with(&buf, "hop_00");
    assert!(find(&buf, "hop_20").is_none());
    for _ in 0..100 {
        app.on_key(key('J'));
    }
    // Scrolled to the end, the last hop shows, and K comes back one at a time.
    let buf = render(&app, 100, 20);
    line_with(&buf, "hop_29");
    assert!(find(&buf, "hop_00").is_none());
    for _ in 0..29 {
        app.on_key(key('K'));
    }
    line_with(&render(&app, 100, 20), "hop_00");
}
