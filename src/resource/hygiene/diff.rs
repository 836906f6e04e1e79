//! What may go, and what goes: pure. A threshold crossed gives one `~ prune` op listing what
//! apply removes, oldest first, until the thresholds would hold; below every threshold,
//! nothing.

use crate::{
    docker::labels::has_control,
    docker::usage::{DiskUsage, JobVolume, RUNNER_MANAGED_LABEL, UsedImage},
    plan::{Action, Change, Diff},
    resource::{
        Resource as _,
        hygiene::{Hygiene, HygieneFacts, SeenDaemon, observe::DaemonDisk, section::HygieneSpec},
    },
};

/// One thing apply removes, with what it frees as Docker counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PruneItem {
    /// `docker image rm` by ID.
    Image { id: String, bytes: u64 },
    /// `docker volume rm` of a volume gitlab-runner made for jobs.
    Volume { name: String, bytes: u64 },
    /// `docker builder prune --all --keep-storage KEEP`: the build cache no build uses, down
    /// to `keep` bytes.
    BuildCache { keep: u64, bytes: u64 },
}

impl PruneItem {
    /// What it is, as `berth_pruned_bytes_total{what}` says it.
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Self::Image { .. } => "images",
            Self::Volume { .. } => "volumes",
            Self::BuildCache { .. } => "build_cache",
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Self::Image { bytes, .. }
            | Self::Volume { bytes, .. }
            | Self::BuildCache { bytes, .. } => *bytes,
        }
    }
}

/// What apply does for one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HygieneOp {
    Prune(PruneOp),
    /// Pull these `prepull` images, missing from the dind daemon, into it.
    Prepull(Vec<String>),
}

/// Remove `items` in order, and stop once the data root's
/// filesystem has `keep_available` bytes free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PruneOp {
    pub items: Vec<PruneItem>,
    /// The free bytes `keep_free` asks for on the filesystem measured.
    pub keep_available: u64,
    /// Where that filesystem is measured.
    pub measured_at: std::path::PathBuf,
}

pub(super) fn diff(hygiene: &Hygiene, observed: &SeenDaemon) -> Diff<HygieneOp> {
    let mut diff = Diff::none();
    let disk = match observed {
        SeenDaemon::Seen(disk) => disk,
        SeenDaemon::Away => return diff,
        SeenDaemon::Silent(why) => {
            diff.warn(format!(
                "`{}`: its Docker daemon does not answer, so nothing is pruned or prepulled there: {why}",
                hygiene.id()
            ));
            return diff;
        }
    };
    prune(hygiene, disk, &mut diff);
    let missing: Vec<String> = hygiene
        .facts
        .prepull
        .iter()
        .filter(|wanted| {
            let wanted = canonical(wanted);
            !disk
                .usage
                .images
                .iter()
                .any(|image| image.tags().iter().any(|tag| canonical(tag) == wanted))
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        diff.push(
            Change::new(hygiene.id(), Action::Prepull, missing.join(", ")),
            HygieneOp::Prepull(missing),
        );
    }
    diff
}

fn prune(hygiene: &Hygiene, disk: &DaemonDisk, diff: &mut Diff<HygieneOp>) {
    let Some(spec) = &hygiene.spec else {
        return;
    };
    let total = disk.space.total;
    let keep_available = total / 100 * u64::from(spec.keep_free_percent)
        + total % 100 * u64::from(spec.keep_free_percent) / 100;
    let short = keep_available.saturating_sub(disk.space.available);
    let over_cache = disk.usage.build_cache.saturating_sub(spec.build_cache_max);
    if short == 0 && over_cache == 0 {
        return;
    }
    let mut items = Vec::new();
    let mut freed = 0;
    if short > 0 && disk.usage.build_cache > 0 {
        // The build cache goes first: it is made again by the next build that needs it.
        items.push(PruneItem::BuildCache {
            keep: 0,
            bytes: disk.usage.build_cache,
        });
        freed += disk.usage.build_cache;
    } else if over_cache > 0 {
        items.push(PruneItem::BuildCache {
            keep: spec.build_cache_max,
            bytes: over_cache,
        });
    }
    let mut aged: Vec<(jiff::Timestamp, PruneItem)> = Vec::new();
    if short > 0 {
        aged.extend(unused_images(
            &hygiene.facts,
            &disk.usage,
            disk.now,
            spec.unused_images_after,
        ));
        aged.extend(unused_volumes(
            &disk.usage,
            disk.now,
            spec.job_volumes_after,
        ));
    }
    aged.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| key(&a.1).cmp(key(&b.1))));
    for (_, item) in aged {
        if freed >= short {
            break;
        }
        freed += item.bytes();
        items.push(item);
    }
    let why = why(spec, disk, short, over_cache);
    if items.is_empty() {
        // Crossed, but nothing may go: said, changing nothing (plan still exits 0).
        diff.changes.push((
            Change::new(hygiene.id(), Action::Keep, format!("nothing may go: {why}")),
            None,
        ));
        return;
    }
    let op = PruneOp {
        items,
        keep_available,
        measured_at: disk.measured_at.clone(),
    };
    diff.push(
        Change::new(hygiene.id(), Action::Prune, detail(spec, &op, &why)),
        HygieneOp::Prune(op),
    );
}

