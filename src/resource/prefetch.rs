//! What every kind of Docker object asks the daemon, asked once before the loop: above the
//! kinds, because it knows them all (the shared base, `docker_object`, knows none).

use anyhow::Result;

use crate::{
    docker::{
        self as client, DaemonStatus, ObjectNames,
        labels::Instance,
        listing::{self, Listing},
        wire::{ContainerInfo, ImageInfo, NetworkInfo, VolumeInfo},
    },
    resource::{Context, container},
};

/// Asks the daemon everything this run's resources will ask, at once: `GET /info` and the
/// batched inspects of networks, volumes and containers run side by side (images follow the
/// containers, whose images they include), and their answers are kept as the run's. The same
/// queries as one after another, in the time of the slowest; a query that fails is left for
/// its resource to ask again and report.
///
/// berth's three listings of what it made (`docker::listing::list`) run beside them; their
/// outcome is returned when the daemon answers.
pub(crate) fn prefetch(
    context: &Context,
    names: &ObjectNames,
    instance: &Instance,
) -> Option<Result<Listing>> {
    let engine = context.docker.engine();
    let (status, networks, volumes, containers, listing) = std::thread::scope(|scope| {
        let status = scope.spawn(|| client::query_status(engine));
        let listing = scope.spawn(|| listing::list(engine, instance, names));
        let networks = scope.spawn(|| client::fetch::<NetworkInfo>(engine, &names.networks));
        let volumes = scope.spawn(|| client::fetch::<VolumeInfo>(engine, &names.volumes));
        let containers = scope.spawn(|| {
            let containers = client::fetch::<ContainerInfo>(engine, &names.containers)?;
            let references = container::image_references(&names.images, &containers.found);
            let images = client::fetch::<ImageInfo>(engine, &references)?;
            Ok::<_, anyhow::Error>((containers, references, images))
        });
        (
            status.join().ok(),
            networks.join().ok().and_then(Result::ok),
            volumes.join().ok().and_then(Result::ok),
            containers.join().ok().and_then(Result::ok),
            listing.join().ok(),
        )
    });
    let status = status?;
    let running = matches!(status, DaemonStatus::Running(_));
    context.docker.remember_status(status);
    if !running {
        return None;
    }
    if let Some(networks) = networks {
        context.docker.remember(&names.networks, networks);
    }
    if let Some(volumes) = volumes {
        context.docker.remember(&names.volumes, volumes);
    }
    if let Some((containers, references, images)) = containers {
        context.docker.remember(&names.containers, containers);
        context.docker.remember(&references, images);
    }
    listing
}
