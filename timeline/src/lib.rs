//! Per-packet timelines: decode raw hop events from the kernel, correlate
//! them into packets, and write them out. Pure logic: no BPF, no root.

pub mod decode;
pub mod model;
