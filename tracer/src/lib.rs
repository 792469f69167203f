//! skbtrace: follow packets through the Linux kernel. The library half of
//! the `skbtrace` binary: capabilities, the probe catalog, BTF offsets,
//! attach, and the event source. Data flows one way: probe -> ring buffer
//! -> decode -> correlate (timeline crate) -> sinks.

pub mod btf;
pub mod caps;
pub mod catalog;
pub mod follow;
pub mod kallsyms;
pub mod netdev;
pub mod reorder;
pub mod select;
pub mod session;
pub mod source;
pub mod uprobes;

/// A single-threaded tokio runtime: one ring buffer, one consumer.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")
}
