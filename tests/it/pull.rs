//! Image pulls through the Engine API (issue 24) from a real registry (Debian's
//! `docker-registry`, run as a stand-in image on the private dockerd and published on its
//! 127.0.0.1, which Docker trusts over plain HTTP): the progress on a terminal, Docker's own
//! words when the image is missing or the registry cannot be reached (apply exits 1), and the
//! credentials of the CLI's config.json, which reach an htpasswd-protected registry and are
//! never shown, not even with `-v`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine as _;

use crate::{
    harness::{Berth, Dockerd, Root, Run, berth, profile_file, within},
    hygiene::import_registry,
    require_dockerd,
};

const APP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
const USER: &str = "berth-puller";
const PASSWORD: &str = "pw-9f2c7d1e-not-to-be-shown";

/// Runs the registry stand-in as `name`, published at 127.0.0.1:`port` of the daemon's own
/// network, with `config` (and the files of `auth`, mounted at /auth) as its configuration.
fn start_registry(dockerd: &Dockerd, name: &str, port: u16, auth: Option<&Path>) {
    let mut args: Vec<String> = ["run", "--detach", "--name", name, "--publish"]
        .map(str::to_owned)
        .to_vec();
    args.push(format!("127.0.0.1:{port}:5000"));
    if let Some(dir) = auth {
        args.extend([
            "--volume".to_owned(),
            format!("{}:/auth:ro", dir.display()),
            "--entrypoint".to_owned(),
            "/usr/bin/docker-registry".to_owned(),
        ]);
    }
    args.push("berth-test/registry:stand-in".to_owned());
    if auth.is_some() {
        args.extend(["serve".to_owned(), "/auth/registry.yml".to_owned()]);
    }
    dockerd.docker(&args);
}

/// `docker push` of `image` (a stand-in built here), with the CLI's config in `config`, and the
/// local copy removed, so that berth has to pull it.
fn push(dockerd: &Dockerd, image: &str, config: &Path, login: Option<&str>) {
    dockerd.import_stand_in(image, APP_SCRIPT, &[]);
    let docker = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", dockerd.host())
            .env("DOCKER_CONFIG", config)
            .output()
            .unwrap()
            .status
            .success()
    };
    if let Some(registry) = login {
        let logged_in = within(Duration::from_secs(30), || {
            docker(&["login", "-u", USER, "-p", PASSWORD, registry])
        });
        assert!(logged_in.is_some(), "docker login {registry}");
    }
    let pushed = within(Duration::from_secs(30), || docker(&["push", image]));
    assert!(
        pushed.is_some(),
        "the registry stand-in takes a push of {image}"
    );
    dockerd.docker(["image", "rm", image]);
}

fn apply(root: &Root, dockerd: &Dockerd, profile: &Path) -> Berth {
    berth(root)
        .docker(dockerd)
        .args(["apply", "-p"])
        .args([dockerd.layer_file()])
        .args(["-p".as_ref(), profile.as_os_str()])
}

fn site(root: &Root, name: &str, image: &str) -> PathBuf {
    profile_file(
        &root.join("/work"),
        name,
        &format!("[containers.berth-test-{name}]\nimage = \"{image}\"\n"),
    )
}

