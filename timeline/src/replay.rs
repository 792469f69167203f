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
