//! JSON Lines: one `{"type":"timeline",...}` object per packet, then one
//! `{"type":"summary",...}`. The schema is [`crate::model::Record`].

use std::io::{self, Write};

use serde::Serialize;

use super::Sink;
use crate::model::{Summary, Timeline};

/// Same shape as [`crate::model::Record`], borrowing, so writing a
/// timeline does not clone it.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RecordRef<'a> {
    Timeline(&'a Timeline),
    Summary(&'a Summary),
}

/// Writes JSON Lines to `W`; flushes after each line so an interrupted
/// trace leaves only whole lines.
pub struct JsonSink<W: Write> {
    w: W,
    data: bool,
}

impl<W: Write> JsonSink<W> {
    /// Hop bytes (`data`, hex) are included, so a saved file can be
    /// re-rendered to any sink later.
    pub fn new(w: W) -> Self {
        Self { w, data: true }
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
        if self.data {
            return self.line(RecordRef::Timeline(t));
        }
        let mut slim = t.clone();
        for h in &mut slim.hops {
            h.data.clear();
            h.l2 = false;
        }
        self.line(RecordRef::Timeline(&slim))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        self.line(RecordRef::Summary(s))?;
        self.w.flush()
    }
}
