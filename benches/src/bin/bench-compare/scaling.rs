//! Scaling curves and peak memory.

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(crate) struct ScalingArgs {}

#[derive(clap::Args, Debug)]
pub(crate) struct RssArgs {}

pub(crate) async fn run(_args: ScalingArgs) -> Result<()> {
    Ok(())
}

pub(crate) fn rss(_args: &RssArgs) -> Result<()> {
    Ok(())
}
