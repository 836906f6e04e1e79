use std::{collections::BTreeMap, path::PathBuf};

use super::*;
use crate::{
    docker::usage::{ImageConfig, UsedMount, UsingContainer, UsingState},
    host::FilesystemSpace,
    resource::{
        Earlier,
        hygiene::{Daemon, section::HygieneSpec},
    },
};

const NOW: &str = "2026-12-07T00:00:00Z";
const GB: u64 = 1_000_000_000;

fn id(n: u8) -> String {
    format!("sha256:{}", format!("{n:x}").repeat(64).get(..64).unwrap())
}

fn image(n: u8, tag: &str, hours_ago: i64, size: u64) -> UsedImage {
    let created: jiff::Timestamp = NOW.parse().unwrap();
    UsedImage {
        id: id(n),
        repo_tags: (!tag.is_empty()).then(|| vec![tag.to_owned()]),
        created: (created - jiff::SignedDuration::from_hours(hours_ago)).to_string(),
        size,
        ..UsedImage::default()
    }
}

fn hygiene(keep_free: u8) -> Hygiene {
    Hygiene::new(
        Some(HygieneSpec {
            keep_free_percent: keep_free,
            unused_images_after: 72 * 3600,
            build_cache_max: 20 * GB,
            job_volumes_after: 168 * 3600,
        }),
        Daemon::Host,
        HygieneFacts {
            kept_images: vec!["gitlab/gitlab-runner:v17.11.0".into()],
            prepull: vec!["busybox".into()],
            runner_version: Some("17.11.0".into()),
        },
    )
}

fn seen(available: u64, usage: DiskUsage) -> SeenDaemon {
    SeenDaemon::Seen(Box::new(DaemonDisk {
        now: NOW.parse().unwrap(),
        data_root: "/var/lib/docker".into(),
        measured_at: PathBuf::from("/var/lib/docker"),
        space: FilesystemSpace {
            total: 100 * GB,
            available,
        },
        usage,
    }))
}

fn planned(hygiene: &Hygiene, observed: &SeenDaemon) -> Vec<(String, Option<Vec<PruneItem>>)> {
    hygiene
        .diff(observed, &Earlier::default())
        .changes
        .into_iter()
        .map(|(change, op)| {
            let items = op.map(|op| match op {
                HygieneOp::Prune(op) => op.items,
                HygieneOp::Prepull(images) => panic!("prepulls {images:?}"),
            });
            (change.detail, items)
        })
        .collect()
}

fn usage() -> DiskUsage {
    let mut berths = image(7, "berth-test/labelled:1", 500, GB);
    berths.config = Some(ImageConfig {
        labels: Some(BTreeMap::from([("berth.managed".into(), "true".into())])),
    });
    DiskUsage {
        images: vec![
            image(1, "old/one:1", 300, 2 * GB),
            image(2, "", 200, 3 * GB),
            image(3, "fresh/one:1", 10, GB),
            image(4, "gitlab/gitlab-runner:v17.11.0", 900, GB),
            image(
                5,
                "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.11.0",
                900,
                GB,
            ),
            image(6, "docker.io/library/busybox:latest", 900, GB),
            berths,
            image(8, "used/by-a-stopped-one:1", 900, GB),
            image(9, "forged\u{1b}[2J:1", 900, GB),
        ],
        containers: vec![UsingContainer {
            id: "c".repeat(64),
            image: id(8),
            state: UsingState { running: false },
            mounts: vec![UsedMount {
                kind: "volume".into(),
                name: "in-use".into(),
            }],
        }],
        volumes: vec![
            job_volume("job-old", 400, "true"),
            job_volume("in-use", 400, "true"),
            job_volume("job-fresh", 10, "true"),
            job_volume("not-the-runners", 400, "false"),
        ],
        volume_sizes: BTreeMap::from([("job-old".into(), 5 * GB)]),
        build_cache: 0,
    }
}

fn job_volume(name: &str, hours_ago: i64, managed: &str) -> JobVolume {
    let now: jiff::Timestamp = NOW.parse().unwrap();
    JobVolume {
        name: name.into(),
        labels: Some(BTreeMap::from([(
            RUNNER_MANAGED_LABEL.into(),
            managed.into(),
        )])),
        created_at: (now - jiff::SignedDuration::from_hours(hours_ago)).to_string(),
    }
}

#[test]
fn below_every_threshold_nothing_is_planned() {
    assert_eq!(planned(&hygiene(20), &seen(50 * GB, usage())), vec![]);
    assert_eq!(planned(&hygiene(20), &SeenDaemon::Away), vec![]);
    let silent = hygiene(20).diff(&SeenDaemon::Silent("no answer".into()), &Earlier::default());
    assert!(silent.changes.is_empty());
    assert_eq!(
        silent.warnings,
        [
            "`hygiene/host`: its Docker daemon does not answer, so nothing is pruned or prepulled there: no answer"
        ]
    );
}

