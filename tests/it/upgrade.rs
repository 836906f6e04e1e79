//! Upgrading berth replaces no container (issue 19): a host converged by the previous release
//! carries the spec hashes that release computed (`tests/fixtures/spec-hashes.toml`), and the
//! new code, computing the same, finds nothing to do.

use std::collections::BTreeMap;

use crate::{
    harness::{berth, profile_file},
    require_dockerd,
};

/// The golden profile that runs on the test daemon's stand-in images, and the hash the
/// previous release stamped on each of its containers.
fn previous_release() -> (String, BTreeMap<String, String>) {
    let golden: toml::Table = toml::from_str(include_str!("../fixtures/spec-hashes.toml")).unwrap();
    let case = &golden["dind-mtu-mirrors"];
    let hashes = case["hashes"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, hash)| (name.clone(), hash.as_str().unwrap().to_owned()))
        .collect();
    (case["profile"].as_str().unwrap().to_owned(), hashes)
}

#[test]
fn a_host_converged_with_the_previous_releases_hashes_is_left_alone() {
    let root = crate::harness::Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let (text, hashes) = previous_release();
    let profile = profile_file(&root.join("/work"), "previous", &text);
    let layers = [
        "-p".into(),
        dockerd.layer_file().into_os_string(),
        "-p".into(),
        profile.into_os_string(),
    ];
    let host = || berth(&root).docker(&dockerd).args(layers.clone());
    host().args(["apply"]).run().code(0);

    // Each container carries the hash the previous release stamped for its spec: the host is
    // the one that release converged, label for label.
    let mut ids = BTreeMap::new();
    for (name, hash) in &hashes {
        let inspected = dockerd.inspect_container(name);
        assert_eq!(
            inspected["Config"]["Labels"]["berth.spec-hash"],
            hash.as_str(),
            "`{name}` carries the previous release's spec hash"
        );
        ids.insert(name.clone(), dockerd.container_id(name));
    }
    assert_eq!(hashes.len(), 2);

    // The new code plans nothing for it (exit 0), and an apply replaces nothing.
    host().converged();
    let apply = host().args(["apply"]).run();
    apply.code(0);
    assert!(apply.stdout.contains("Nothing to do"), "{}", apply.stdout);
    for (name, id) in &ids {
        assert_eq!(&dockerd.container_id(name), id, "`{name}` was not replaced");
    }
}
