//! `gemfilter niah` (placeholder; being written).
#[derive(Debug, Clone, clap::Args)]
pub struct NiahArgs {}
/// # Errors
/// Not yet implemented.
pub fn run(_a: &NiahArgs) -> anyhow::Result<()> {
    anyhow::bail!("niah is not implemented yet")
}
