//! Host-level resources that live in files under the root: kernel modules and daemon.json.
//! The Docker daemon is not involved (none is installed under these roots).

use crate::harness::{Root, berth, profile_file, write_executable};

/// A `modprobe` stand-in that logs its argv and "loads" the module by adding it to
/// `<root>/proc/modules`, as the kernel would.
fn stub_modprobe(root: &Root) -> std::path::PathBuf {
    let bin = root.scratch("bin");
    write_executable(
        &bin,
        "modprobe",
        &format!(
            "#!/bin/sh\necho \"$@\" >> {log}\necho \"$1 16384 0 - Live 0x0\" >> {modules}\n",
            log = bin.join("modprobe.log").display(),
            modules = root.join("/proc/modules").display()
        ),
    );
    bin
}

#[test]
fn a_module_that_is_not_loaded_is_loaded_with_modprobe_and_persisted() {
    let root = Root::new();
    root.write("/proc/filesystems", "nodev\tsysfs\n")
        .write("/proc/modules", "ext4 1 0 - Live 0x0\n");
    let bin = stub_modprobe(&root);
    let profile = profile_file(
        &root.join("/work"),
        "mods",
        "[kernel]\nmodules = [\"br_netfilter\"]\n",
    );
    let plan = berth(&root).args(["plan", "-p"]).args([&profile]).run();
    plan.code(2);
    assert!(
        plan.stdout
            .contains("kernel-module/br_netfilter    + load      modprobe br_netfilter"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "kernel-module/br_netfilter    + persist   /etc/modules-load.d/br_netfilter.conf"
        ),
        "{}",
        plan.stdout
    );
    berth(&root)
        .path_first(&bin)
        .args(["apply", "-p"])
        .args([&profile])
        .run()
        .code(0);
    assert_eq!(
        std::fs::read_to_string(bin.join("modprobe.log")).unwrap(),
        "br_netfilter\n"
    );
    berth(&root)
        .path_first(&bin)
        .args(["-p"])
        .args([&profile])
        .converged();
    assert_eq!(
        std::fs::read_to_string(bin.join("modprobe.log")).unwrap(),
        "br_netfilter\n",
        "no second modprobe"
    );
}

#[test]
fn a_failing_modprobe_fails_the_module_but_the_rest_of_the_host_converges() {
    let root = Root::new();
    root.write("/proc/filesystems", "nodev\tsysfs\n")
        .write("/proc/modules", "");
    let bin = root.scratch("failbin");
    write_executable(
        &bin,
        "modprobe",
        "#!/bin/sh\necho \"modprobe: FATAL: Module $1 not found in directory /lib/modules/6.1.0\" >&2\nexit 1\n",
    );
    let run = berth(&root).path_first(&bin).args(["apply"]).run();
    run.code(1);
    assert!(
        run.stderr
            .contains("error: failed to load `kernel-module/overlay`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("caused by: `modprobe overlay` exited with status 1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("caused by: modprobe: FATAL: Module overlay not found"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("(skipped)"),
        "persisting overlay waits for a successful load: {}",
        run.stdout
    );
    assert!(
        root.exists("/etc/docker/daemon.json"),
        "daemon-config does not depend on the module"
    );
}

#[test]
fn a_kernel_without_module_support_and_overlay_built_in_is_converged() {
    let root = Root::new();
    root.with_overlay_kernel();
    let run = berth(&root).args(["plan", "--json"]).run();
    let ids: Vec<_> = run.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !ids.iter().any(|id| id.starts_with("kernel-module/")),
        "nothing to load or persist for a built-in overlay: {ids:?}"
    );
}

#[test]
fn an_existing_persistence_line_anywhere_counts() {
    let root = Root::new();
    root.write("/proc/filesystems", "nodev\toverlay\n")
        .write("/proc/modules", "overlay 1 0 - Live 0x0\n");
    root.write(
        "/usr/lib/modules-load.d/docker.conf",
        "# from the docker package\noverlay\n",
    );
    let run = berth(&root).args(["plan", "--json"]).run();
    let ids: Vec<_> = run.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !ids.iter().any(|id| id.starts_with("kernel-module/")),
        "{ids:?}"
    );
}

#[test]
fn daemon_json_keeps_foreign_keys_order_indent_and_mode_and_keeps_a_backup() {
    let root = Root::new();
    let original = "{\n    \"debug\": true,\n    \"storage-driver\": \"vfs\",\n    \"dns\": [\"10.0.0.2\"]\n}\n";
    root.write("/etc/docker/daemon.json", original);
    std::fs::set_permissions(
        root.join("/etc/docker/daemon.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let profile = profile_file(
        &root.join("/work"),
        "d",
        "[docker.daemon]\nstorage-driver = \"overlay2\"\nregistry-mirrors = [\"https://mirror.example.com\"]\n",
    );
    let plan = berth(&root).args(["plan", "-p"]).args([&profile]).run();
    plan.code(2);
    insta::assert_snapshot!(plan.stdout);
    berth(&root)
        .args(["apply", "-p"])
        .args([&profile])
        .run()
        .code(0);
    assert_eq!(
        root.read("/etc/docker/daemon.json").unwrap(),
        "{\n    \"debug\": true,\n    \"storage-driver\": \"overlay2\",\n    \"dns\": [\n        \"10.0.0.2\"\n    ],\n    \"registry-mirrors\": [\n        \"https://mirror.example.com\"\n    ]\n}\n"
    );
    assert_eq!(
        root.mode("/etc/docker/daemon.json"),
        0o600,
        "the file keeps its mode"
    );
    assert_eq!(
        root.read("/etc/docker/daemon.json.berth.bak").unwrap(),
        original,
        "the previous version is kept"
    );
}

#[test]
fn a_key_dropped_from_the_profile_stays_in_the_file() {
    let root = Root::new();
    let first = profile_file(
        &root.join("/work"),
        "first",
        "[docker.daemon]\nstorage-driver = \"overlay2\"\ndebug = true\n",
    );
    let second = profile_file(
        &root.join("/work"),
        "second",
        "[docker.daemon]\nstorage-driver = \"overlay2\"\n",
    );
    berth(&root)
        .args(["apply", "-p"])
        .args([&first])
        .run()
        .code(0);
    berth(&root).args(["-p"]).args([&second]).converged();
    assert!(
        root.read("/etc/docker/daemon.json")
            .unwrap()
            .contains("\"debug\": true")
    );
}
