//! Where timelines go: text waterfall, JSON Lines, pcapng. A sink sees only
//! [`Timeline`]s and the final [`Summary`], never events or attach details.

use std::io;

use crate::model::{Summary, Timeline};

pub mod json;
mod json_line;
pub mod pcap;
pub mod text;

pub use json::JsonSink;
pub use pcap::PcapSink;
pub use text::TextSink;

/// A consumer of finished timelines.
pub trait Sink {
    /// One packet. Buffered: a write per packet cost more than formatting
    /// it at high packet rates.
    fn timeline(&mut self, t: &Timeline) -> io::Result<()>;
    /// Writes out what is buffered (the tracer calls it on every 100 ms
    /// tick, so output stays live and an interrupted trace loses at most
    /// that much).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The end of the trace: writes the summary (where the format has one)
    /// and flushes.
    fn finish(&mut self, s: &Summary) -> io::Result<()>;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn timeline(&mut self, t: &Timeline) -> io::Result<()> {
        (**self).timeline(t)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        (**self).finish(s)
    }
}

/// Fans out to several sinks (`--json` and `--pcap` together with text).
/// Every sink gets every call; the first error is returned.
#[derive(Default)]
pub struct Tee {
    pub sinks: Vec<Box<dyn Sink>>,
}

impl Tee {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, s: impl Sink + 'static) -> &mut Self {
        self.sinks.push(Box::new(s));
        self
    }
}

impl Tee {
    /// Calls `f` on every sink, even after one fails; the first error wins.
    fn each(&mut self, mut f: impl FnMut(&mut dyn Sink) -> io::Result<()>) -> io::Result<()> {
        let mut first = Ok(());
        for s in &mut self.sinks {
            let r = f(s.as_mut());
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Sink for Tee {
    fn timeline(&mut self, t: &Timeline) -> io::Result<()> {
        self.each(|s| s.timeline(t))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.each(|s| s.flush())
    }
    fn finish(&mut self, sum: &Summary) -> io::Result<()> {
        self.each(|s| s.finish(sum))
    }
}
