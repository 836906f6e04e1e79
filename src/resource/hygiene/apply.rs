//! Removes what the op lists, in its order, each looked at again just before (still there, still
//! not on the never-removed list, no container uses it), and stops once the data root's
//! filesystem has what `keep_free` asks. An item removed by someone else in between is passed
//! over: a run killed midway leaves a daemon with less, never a half-removed object, and the
//! next run plans again from what is there.

use anyhow::{Context as _, Result};

use crate::{
    docker::usage::DiskDaemon,
    resource::{
        Context,
        hygiene::{
            Hygiene, HygieneOp, PruneItem, PruneOp,
            diff::{keeps_image, keeps_volume},
            observe, pruned,
        },
    },
};

pub(super) fn apply(hygiene: &Hygiene, context: &Context, op: &HygieneOp) -> Result<()> {
    let cli = observe::asked(context, &hygiene.daemon);
    match op {
        HygieneOp::Prune(op) => prune(hygiene, context, &cli, op),
        HygieneOp::Prepull(images) => {
            for image in images {
                cli.pull(image)
                    .with_context(|| format!("failed to prepull `{image}`"))?;
            }
            Ok(())
        }
    }
}

fn prune(hygiene: &Hygiene, context: &Context, cli: &DiskDaemon, op: &PruneOp) -> Result<()> {
    let mut removed_space = false;
    for item in &op.items {
        // Once keep_free holds, what is left on the list stays (the build cache first on the
        // list is pruned whatever, when build_cache_max is what was crossed).
        if removed_space && holds(context, op)? {
            break;
        }
        let removed = match item {
            PruneItem::Image { id, .. } => remove_image(hygiene, cli, id)?,
            PruneItem::Volume { name, .. } => remove_volume(cli, name)?,
            PruneItem::BuildCache { keep, .. } => {
                cli.prune_build_cache(*keep)
                    .context("failed to prune the build cache")?;
                true
            }
        };
        if removed
            && let Err(error) = pruned::add(
                context.host,
                hygiene.daemon_name(),
                item.what(),
                item.bytes(),
            )
        {
            tracing::warn!("failed to count what was pruned: {error:#}");
        }
        removed_space = true;
    }
    Ok(())
}

fn holds(context: &Context, op: &PruneOp) -> Result<bool> {
    let space = context.host.daemon_filesystem(&op.measured_at)?;
    Ok(space.available >= op.keep_available)
}

/// Removes the image unless it is gone or now on the never-removed list; true when removed.
fn remove_image(hygiene: &Hygiene, cli: &DiskDaemon, id: &str) -> Result<bool> {
    let Some(image) = cli.image(id)? else {
        return Ok(false);
    };
    if keeps_image(&hygiene.facts, &image) || !cli.users(&format!("ancestor={id}"))?.is_empty() {
        return Ok(false);
    }
    // By ID, forced: an image tagged twice is removed with its tags; no container uses it (just
    // asked), and Docker refuses to remove the image of a running container even when forced.
    cli.remove_image(id)
        .with_context(|| format!("failed to remove image `{}`", short(id)))?;
    Ok(true)
}

/// Removes the volume unless it is gone, used, or no longer the runner's; true when removed.
fn remove_volume(cli: &DiskDaemon, name: &str) -> Result<bool> {
    let Some(volume) = cli.volume(name)? else {
        return Ok(false);
    };
    if keeps_volume(&volume) || !cli.users(&format!("volume={name}"))?.is_empty() {
        return Ok(false);
    }
    cli.remove_volume(name)
        .with_context(|| format!("failed to remove volume `{name}`"))?;
    Ok(true)
}

/// `sha256:0123456789ab`: an ID as an error names it.
fn short(id: &str) -> &str {
    &id[..id.len().min(19)]
}
