//! One mirror list everywhere (issue 10, point 6): the top-level `registry_mirrors` reaches
//! daemon.json and the daemon inside every dind container, which is the one that pulls the
//! jobs' images in the dind topologies; `[docker.daemon] registry-mirrors` stays the host's.

use crate::{
    harness::{Root, berth, profile_file},
    profiles::Converged,
    require_dockerd,
};

#[test]
fn registry_mirrors_reach_daemon_json_and_the_dind_daemons_command_and_converge() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let host = Converged::new(
        &root,
        &dockerd,
        "dind",
        "mtu = 1400\nregistry_mirrors = [\"https://mirror.example.com\", \"http://127.0.0.1:5000/\"]\n\
         [docker.daemon]\nregistry-mirrors = [\"https://host-only.example.com\", \"https://mirror.example.com/\"]\n",
    );
    // Converged::new has checked plan 2, apply 0, then plan 0 and an apply that does nothing.
    let daemon_json: serde_json::Value =
        serde_json::from_str(&root.read("/etc/docker/daemon.json").unwrap()).unwrap();
    assert_eq!(
        daemon_json["registry-mirrors"],
        serde_json::json!([
            "https://host-only.example.com",
            "https://mirror.example.com/",
            "http://127.0.0.1:5000/"
        ]),
        "the host's own list, then the shared one, each mirror once"
    );
    // What the host's dockerd took in.
    let mirrors = dockerd.info()["RegistryConfig"]["Mirrors"].clone();
    assert_eq!(
        mirrors,
        serde_json::json!([
            "https://host-only.example.com/",
            "https://mirror.example.com/",
            "http://127.0.0.1:5000/"
        ])
    );
    // The dind daemon gets the shared list, merged into its command as mtu is; not the host's.
    assert_eq!(
        dockerd.inspect_container("gitlab-dind")["Config"]["Cmd"],
        serde_json::json!([
            "--tls=false",
            "--mtu=1400",
            "--registry-mirror=https://mirror.example.com",
            "--registry-mirror=http://127.0.0.1:5000/"
        ])
    );
    // The runner runs no daemon: nothing added to it.
    assert_eq!(
        dockerd.inspect_container("gitlab-runner")["Config"]["Cmd"],
        dockerd
            .docker([
                "image",
                "inspect",
                "--format",
                "{{json .Config.Cmd}}",
                crate::harness::RUNNER_IMAGE
            ])
            .parse::<serde_json::Value>()
            .unwrap()
    );

    // A mirror more: daemon.json is reloaded and dind replaced, said field by field.
    let mut host = host;
    host.layer(
        "more",
        "registry_mirrors = [\"https://mirror.example.com\", \"http://127.0.0.1:5000/\", \"https://third.example.com\"]\n",
    );
    let plan = host.run("plan");
    plan.code(2);
    assert!(
        plan.stdout
            .lines()
            .any(|line| line.starts_with("container/gitlab-dind")
                && line.contains("-/+ replace")
                && line.contains("the profile changed: command")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("\"--registry-mirror=https://third.example.com\""),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+    \"https://third.example.com\""),
        "daemon.json's diff shows it\n{}",
        plan.stdout
    );
    host.run("apply").code(0);
    host.converged();
}

#[test]
fn a_bad_mirror_url_is_an_error_at_its_file_line_and_key() {
    let root = Root::new();
    for (mirror, problem) in [
        (
            "mirror.example.com",
            "`mirror.example.com` is not an http(s) URL: dockerd wants the scheme, e.g. `https://mirror.example.com`",
        ),
        (
            "https://mirror.example.com/v2/library",
            "`https://mirror.example.com/v2/library` has a path: dockerd before 24.0.8 refuses a mirror URL with a path other than `/` (paths are accepted from dockerd 25.0)",
        ),
        (
            "ftp://mirror.example.com",
            "`ftp://mirror.example.com` is not an http(s) URL: dockerd takes only `https://` and `http://` mirrors, not `ftp://`",
        ),
    ] {
        let profile = profile_file(
            &root.join("/work"),
            "site",
            &format!(
                "# a site\nregistry_mirrors = [\n  \"https://ok.example.com\",\n  \"{mirror}\",\n]\n"
            ),
        );
        let before = root.snapshot();
        let run = berth(&root).args(["plan", "-p"]).args([&profile]).run();
        run.code(1);
        assert_eq!(
            run.stderr,
            format!(
                "error: invalid profile `[ROOT]/work/site.toml`\n  caused by: [ROOT]/work/site.toml:4:3: key `registry_mirrors[1]`: {problem}\n"
            )
        );
        assert_eq!(root.snapshot(), before, "nothing changed");
    }
}
