//! `e`: writing the marked (else the listed) packets to a new file in the
//! export directory. Called from the event loop, never while drawing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use timeline::sink::{JsonSink, PcapSink, Sink};

use crate::app::{App, ExportFormat};

/// Writes the packets `e` would export through the same sinks `skbtrace
/// follow` uses, so `skbtrace replay` reads a JSON Lines export back and
/// Wireshark opens a pcapng one. Returns the file and how many packets went
/// in. The name is `skbtrace-export-<unix seconds>[-N].jsonl|pcapng`, never
/// overwriting an existing file.
pub fn export(app: &App, fmt: ExportFormat, dir: &Path) -> anyhow::Result<(PathBuf, usize)> {
    let ext = match fmt {
        ExportFormat::JsonLines => "jsonl",
        ExportFormat::Pcapng => "pcapng",
    };
    let (file, path) = create_unique(dir, ext)?;
    let w = BufWriter::new(file);
    let n = match fmt {
        ExportFormat::JsonLines => write_all(app, JsonSink::new(w)),
        // 0: keep every captured byte; the trace already chose its snaplen.
        ExportFormat::Pcapng => PcapSink::new(w, 0).and_then(|s| write_all(app, s)),
    }
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, n))
}

/// Writes the export set to `sink`. No summary line: it would describe the
/// whole trace, not the exported packets.
fn write_all(app: &App, mut sink: impl Sink) -> io::Result<usize> {
    let mut n = 0;
    for t in app.export_set() {
        sink.timeline(t)?;
        n += 1;
    }
    sink.flush()?;
    Ok(n)
}

fn create_unique(dir: &Path, ext: &str) -> anyhow::Result<(File, PathBuf)> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for i in 0..1000 {
        let name = if i == 0 {
            format!("skbtrace-export-{secs}.{ext}")
        } else {
            format!("skbtrace-export-{secs}-{i}.{ext}")
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    bail!("too many export files in {}", dir.display())
}
