//! `gemfilter bench` (placeholder; being written).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {}
/// # Errors
/// Not yet implemented.
pub fn run(_a: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
