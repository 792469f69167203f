//! Prints the demo timelines as `skbtrace follow` would:
//! `cargo run -p timeline --example demo [-- --json]`.
use std::collections::HashMap;

use timeline::Sink;

fn main() -> std::io::Result<()> {
    let (timelines, summary) = timeline::synth::demo_timelines();
    let out = std::io::stdout().lock();
    let mut sink: Box<dyn Sink> = if std::env::args().any(|a| a == "--json") {
        Box::new(timeline::JsonSink::new(out).without_data())
    } else {
        let names = HashMap::from([(4026532301, "ns2".to_string())]);
        Box::new(timeline::TextSink::new(out).with_netns_names(names))
    };
    for t in &timelines {
        sink.timeline(t)?;
    }
    sink.finish(&summary)
}
