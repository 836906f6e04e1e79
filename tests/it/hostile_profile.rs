//! Issue 18, the lower items: what a profile, a local user or someone holding the Docker socket
//! could turn against root-berth. Container env values never on argv; an `http://` GitLab URL
//! warned about; an extra mount or capability on a labelled container is drift; `..` in
//! berth.toml's profiles refused and relative names read from berth.toml's directory. (Docker's
//! apt key pin is tested beside `package/docker`: an install is refused under `--root`.)

use std::{fs, path::Path};

use crate::{
    harness::{Berth, Dockerd, Root, berth, profile_file, write_executable},
    require_dockerd,
};

const APP_IMAGE: &str = "berth-test/hostile:1";
const APP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

/// berth with the daemon's layer and `profile`; the subcommand comes after (`-p` is global).
fn with_profile(root: &Root, dockerd: &Dockerd, profile: &Path) -> Berth {
    berth(root).docker(dockerd).args([
        "-p".as_ref(),
        dockerd.layer_file().as_os_str(),
        "-p".as_ref(),
        profile.as_os_str(),
    ])
}

fn real_docker() -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_container_env_secret_is_on_no_docker_argv_and_reaches_the_container() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    const SECRET: &str = "glrt-s3cr3t value # with spaces";
    let profile = profile_file(
        &root.scratch("profiles"),
        "site",
        &format!(
            "[containers.berth-test-env]\nimage = \"{APP_IMAGE}\"\n[containers.berth-test-env.env]\nRUNNER_TOKEN = \"{SECRET}\"\nPLAIN = \"x\"\n"
        ),
    );
    // A `docker` first on PATH that records every argv it is given, then runs the real one.
    let wrappers = root.scratch("bin");
    let argv_log = wrappers.join("argv.log");
    write_executable(
        &wrappers,
        "docker",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"== $*\" >> {log}\nexec {docker} \"$@\"\n",
            log = argv_log.display(),
            docker = real_docker()
        ),
    );
    let scratch_tmp = root.scratch("tmp");

    // Created through the Engine API: the env travels in the request's body, which no log
    // level prints (bollard logs bodies at debug through the `log` crate, which berth caps at
    // info), and no `docker` process (and its argv) exists at all.
    let apply = with_profile(&root, &dockerd, &profile)
        .path_first(&wrappers)
        .env("TMPDIR", &scratch_tmp)
        .env("RUST_LOG", "trace")
        .args(["-v", "apply"])
        .run();
    apply.code(0);
    assert!(
        apply
            .stderr
            .contains("`POST /containers/create?name=berth-test-env`"),
        "{}",
        apply.stderr
    );
    assert!(
        !apply.transcript().contains("s3cr3t"),
        "the secret was printed:\n{}",
        apply.transcript()
    );

    let argv = fs::read_to_string(&argv_log).unwrap_or_default();
    assert_eq!(argv, "", "berth ran the docker CLI");
    // The container has it all the same, byte for byte, and no scratch file was written.
    let env = dockerd.inspect_container("berth-test-env")["Config"]["Env"].clone();
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|value| value == &format!("RUNNER_TOKEN={SECRET}")),
        "{env}"
    );
    assert_eq!(fs::read_dir(&scratch_tmp).unwrap().count(), 0);
    with_profile(&root, &dockerd, &profile).converged();
}