fn key(item: &PruneItem) -> &str {
    match item {
        PruneItem::Image { id, .. } => id,
        PruneItem::Volume { name, .. } => name,
        PruneItem::BuildCache { .. } => "",
    }
}

/// `14.2 GB: build cache 9.1 GB, 31 images unused 72h+, 4 job volumes (...)`: counts and sizes
/// only, never a name a job chose.
fn detail(spec: &HygieneSpec, op: &PruneOp, why: &str) -> String {
    let total: u64 = op.items.iter().map(PruneItem::bytes).sum();
    let mut parts = Vec::new();
    for item in &op.items {
        if let PruneItem::BuildCache { bytes, .. } = item {
            parts.push(format!("build cache {}", human(*bytes)));
        }
    }
    let images = op
        .items
        .iter()
        .filter(|item| matches!(item, PruneItem::Image { .. }))
        .count();
    if images > 0 {
        parts.push(format!(
            "{images} image{} unused {}+",
            if images == 1 { "" } else { "s" },
            age(spec.unused_images_after)
        ));
    }
    let volumes = op
        .items
        .iter()
        .filter(|item| matches!(item, PruneItem::Volume { .. }))
        .count();
    if volumes > 0 {
        parts.push(format!(
            "{volumes} job volume{}",
            if volumes == 1 { "" } else { "s" }
        ));
    }
    format!("{}: {} ({why})", human(total), parts.join(", "))
}

fn why(spec: &HygieneSpec, disk: &DaemonDisk, short: u64, over_cache: u64) -> String {
    let mut reasons = Vec::new();
    if short > 0 {
        let used = disk.space.total.saturating_sub(disk.space.available);
        let percent = (used * 100).checked_div(disk.space.total).unwrap_or(0);
        reasons.push(format!(
            "data root {percent}% used; keep_free {}%",
            spec.keep_free_percent
        ));
    }
    if over_cache > 0 {
        reasons.push(format!(
            "build cache {}; build_cache_max {}",
            human(disk.usage.build_cache),
            human(spec.build_cache_max)
        ));
    }
    reasons.join("; ")
}

/// Bytes as Docker prints them (decimal units), one decimal.
pub(crate) fn human(bytes: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let value = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", value / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", value / 1e6),
        _ => format!("{:.1} GB", value / 1e9),
    }
}

