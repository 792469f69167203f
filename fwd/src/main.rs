//! skbtrace-fwd: filled in by its own issue.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("skbtrace-fwd is not built yet")
}