#[test]
fn an_http_gitlab_url_is_warned_about_at_its_line_by_validate_plan_and_doctor() {
    let root = Root::new();
    root.write("/etc/berth/tokens/r", "glrt-not-a-real-token\n");
    let profile = profile_file(
        &root.join("/work"),
        "site",
        "[runners.r]\nexecutor = \"shell\"\nurl = \"http://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/r\"\n",
    );
    let validate = berth(&root)
        .args(["validate", "-p", "dind", "-p"])
        .args([&profile])
        .run();
    validate.code(0);
    insta::assert_snapshot!(validate.stdout, @r"
    warning: [ROOT]/work/site.toml:3:1: key `runners.r.url`: an `http://` GitLab URL sends the runner's tokens in clear text to anyone on the path; use `https://` (with `tls_ca_file` for a private CA)
    valid: dind, site
    ");

    let plan = berth(&root)
        .args(["plan", "-p", "dind", "-p"])
        .args([&profile])
        .run();
    assert!(
        plan.stderr.contains("warning: [ROOT]/work/site.toml:3:1: key `runners.r.url`: an `http://` GitLab URL sends the runner's tokens in clear text"),
        "{}",
        plan.transcript()
    );

    let doctor = berth(&root)
        .args(["doctor", "--json", "-p", "dind", "-p"])
        .args([&profile])
        .run();
    let check = doctor.doctor_check("runner url");
    assert_eq!(check["verdict"], "warn", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("site.toml:3:1: key `runners.r.url`"),
        "{check}"
    );

    // A GitLab on this host (or a tunnel to it) is never reached over a network.
    let local = profile_file(
        &root.join("/work"),
        "local",
        "[runners.r]\nexecutor = \"shell\"\nurl = \"http://127.0.0.1:8080\"\ntoken_file = \"/etc/berth/tokens/r\"\n",
    );
    let validate = berth(&root)
        .args(["validate", "-p", "dind", "-p"])
        .args([&local])
        .run();
    validate.code(0);
    assert!(!validate.stdout.contains("http://"), "{}", validate.stdout);
}

#[test]
fn berth_toml_refuses_dot_dot_in_its_profiles_and_reads_relative_ones_from_its_own_directory() {
    let root = Root::new();
    // A profile berth.toml names relatively is found beside berth.toml, under the root, not in
    // the directory berth was started from.
    root.write("/etc/berth/sites/site.toml", "mtu = 1400\n");
    root.write(
        "/etc/berth/berth.toml",
        "profiles = [\"dind\", \"sites/site.toml\"]\n",
    );
    let validate = berth(&root).args(["validate"]).run();
    validate.code(0);
    assert!(
        validate.stdout.ends_with("valid: dind, site\n"),
        "{}",
        validate.transcript()
    );

    root.write(
        "/etc/berth/berth.toml",
        "profiles = [\n  \"dind\",\n  \"../../x.toml\",\n]\n",
    );
    let plan = berth(&root).args(["plan"]).run();
    plan.code(1);
    let validate = berth(&root).args(["validate"]).run();
    validate.code(1);
    assert_eq!(plan.stderr, validate.stderr);
    insta::assert_snapshot!(plan.stderr, @r"
        error: invalid berth settings `/etc/berth/berth.toml`
          caused by: /etc/berth/berth.toml:3:3: key `profiles[1]`: `../../x.toml` contains `..`: name a profile by its name, by a path under `/etc/berth`, or by an absolute path
    ");
}

#[test]
fn an_extra_mount_or_dropped_capability_on_a_labelled_container_is_drift_and_replaced() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    // The image declares a VOLUME the profile does not mount: Docker's anonymous volume there
    // is Docker's doing, and must not make the container look changed.
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &["VOLUME /cache"]);
    let data = root.scratch("data");
    let profile = profile_file(
        &root.scratch("profiles"),
        "site",
        &format!(
            "[volumes.berth-test-kept]\n[containers.berth-test-app]\nimage = \"{APP_IMAGE}\"\nvolumes = [\"berth-test-kept:/data\", \"{}:/bound\"]\n",
            data.display()
        ),
    );
    with_profile(&root, &dockerd, &profile)
        .args(["apply"])
        .run()
        .code(0);
    let first = dockerd.container_id("berth-test-app");
    with_profile(&root, &dockerd, &profile).converged();
    assert_eq!(dockerd.container_id("berth-test-app"), first);

    // Someone with the Docker socket recreates it wearing berth's labels, with the host's
    // files bound in (a scratch directory stands in for `/`) and a capability dropped.
    let live = dockerd.inspect_container("berth-test-app");
    let labels = live["Config"]["Labels"].as_object().unwrap().clone();
    let binds: Vec<String> = serde_json::from_value(live["HostConfig"]["Binds"].clone()).unwrap();
    let planted = root.scratch("host-files");
    dockerd.docker(["rm", "--force", "berth-test-app"]);
    let mut create: Vec<String> = ["create", "--name", "berth-test-app", "--restart", "always"]
        .map(str::to_owned)
        .to_vec();
    for (key, value) in &labels {
        create.extend([
            "--label".into(),
            format!("{key}={}", value.as_str().unwrap()),
        ]);
    }
    for bind in binds {
        create.extend(["--volume".into(), bind]);
    }
    create.extend([
        "--mount".into(),
        format!("type=bind,source={},target=/host", planted.display()),
        "--cap-drop".into(),
        "AUDIT_WRITE".into(),
        APP_IMAGE.into(),
    ]);
    dockerd.docker(&create);
    dockerd.docker(["start", "berth-test-app"]);

    let plan = with_profile(&root, &dockerd, &profile).args(["plan"]).run();
    plan.code(2);
    let planted_text = planted.display().to_string();
    let stdout = plan.stdout.replace(&planted_text, "[PLANTED]");
    assert!(
        stdout.contains("container/berth-test-app  -/+ replace"),
        "{}",
        plan.transcript()
    );
    assert!(
        stdout.contains(r#"volumes[/host]: "bind [PLANTED]" → (absent)"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"cap_drop: ["AUDIT_WRITE"] → []"#),
        "{stdout}"
    );

    with_profile(&root, &dockerd, &profile)
        .args(["apply"])
        .run()
        .code(0);
    let replaced = dockerd.inspect_container("berth-test-app");
    let targets: Vec<&str> = replaced["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mount| mount["Destination"].as_str().unwrap())
        .collect();
    assert!(!targets.contains(&"/host"), "{targets:?}");
    assert!(replaced["HostConfig"]["CapDrop"].is_null(), "{replaced}");
    with_profile(&root, &dockerd, &profile).converged();
}