/// `72h`, `7d`: an age as `[hygiene]` takes it.
fn age(seconds: u64) -> String {
    match seconds {
        0 => "0s".to_owned(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn timestamp(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

/// True when `image` stays whatever the thresholds say: a declared container's or a prepulled
/// image (by any of its tags), the pinned runner version's helper image, anything berth labels,
/// or anything whose tags or labels hold a control character (berth neither acts on nor prints
/// what a job forged). That a container uses it is asked apart (any container, running or not).
pub(crate) fn keeps_image(facts: &HygieneFacts, image: &UsedImage) -> bool {
    let labels = image.labels();
    let forged = image.tags().iter().any(|tag| has_control(tag))
        || labels
            .iter()
            .any(|(key, value)| has_control(key) || has_control(value));
    let berths = labels.keys().any(|key| key.starts_with("berth."));
    let kept: Vec<String> = facts
        .kept_images
        .iter()
        .chain(&facts.prepull)
        .map(|image| canonical(image))
        .collect();
    let declared = image
        .tags()
        .iter()
        .any(|tag| kept.contains(&canonical(tag)));
    let helper = facts
        .runner_version
        .as_deref()
        .is_some_and(|version| image.tags().iter().any(|tag| is_helper_of(tag, version)));
    forged || berths || declared || helper
}

/// True when `volume` stays: it is not labelled `com.gitlab.gitlab-runner.managed=true`, or
/// berth labels it, or its labels hold a control character.
pub(crate) fn keeps_volume(volume: &JobVolume) -> bool {
    let labels = volume.labels.clone().unwrap_or_default();
    labels.get(RUNNER_MANAGED_LABEL).map(String::as_str) != Some("true")
        || labels.keys().any(|key| key.starts_with("berth."))
        || labels
            .iter()
            .any(|(key, value)| has_control(key) || has_control(value))
}

/// `gitlab/gitlab-runner-helper:x86_64-v17.11.0` (or `alpine3.21-x86_64-v17.11.0`, behind any
/// registry) is the helper of gitlab-runner 17.11.0.
fn is_helper_of(tag: &str, version: &str) -> bool {
    let Some((repository, tag)) = tag.rsplit_once(':') else {
        return false;
    };
    repository.rsplit('/').next() == Some("gitlab-runner-helper")
        && tag
            .split('-')
            .any(|part| part.strip_prefix('v') == Some(version))
}

/// A reference as Docker stores its tag: `busybox` is `busybox:latest`, and Docker Hub's
/// `docker.io/library/` is left off.
fn canonical(reference: &str) -> String {
    let reference = reference.split('@').next().unwrap_or(reference);
    let reference = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let reference = reference.strip_prefix("library/").unwrap_or(reference);
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// The images no container uses, unused for `after` seconds, that berth may remove, each with
/// its last use: its creation or its last tag (Docker keeps no last-used time; jobs' containers
/// are removed by the runner, so an image a container still uses is never one of these).
fn unused_images(
    facts: &HygieneFacts,
    usage: &DiskUsage,
    now: jiff::Timestamp,
    after: u64,
) -> Vec<(jiff::Timestamp, PruneItem)> {
    usage
        .images
        .iter()
        .filter(|image| {
            !usage
                .containers
                .iter()
                .any(|container| container.image == image.id)
        })
        .filter(|image| !keeps_image(facts, image))
        .filter_map(|image| {
            let created = timestamp(&image.created)?;
            let tagged = image
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.last_tag_time.as_deref())
                .and_then(timestamp);
            let last = tagged.map_or(created, |tagged| tagged.max(created));
            old_enough(now, last, after).then(|| {
                (
                    last,
                    PruneItem::Image {
                        id: image.id.clone(),
                        bytes: image.size,
                    },
                )
            })
        })
        .collect()
}

/// The job volumes no container mounts, made `after` seconds ago or more.
fn unused_volumes(
    usage: &DiskUsage,
    now: jiff::Timestamp,
    after: u64,
) -> Vec<(jiff::Timestamp, PruneItem)> {
    usage
        .volumes
        .iter()
        .filter(|volume| !keeps_volume(volume))
        .filter(|volume| {
            !usage.containers.iter().any(|container| {
                container
                    .mounts
                    .iter()
                    .any(|mount| mount.kind == "volume" && mount.name == volume.name)
            })
        })
        .filter_map(|volume| {
            let created = timestamp(&volume.created_at)?;
            old_enough(now, created, after).then(|| {
                (
                    created,
                    PruneItem::Volume {
                        name: volume.name.clone(),
                        bytes: usage.volume_sizes.get(&volume.name).copied().unwrap_or(0),
                    },
                )
            })
        })
        .collect()
}

fn old_enough(now: jiff::Timestamp, last: jiff::Timestamp, after: u64) -> bool {
    let elapsed = now.as_second().saturating_sub(last.as_second());
    u64::try_from(elapsed).is_ok_and(|elapsed| elapsed >= after)
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
