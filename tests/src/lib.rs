//! Test topologies.
