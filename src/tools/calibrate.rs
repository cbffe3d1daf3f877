//! `gemfilter calibrate` (placeholder; being written).
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {}
/// # Errors
/// Not yet implemented.
pub fn run(_a: &CalibrateArgs) -> anyhow::Result<()> {
    anyhow::bail!("calibrate is not implemented yet")
}