/// What Docker says of a registry it cannot reach depends on the machine (its resolver, its
/// network): the part after the address is filtered.
fn pull_errors(run: &Run) -> String {
    run.transcript()
        .lines()
        .filter(|line| {
            line.contains("error:") || line.contains("caused by:") || line.starts_with("exit:")
        })
        .map(|line| match line.find("dial tcp") {
            Some(at) => format!("{}dial tcp [WHY]", &line[..at]),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_pull_shows_its_progress_and_a_missing_image_or_registry_fails_in_dockers_words() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    if !import_registry(&dockerd) {
        return;
    }
    start_registry(&dockerd, "berth-test-registry-open", 5000, None);
    let image = "127.0.0.1:5000/berth-test/pulled:1";
    push(&dockerd, image, &dockerd.dir().join("cli"), None);

    // On a terminal, one line redrawn in place: the layers and megabytes done.
    if crate::harness::tool_available("script", "apt-get install util-linux") {
        let pulled = apply(&root, &dockerd, &site(&root, "pulled", image))
            .env("NO_COLOR", "1")
            .run_on_terminal("");
        pulled.code(0);
        assert!(
            pulled
                .stdout
                .contains(&format!("pulling {image}: 1/1 layers, ")),
            "{}",
            pulled.stdout
        );
        assert!(dockerd.exists("image", image));
    }

    let missing = apply(
        &root,
        &dockerd,
        &site(&root, "missing", "127.0.0.1:5000/berth-test/missing:1"),
    )
    .run();
    missing.code(1);
    insta::assert_snapshot!(pull_errors(&missing), @r"
    exit: 1
    error: failed to create `container/berth-test-missing`
      caused by: image `127.0.0.1:5000/berth-test/missing:1` could not be pulled
      caused by: manifest for 127.0.0.1:5000/berth-test/missing:1 not found: manifest unknown: manifest unknown
    ");

    let unreachable = apply(
        &root,
        &dockerd,
        &site(&root, "unreachable", "127.0.0.1:5999/berth-test/app:1"),
    )
    .run();
    unreachable.code(1);
    insta::assert_snapshot!(pull_errors(&unreachable), @r#"
    exit: 1
    error: failed to create `container/berth-test-unreachable`
      caused by: image `127.0.0.1:5999/berth-test/app:1` could not be pulled
      caused by: Get "http://127.0.0.1:5999/v2/": dial tcp [WHY]
    "#);
    for name in ["pulled", "registry-open"] {
        let _ = dockerd.docker_unchecked(["rm", "--force", &format!("berth-test-{name}")]);
    }
}

#[test]
fn the_credentials_of_the_clis_config_reach_the_registry_and_are_never_shown() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    if !import_registry(&dockerd) {
        return;
    }
    let Ok(htpasswd) = crate::hygiene::which("htpasswd") else {
        assert!(
            !crate::harness::in_ci(),
            "CI=true but htpasswd is missing (.ci/run installs apache2-utils)"
        );
        eprintln!("SKIPPED: no htpasswd (apt-get install apache2-utils)");
        return;
    };
    let auth = root.scratch("registry-auth");
    let hashed = Command::new(htpasswd)
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap();
    assert!(hashed.status.success());
    std::fs::write(auth.join("htpasswd"), &hashed.stdout).unwrap();
    std::fs::write(
        auth.join("registry.yml"),
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\nauth:\n  htpasswd:\n    realm: berth-test\n    path: /auth/htpasswd\n",
    )
    .unwrap();
    start_registry(&dockerd, "berth-test-registry-auth", 5001, Some(&auth));
    let image = "127.0.0.1:5001/berth-test/private:1";
    push(
        &dockerd,
        image,
        &root.scratch("pusher-config"),
        Some("127.0.0.1:5001"),
    );
    let profile = site(&root, "private", image);

    // Without credentials the registry refuses: Docker's words, apply exits 1.
    let anonymous = apply(&root, &dockerd, &profile).run();
    anonymous.code(1);
    assert!(
        anonymous.stderr.contains("no basic auth credentials"),
        "{}",
        anonymous.transcript()
    );

    // `docker login` as root wrote config.json: berth pulls with what it holds.
    let config = root.scratch("docker-config");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({ "auths": { "127.0.0.1:5001": { "auth": encoded } } }).to_string(),
    )
    .unwrap();
    let pulled = apply(&root, &dockerd, &profile)
        .env("DOCKER_CONFIG", &config)
        .args(["-v"])
        .run();
    pulled.code(0);
    assert!(dockerd.exists("image", image));
    let transcript = pulled.transcript();
    assert!(
        transcript.contains("registry credentials for `127.0.0.1:5001` from"),
        "-v says where they came from: {transcript}"
    );
    for secret in [PASSWORD, encoded.as_str()] {
        assert!(!transcript.contains(secret), "{transcript}");
    }

    // A `credsStore`: `docker-credential-NAME get`, told the registry on stdin, answers.
    dockerd.docker(["rm", "--force", "berth-test-private"]);
    dockerd.docker(["image", "rm", image]);
    let helpers = root.scratch("credential-helpers");
    crate::harness::write_executable(
        &helpers,
        "docker-credential-berth-test",
        &format!(
            "#!/bin/sh\n[ \"$1\" = get ] && [ \"$(cat)\" = 127.0.0.1:5001 ] || exit 1\necho '{{\"ServerURL\":\"127.0.0.1:5001\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
        ),
    );
    std::fs::write(config.join("config.json"), r#"{"credsStore":"berth-test"}"#).unwrap();
    let helped = apply(&root, &dockerd, &profile)
        .env("DOCKER_CONFIG", &config)
        .path_first(&helpers)
        .args(["-v"])
        .run();
    helped.code(0);
    assert!(dockerd.exists("image", image));
    let transcript = helped.transcript();
    assert!(
        transcript.contains("from `docker-credential-berth-test`"),
        "{transcript}"
    );
    assert!(!transcript.contains(PASSWORD), "{transcript}");
    for name in ["private", "registry-auth"] {
        let _ = dockerd.docker_unchecked(["rm", "--force", &format!("berth-test-{name}")]);
    }
}
