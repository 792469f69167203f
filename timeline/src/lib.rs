//! Per-packet timelines: decode raw hop events from the kernel, correlate
//! them into packets, and write them out. Pure logic: no BPF, no root.
//!
//! Data flows one way:
//! ring-buffer bytes -> [`decode::decode`] -> [`Correlator::push`] ->
//! [`Correlator::poll`] -> [`Timeline`] -> [`sink::Sink`]s ->
//! [`Correlator::summary`] -> [`sink::Sink::finish`].
//! A saved JSON Lines file comes back through [`replay::read_path`].

pub mod correlate;
pub mod decode;
pub mod fmt;
pub mod model;
pub mod names;
pub mod replay;
pub mod sink;
pub mod stats;
pub mod summarize;
pub mod synth;

pub use correlate::{Correlator, CorrelatorConfig};
pub use model::{Hop, HopPairStats, ProbeCount, Record, Summary, Timeline};
pub use names::ProbeNames;
pub use sink::{JsonSink, PcapSink, Sink, TextSink};
pub use stats::Stats;
