//! `e`: writing the marked (else the listed) packets to a new file in the
//! export directory. Called from the event loop, never while drawing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use timeline::model::Record;

use crate::app::{App, ExportFormat};

/// Whether `c` (pcapng) export is built in. The timeline crate has no
/// public pcapng writer yet; until it does, only JSON Lines is offered.
pub fn pcapng_available() -> bool {
    false
}

/// Writes the packets `e` would export; returns the file and how many
/// packets went in. The name is `skbtrace-export-<unix seconds>[-N].jsonl`,
/// never overwriting an existing file.
pub fn export(app: &App, fmt: ExportFormat, dir: &Path) -> anyhow::Result<(PathBuf, usize)> {
    if fmt == ExportFormat::Pcapng && !pcapng_available() {
        bail!("pcapng export is not available in this build yet; press e then j for JSON Lines");
    }
    let (mut file, path) = create_unique(dir, "jsonl")?;
    let mut w = BufWriter::new(&mut file);
    let mut n = 0;
    for t in app.export_set() {
        // Exactly the schema the JSON Lines sink writes, so `skbtrace replay`
        // reads the export back.
        let line = serde_json::to_string(&Record::Timeline(t.clone()))
            .context("cannot encode a timeline")?;
        w.write_all(line.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
        n += 1;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, n))
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
