//! Reading a saved JSON Lines trace back (`skbtrace replay FILE`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::model::{Record, Summary, Timeline};
use crate::stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: read failed: {source}")]
    Read { line: usize, source: std::io::Error },
    #[error(
        "line {line}: not a skbtrace JSON Lines record ({source}); expected objects written by `skbtrace follow --json`"
    )]
    Parse {
        line: usize,
        source: serde_json::Error,
    },
}

/// A saved trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// In file order.
    pub timelines: Vec<Timeline>,
    /// The file's summary line, or one rebuilt from the timelines when the
    /// file has none (an interrupted trace): then `summary_recomputed`.
    pub summary: Summary,
    pub summary_recomputed: bool,
}

/// Reads a JSON Lines trace. Blank lines are skipped; any other line that
/// is not a record is an error naming its (1-based) line number. When
/// several summary lines exist (concatenated files) the last one wins.
pub fn read(r: impl BufRead) -> Result<Replay, ReplayError> {
    let mut timelines = Vec::new();
    let mut summary = None;
    for (i, line) in r.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|source| ReplayError::Read { line: n, source })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line)
            .map_err(|source| ReplayError::Parse { line: n, source })?
        {
            Record::Timeline(t) => timelines.push(t),
            Record::Summary(s) => summary = Some(s),
        }
    }
    let summary_recomputed = summary.is_none();
    let summary = summary.unwrap_or_else(|| {
        let mut st = Stats::new();
        for t in &timelines {
            st.record(t);
        }
        st.summary_from_hops()
    });
    Ok(Replay {
        timelines,
        summary,
        summary_recomputed,
    })
}

/// [`read`] from a file; `-` reads standard input.
pub fn read_path(path: impl AsRef<Path>) -> Result<Replay, ReplayError> {
    let path = path.as_ref();
    if path.as_os_str() == "-" {
        return read(std::io::stdin().lock());
    }
    let f = File::open(path).map_err(|source| ReplayError::Open {
        path: path.display().to_string(),
        source,
    })?;
    read(BufReader::new(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Hop;
    use crate::sink::{JsonSink, Sink};

    fn saved(with_summary: bool) -> (Vec<u8>, Vec<Timeline>, Summary) {
        let (timelines, summary) = crate::synth::demo_timelines();
        let mut sink = JsonSink::new(Vec::new());
        for t in &timelines {
            sink.timeline(t).expect("write to Vec");
        }
        if with_summary {
            sink.finish(&summary).expect("write to Vec");
        }
        (sink.into_inner(), timelines, summary)
    }

    #[test]
    fn json_lines_round_trip_exactly() {
        let (bytes, timelines, summary) = saved(true);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        // One object per line, typed, the summary last.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[..3]
                .iter()
                .all(|l| l.starts_with(r#"{"type":"timeline","id":"#))
        );
        assert!(lines[3].starts_with(r#"{"type":"summary","#));
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
        assert_eq!(v["fingerprint"].as_str().map(str::len), Some(18));
        assert_eq!(v["wall_start"], "2024-02-29T12:00:00.000000000Z");
        assert_eq!(v["hops"][1]["probe"], "net:netif_rx");
        assert_eq!(v["hops"][1]["method"], "tracepoint");
        assert_eq!(v["hops"][1]["delta_ns"], 12300);
        let r = read(&bytes[..]).expect("reads back");
        assert_eq!(
            r.timelines, timelines,
            "bytes, drop reasons and all survive"
        );
        assert_eq!(r.summary, summary);
        assert!(!r.summary_recomputed);
    }

    #[test]
    fn repeated_hop_bytes_are_written_once_and_restored_on_reading() {
        let (mut timelines, _) = crate::synth::demo_timelines();
        let t = &mut timelines[0];
        let base = t.hops[0].clone();
        let l3 = base.data[14..].to_vec();
        let hop = |data: &[u8], l2: bool| Hop {
            data: data.to_vec(),
            l2,
            batch: Some(3),
            by_time: true,
            drop_reason: Some("NO_SOCKET".into()),
            ..base.clone()
        };
        t.hops = vec![
            hop(&base.data, true),
            hop(&base.data, true), // same bytes: written once
            hop(&l3, false),       // from L3 now: written
            hop(&[], false),       // nothing captured
            hop(&l3, false),       // after an empty hop: written
            hop(&l3, false),       // same again
        ];
        let mut sink = JsonSink::new(Vec::new());
        sink.timeline(&timelines[0]).expect("write to Vec");
        let bytes = sink.into_inner();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        let written: Vec<(bool, bool)> = v["hops"]
            .as_array()
            .expect("hops")
            .iter()
            .map(|h| (h.get("data").is_some(), h["same_data"] == true))
            .collect();
        assert_eq!(
            written,
            [
                (true, false),
                (false, true),
                (true, false),
                (false, false),
                (true, false),
                (false, true)
            ]
        );
        let r = read(&bytes[..]).expect("reads back");
        assert_eq!(r.timelines[0], timelines[0], "every hop's bytes come back");
    }

    #[test]
    fn without_data_drops_only_the_bytes() {
        let (timelines, _) = crate::synth::demo_timelines();
        let mut sink = JsonSink::new(Vec::new()).without_data();
        sink.timeline(&timelines[0]).expect("write to Vec");
        let bytes = sink.into_inner();
        assert!(!String::from_utf8_lossy(&bytes).contains("\"data\""));
        let r = read(&bytes[..]).expect("reads back");
        assert_eq!(r.timelines[0].hops.len(), timelines[0].hops.len());
        assert!(r.timelines[0].hops.iter().all(|h| h.data.is_empty()));
        assert_eq!(r.timelines[0].summary, timelines[0].summary);
    }

    #[test]
    fn interrupted_trace_gets_a_summary_rebuilt_from_its_timelines() {
        let (bytes, _, summary) = saved(false);
        let r = read(&bytes[..]).expect("reads back");
        assert!(r.summary_recomputed);
        assert_eq!(
            (r.summary.packets, r.summary.complete, r.summary.dropped),
            (3, 2, 1)
        );
        // Per-probe counts are the hops seen; losses are unknown.
        assert_eq!(r.summary.events, 8);
        assert_eq!(r.summary.lost_events, 0);
        assert_eq!(r.summary.hop_pairs, summary.hop_pairs);
    }

    #[test]
    fn bad_lines_are_reported_by_number() {
        let (bytes, _, _) = saved(true);
        let mut text = String::from_utf8(bytes).expect("utf-8");
        text.insert(0, '\n');
        text.push_str("{\"type\":\"timeline\",\"id\":\n");
        let e = read(text.as_bytes()).expect_err("truncated last line");
        assert!(matches!(e, ReplayError::Parse { line: 6, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("line 6: not a skbtrace JSON Lines record"),
            "{e}"
        );
        let e = read(&b"{\"type\":\"summary\"}\nhello\n"[..]).expect_err("garbage");
        assert!(e.to_string().starts_with("line 1: "), "{e}");
        let e = read_path("/nonexistent/trace.jsonl").expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/trace.jsonl"), "{e}");
    }
}
