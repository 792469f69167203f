//! JSON Lines: one `{"type":"timeline",...}` object per packet, then one
//! `{"type":"summary",...}`. The schema is [`crate::model::Record`].

use std::io::{self, Write};

use serde::Serialize;

use super::Sink;
use crate::model::{Summary, Timeline};

/// The summary record as [`crate::model::Record`] writes it, borrowing.
/// Timeline records, one per packet, are written by `json_line`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RecordRef<'a> {
    Summary(&'a Summary),
}

/// Writes JSON Lines to `W`; flushes after each line so an interrupted
/// trace leaves only whole lines.
pub struct JsonSink<W: Write> {
    w: W,
    data: bool,
    /// One line at a time (see `json_line`), kept for its capacity.
    line: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    /// Hop bytes (`data`, hex) are included, so a saved file can be
    /// re-rendered to any sink later.
    pub fn new(w: W) -> Self {
        Self {
            w,
            data: true,
            line: Vec::with_capacity(4096),
        }
    }

    /// Leaves the hop bytes (`data`, `l2`) out: smaller lines.
    pub fn without_data(mut self) -> Self {
        self.data = false;
        self
    }

    pub fn into_inner(self) -> W {
        self.w
    }

    fn line(&mut self, r: RecordRef<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.w, &r).map_err(io::Error::other)?;
        self.w.write_all(b"\n")
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn timeline(&mut self, t: &Timeline) -> io::Result<()> {
        self.line.clear();
        super::json_line::write_timeline(&mut self.line, t, self.data);
        self.line.push(b'\n');
        self.w.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        self.line(RecordRef::Summary(s))?;
        self.w.flush()
    }
}
