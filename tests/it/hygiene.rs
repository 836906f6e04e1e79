//! `[hygiene]` (issue 22, item 1) on the private dockerd: past `keep_free`, plan names what goes
//! and apply removes the unused images and job volumes only; what a declared container uses,
//! berth's own objects and a volume gitlab-runner did not label stay; below the thresholds the
//! plan is empty again. And the bad values a `[hygiene]` can hold, placed at file:line:key.

use std::path::Path;

use crate::{
    harness::{Dockerd, Root, Run, berth, profile_file},
    require_dockerd,
};

const APP_IMAGE: &str = "berth-test/app:1";
const APP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
const JOB_VOLUME: &str =
    "runner-0123abcd-project-1-concurrent-0-cache-3c3f060a0374fc8bc39395164f415a70";

fn run(root: &Root, dockerd: &Dockerd, command: &str, layers: &[&Path]) -> Run {
    let mut berth = berth(root)
        .docker(dockerd)
        .args([command, "-p"])
        .args([dockerd.layer_file()]);
    for layer in layers {
        berth = berth.args(["-p".as_ref(), layer.as_os_str()]);
    }
    berth.run()
}

fn exists(dockerd: &Dockerd, kind: &str, name: &str) -> bool {
    dockerd
        .docker_unchecked([kind, "inspect", name])
        .status
        .success()
}

/// The line of `run`'s stdout about `id`, spaces collapsed.
fn line_of(run: &Run, id: &str) -> String {
    let line = run
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no line for `{id}`:\n{}\n{}", run.stdout, run.stderr));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn past_keep_free_apply_removes_the_unused_images_and_job_volumes_only() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    root.with_overlay_kernel();
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    // Two images nothing uses, and one a job left behind without a tag.
    dockerd.import_busybox_with("berth-test/old:1", &["LABEL n=1"]);
    dockerd.import_busybox_with("berth-test/old:2", &["LABEL n=2"]);
    dockerd.docker([
        "volume",
        "create",
        "--label",
        "com.gitlab.gitlab-runner.managed=true",
        JOB_VOLUME,
    ]);
    dockerd.docker(["volume", "create", "berth-test-plain"]);
    let work = root.join("/work");
    let site = profile_file(
        &work,
        "site",
        &format!(
            "[containers.berth-test-app]\nimage = \"{APP_IMAGE}\"\nvolumes = [\"berth-test-data:/data\"]\n"
        ),
    );
    run(&root, &dockerd, "apply", &[&site]).code(0);
    let app = dockerd.container_id("berth-test-app");

    let full = profile_file(
        &work,
        "full",
        "[hygiene]\nkeep_free = \"99%\"\nunused_images_after = \"0s\"\njob_volumes_after = \"0s\"\n",
    );
    let plan = run(&root, &dockerd, "plan", &[&site, &full]);
    plan.code(2);
    let line = line_of(&plan, "hygiene/host");
    assert!(
        line.starts_with("hygiene/host ~ prune ")
            && line.contains(": 2 images unused 0s+, 1 job volume (data root ")
            && line.ends_with("% used; keep_free 99%)"),
        "{line}"
    );
    assert!(
        !plan.stdout.contains(JOB_VOLUME),
        "names a job chose are not printed"
    );
    assert_eq!(
        plan.stdout
            .lines()
            .filter(|l| l.starts_with("hygiene/"))
            .count(),
        1
    );

    run(&root, &dockerd, "apply", &[&site, &full]).code(0);
    assert!(!exists(&dockerd, "image", "berth-test/old:1"));
    assert!(!exists(&dockerd, "image", "berth-test/old:2"));
    assert!(
        !exists(&dockerd, "volume", JOB_VOLUME),
        "the job volume went"
    );
    assert!(
        exists(&dockerd, "image", APP_IMAGE),
        "a declared container's image stays"
    );
    assert!(
        exists(&dockerd, "volume", "berth-test-data"),
        "berth's volume stays"
    );
    assert!(
        exists(&dockerd, "volume", "berth-test-plain"),
        "an unlabelled volume stays"
    );
    assert_eq!(
        dockerd.container_id("berth-test-app"),
        app,
        "the container was not touched"
    );

    // 99% cannot be met and nothing else may go: said, changing nothing, exit 0.
    let again = run(&root, &dockerd, "plan", &[&site, &full]);
    again.code(0);
    assert!(
        line_of(&again, "hygiene/host").starts_with("hygiene/host (nothing may go: data root "),
        "{}",
        again.stdout
    );
    // Normal thresholds: nothing to say.
    let normal = profile_file(&work, "normal", "[hygiene]\nkeep_free = \"1%\"\n");
    berth(&root)
        .docker(&dockerd)
        .args(["-p".as_ref(), dockerd.layer_file().as_os_str()])
        .args([
            "-p".as_ref(),
            site.as_os_str(),
            "-p".as_ref(),
            normal.as_os_str(),
        ])
        .converged();
}

#[test]
fn bad_hygiene_values_are_placed_at_their_key() {
    let root = Root::new();
    let work = root.join("/work");
    let layer = profile_file(
        &work,
        "site",
        "[hygiene]\nkeep_free = \"120%\"\nunused_images_after = \"3 parsecs\"\nbuild_cache_max = \"20\"\n",
    );
    let run = berth(&root)
        .args(["validate".as_ref(), "-p".as_ref(), layer.as_os_str()])
        .run();
    run.code(1);
    for expected in [
        "site.toml:2:1: key `hygiene.keep_free`: `120%` cannot be kept free",
        "site.toml:3:1: key `hygiene.unused_images_after`: `3 parsecs` is not a duration",
        "site.toml:4:1: key `hygiene.build_cache_max`: `20` is not a size",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.stderr);
    }
}
