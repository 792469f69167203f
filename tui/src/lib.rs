//! The TUI waterfall. Filled in by its own issue.
