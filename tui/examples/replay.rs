//! Shows a saved JSON Lines trace in the TUI, the way `skbtrace replay FILE
//! --tui` does, without building the BPF side:
//!
//!     cargo run -p tui --example replay -- trace.jsonl
//!     cargo run -p tui --example replay -- --demo 200 > demo.jsonl
//!
//! `--demo N` writes N made-up packets as JSON Lines instead (for trying the
//! TUI out and for the README capture).

use std::io::Write;

use anyhow::{Context, bail};
use timeline::model::Record;

#[path = "common/demo.rs"]
mod demo;
use demo::demo;

fn main() -> anyhow::Result<()> {
    // Also takes `replay FILE --tui`, the real binary's words, so the tmux
    // test can run against this example too.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "replay" && a != "--tui")
        .collect();
    match args.as_slice() {
        [flag, n] if flag == "--demo" => {
            let n: u64 = n.parse().context("--demo takes a packet count")?;
            let mut out = std::io::stdout().lock();
            for i in 0..n {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&Record::Timeline(demo(i)))?
                )?;
            }
            Ok(())
        }
        [file] => {
            let replay = timeline::replay::read_path(file)?;
            tui::run_replay(
                replay.timelines,
                Some(replay.summary),
                tui::Options {
                    source: Some(format!("replay: {file}")),
                    ..tui::Options::default()
                },
            )
        }
        _ => bail!("usage: replay FILE.jsonl | replay --demo N > FILE.jsonl"),
    }
}