#[test]
fn past_keep_free_the_oldest_that_may_go_go_first_until_it_would_hold() {
    // 18 GB free of 100, 20% asked: 2 GB short. The oldest that may go is job-old (400 h).
    let plan = planned(&hygiene(20), &seen(18 * GB, usage()));
    assert_eq!(
        plan,
        vec![(
            "5.0 GB: 1 job volume (data root 82% used; keep_free 20%)".to_owned(),
            Some(vec![PruneItem::Volume {
                name: "job-old".into(),
                bytes: 5 * GB
            }])
        )]
    );
    // 10 GB short: everything that may go, oldest first; never the kept ones.
    let plan = planned(&hygiene(20), &seen(10 * GB, usage()));
    assert_eq!(
        plan[0].1,
        Some(vec![
            PruneItem::Volume {
                name: "job-old".into(),
                bytes: 5 * GB
            },
            PruneItem::Image {
                id: id(1),
                bytes: 2 * GB
            },
            PruneItem::Image {
                id: id(2),
                bytes: 3 * GB
            },
        ]),
        "{}",
        plan[0].0
    );
    assert_eq!(
        plan[0].0,
        "10.0 GB: 2 images unused 72h+, 1 job volume (data root 90% used; keep_free 20%)"
    );
}

#[test]
fn build_cache_past_its_maximum_is_pruned_down_to_it() {
    let mut cached = usage();
    cached.build_cache = 25 * GB;
    let plan = planned(&hygiene(20), &seen(50 * GB, cached.clone()));
    assert_eq!(
        plan,
        vec![(
            "5.0 GB: build cache 5.0 GB (build cache 25.0 GB; build_cache_max 20.0 GB)".to_owned(),
            Some(vec![PruneItem::BuildCache {
                keep: 20 * GB,
                bytes: 5 * GB
            }])
        )]
    );
    // Past keep_free too: all of it goes first.
    let plan = planned(&hygiene(20), &seen(10 * GB, cached));
    assert_eq!(
        plan[0].1.as_ref().unwrap()[0],
        PruneItem::BuildCache {
            keep: 0,
            bytes: 25 * GB
        }
    );
}

#[test]
fn crossed_with_nothing_that_may_go_is_said_and_changes_nothing() {
    let mut kept = usage();
    kept.images
        .retain(|image| image.id != id(1) && image.id != id(2));
    kept.volumes.retain(|volume| volume.name != "job-old");
    let plan = planned(&hygiene(99), &seen(10 * GB, kept));
    assert_eq!(
        plan,
        vec![(
            "nothing may go: data root 90% used; keep_free 99%".to_owned(),
            None
        )]
    );
}

#[test]
fn the_never_removed_list() {
    let facts = hygiene(20).facts;
    let all = usage();
    let kept: Vec<&str> = all
        .images
        .iter()
        .filter(|image| keeps_image(&facts, image))
        .map(|image| image.tags().first().map_or("", String::as_str))
        .collect();
    assert_eq!(
        kept,
        [
            "gitlab/gitlab-runner:v17.11.0",
            "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.11.0",
            "docker.io/library/busybox:latest",
            "berth-test/labelled:1",
            "forged\u{1b}[2J:1",
        ]
    );
    assert!(!is_helper_of(
        "gitlab/gitlab-runner-helper:x86_64-v17.10.0",
        "17.11.0"
    ));
    assert!(keeps_volume(&job_volume("x", 1, "false")));
    assert!(!keeps_volume(&job_volume("x", 1, "true")));
}

#[test]
fn a_missing_prepull_image_is_pulled_and_one_there_is_not() {
    let mut dind = hygiene(20);
    dind.daemon = Daemon::Dind("gitlab-dind".to_owned().try_into().unwrap());
    dind.facts.prepull = vec!["busybox".into(), "alpine:3.20".into()];
    let changes = dind
        .diff(&seen(50 * GB, usage()), &Earlier::default())
        .changes;
    assert_eq!(changes.len(), 1);
    let change = &changes[0].0;
    assert_eq!(
        (change.id.to_string(), change.action, change.detail.as_str()),
        (
            "hygiene/gitlab-dind".to_owned(),
            Action::Prepull,
            "alpine:3.20"
        )
    );
    assert_eq!(
        changes[0].1,
        Some(HygieneOp::Prepull(vec!["alpine:3.20".into()]))
    );
}
