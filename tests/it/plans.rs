//! Issue 13, point 4: exit codes that mean one thing.

use std::path::PathBuf;

use crate::harness::{Berth, Root, berth, profile_file};

fn layer(root: &Root, name: &str, text: &str) -> PathBuf {
    profile_file(&root.join("/work"), name, text)
}

fn p(command: Berth, profiles: &[&PathBuf]) -> Berth {
    profiles
        .iter()
        .fold(command, |command, profile| {
            command.args(["-p".as_ref(), profile.as_os_str()])
        })
}

#[test]
fn usage_errors_exit_1_and_help_and_version_exit_0() {
    let root = Root::new();
    let bogus = berth(&root).args(["plan", "--bogus"]).run();
    insta::assert_snapshot!(bogus.transcript(), @r"
    exit: 1
    --- stdout
    --- stderr
    error: unexpected argument '--bogus' found

    Usage: berth plan [OPTIONS]

    For more information, try '--help'.
    ");
    berth(&root)
        .args(["--color", "sometimes", "plan"])
        .run()
        .code(1);
    let nothing = berth(&root).run();
    nothing.code(1);
    assert!(
        nothing.stderr.contains("Usage: berth"),
        "{}",
        nothing.stderr
    );
    berth(&root).args(["plan", "--help"]).run().code(0);
    let version = berth(&root).args(["--version"]).run();
    version.code(0);
    assert!(version.stdout.starts_with("berth "), "{}", version.stdout);
    assert!(!root.exists("/etc/docker/daemon.json"), "nothing ran");
}

#[test]
fn plan_exits_0_in_sync_2_pending_1_on_error_and_1_when_a_change_would_be_refused() {
    let root = Root::new();
    berth(&root).args(["plan"]).run().code(2);
    berth(&root).args(["apply"]).run().code(0);
    berth(&root).converged();
    berth(&root)
        .args(["-p", "no-such-profile", "plan"])
        .run()
        .code(1);

    // dockerd would not start with `hosts` in daemon.json and `-H` in its unit: refused.
    let refused_root = Root::new();
    refused_root.write(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
    );
    let hosts = layer(
        &refused_root,
        "hosts",
        "[docker.daemon]\nhosts = [\"unix:///var/run/docker.sock\"]\n",
    );
    let plan = p(berth(&refused_root), &[&hosts]).args(["plan"]).run();
    insta::assert_snapshot!(plan.stdout, @r#"
    daemon-config    + create    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -0,0 +1,5 @@
        +{
        +  "hosts": [
        +    "unix:///var/run/docker.sock"
        +  ]
        +}
        refused: dockerd would refuse to start: `hosts` (flag `-H fd://`) also set on its command line in `/lib/systemd/system/docker.service`; remove the key from the profile or the flag from the unit
    daemon/docker    + start     the daemon does not answer: Cannot connect to the Docker daemon at unix:///nonexistent/berth-test/docker.sock. Is the docker daemon running?

    Plan: 1 to add, 0 to change, 0 to destroy, 1 refused.
    "#);
    plan.code(1);
    let json = p(berth(&refused_root), &[&hosts])
        .args(["plan", "--json"])
        .run();
    json.code(1);
    let document = json.json();
    assert_eq!(document["changes"][0]["status"], "refused");
    assert_eq!(document["changes"][1]["status"], "planned");
    assert_eq!(document["summary"]["refused"], 1);
    assert_eq!(document["summary"]["add"], 1);
    p(berth(&refused_root), &[&hosts])
        .args(["apply"])
        .run()
        .code(1);
    assert!(!refused_root.exists("/etc/docker/daemon.json"));
}
