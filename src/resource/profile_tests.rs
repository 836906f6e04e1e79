use super::*;
use crate::{
    host::host_path,
    profile::{DEFAULT_PROFILE, embedded, embedded_text},
};
use serde_json::Value as Json;

/// The one rule (issue 19): the first container, in converge order, that bind-mounts
/// config.toml or its directory runs gitlab-runner; only it gets the directory's mode and
/// restarts for config.toml, whatever else mounts the directory.
#[test]
fn relations_name_one_runner_container_and_each_containers_networks_and_producers() {
    let profile = profile(&[r#"
[runner]
config = "/srv/r/config.toml"
[networks.ci]
[containers.dind]
image = "docker:27-dind"
networks = ["ci", "undeclared"]
volumes = ["certs:/certs"]
[containers.runner]
image = "gitlab/gitlab-runner:v17.11.0"
after = ["dind"]
volumes = ["/srv/r:/etc/gitlab-runner", "certs:/certs:ro"]
[containers.reader]
image = "busybox"
after = ["runner"]
volumes = ["/srv/r/config.toml:/config.toml:ro"]
"#])
    .unwrap();
    let relations = &profile.relations;
    assert_eq!(
        relations.runner_container.as_ref().map(ObjectName::as_str),
        Some("runner")
    );
    let facts = |name: &str| {
        relations
            .containers
            .iter()
            .find(|(known, _)| known.as_str() == name)
            .map(|(_, facts)| facts.clone())
            .unwrap()
    };
    let name = |text: &str| ObjectName::try_from(text.to_owned()).unwrap();
    assert_eq!(facts("dind").networks, vec![name("ci")]);
    assert!(!facts("dind").runs_gitlab_runner);
    let runner = facts("runner");
    assert!(runner.runs_gitlab_runner);
    assert_eq!(runner.producers, vec![(name("dind"), name("certs"))]);
    assert_eq!(
        runner.runner_directory,
        Some(RunnerDirectory {
            path: host_path("/srv/r"),
            mode: 0o700
        })
    );
    let reader = facts("reader");
    assert!(!reader.runs_gitlab_runner && reader.runner_directory.is_none());
    assert!(
        reader.producers.is_empty(),
        "it mounts no volume the runner writes"
    );
}

#[test]
fn declared_names_every_object_and_the_hash_of_each_container_and_network() {
    let profile = profile(&[
        "[networks.ci]\n[containers.app]\nimage = \"i:1\"\nnetworks = [\"ci\"]\nvolumes = [\"data:/data\"]\n",
    ])
    .unwrap();
    let declared = profile.declared();
    // A replacement's set-aside container is declared too: it is no orphan.
    assert_eq!(
        declared.names.containers,
        vec!["app".to_owned(), "app.berth-old".to_owned()]
    );
    assert_eq!(declared.names.networks, vec!["ci".to_owned()]);
    assert_eq!(declared.names.volumes, vec!["data".to_owned()]);
    assert_eq!(
        declared.hashes,
        BTreeMap::from([
            (
                (Kind::Container, profile.containers[0].spec_hash()),
                "app".to_owned()
            ),
            (
                (Kind::Network, profile.networks[0].spec_hash()),
                "ci".to_owned()
            ),
        ])
    );
}

#[test]
fn the_runners_directory_and_writable_bind_sources_are_hostile() {
    let profile = profile(&[
        "[runner]\nconfig = \"/srv/r/config.toml\"\n[containers.app]\nimage = \"i:1\"\nvolumes = [\"/data:/data\", \"/etc/ssl:/etc/ssl:ro\", \"cache:/cache\"]\n",
    ])
    .unwrap();
    assert_eq!(
        profile.hostile_directories(),
        [host_path("/srv/r"), host_path("/data")]
    );
}

fn profile(layers: &[&str]) -> Result<Profile, String> {
    let sources: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(index, text)| TomlFile::new(format!("layer{index}.toml"), *text))
        .collect();
    Profile::from_sources(vec!["t".into()], &sources).map_err(|error| {
        error
            .problems()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the test writes the machine id under a temporary root"
)]
fn the_instance_is_the_profiles_else_the_machine_ids_hmac_and_never_empty() {
    assert_eq!(
        profile(&["instance = \"ci-blue\"\n"]).unwrap().instance,
        Instance {
            label: "ci-blue".into(),
            earlier: None
        }
    );
    let error = profile(&["instance = \"a\\nb\"\n"]).unwrap_err();
    assert!(error.contains("control character"), "{error}");
    let error = profile(&["instance = \" \"\n"]).unwrap_err();
    assert!(
        error.contains("`instance`") && error.contains("must not be empty"),
        "{error}"
    );
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    let refs = [crate::profile::ProfileRef::Name(DEFAULT_PROFILE.to_owned())];
    assert_eq!(load(&refs, &host).unwrap().instance.label, NO_MACHINE_ID);
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    // What `systemd-id128 machine-id --app-specific=d0598ab36e01462894ed1099e13ed3ce`
    // printed for that machine id: the raw id is published nowhere, and still counts.
    assert_eq!(
        load(&refs, &host).unwrap().instance,
        Instance {
            label: "cf22852b4dc14e98ac772f8db7ab3721".into(),
            earlier: Some("0123456789abcdef0123456789abcdef".into()),
        }
    );
}

#[test]
fn every_embedded_profile_is_valid() {
    for (name, text) in embedded() {
        let source = TomlFile::new(name, text);
        Profile::from_sources(vec![name.into()], &[source])
            .unwrap_or_else(|error| panic!("embedded profile `{name}`: {}", error.problem()));
    }
    assert!(
        embedded_text(DEFAULT_PROFILE).is_some(),
        "the default profile is embedded"
    );
}

/// Issue 12, item 9: with `[runners.NAME.docker] host` set, gitlab-runner ignores
/// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, so `dind-tls` plus such a runner gets
/// `tls_verify` and `tls_cert_path` in config.toml to match the container's.
#[test]
fn a_runner_with_a_docker_host_gets_the_containers_tls_settings() {
    let dind_tls = embedded_text("dind-tls").unwrap();
    let runner = "[runners.r]\nurl = \"https://g.example\"\ntoken_file = \"/t\"\nexecutor = \"docker\"\n[runners.r.docker]\nhost = \"tcp://gitlab-dind:2376\"\nimage = \"docker:27\"\n";
    let resolved = profile(&[dind_tls, runner]).unwrap();
    let spec = &resolved.runner.runners[0];
    let docker = spec.settings["docker"].as_table().unwrap();
    assert_eq!(docker["tls_verify"].as_bool(), Some(true));
    assert_eq!(docker["tls_cert_path"].as_str(), Some("/certs/client"));
    assert_eq!(
        spec.runner_image.as_deref(),
        Some("gitlab/gitlab-runner:v17.11.0")
    );
    let elsewhere = runner.replace("tcp://gitlab-dind:2376", "tcp://other:2376");
    let resolved = profile(&[dind_tls, &elsewhere]).unwrap();
    let docker = resolved.runner.runners[0].settings["docker"]
        .as_table()
        .unwrap();
    assert!(!docker.contains_key("tls_verify"));
    assert!(
        resolved.warnings.iter().any(|warning| warning
            .message
            .contains("gitlab-runner ignores the runner container's DOCKER_TLS_VERIFY")),
        "{:?}",
        resolved.warnings
    );
}

#[test]
fn defaults_are_filled_in() {
    let profile = profile(&[""]).unwrap();
    assert_eq!(profile.docker.config, host_path("/etc/docker/daemon.json"));
    assert_eq!(
        profile.docker.restart.to_string(),
        "systemctl restart docker"
    );
    assert_eq!(profile.docker.reload.to_string(), "systemctl reload docker");
    assert!(profile.kernel_modules.is_empty());
}

#[test]
fn later_layers_merge_tables_and_replace_arrays() {
    let profile = profile(&[
        "[kernel]\nmodules = [\"overlay\", \"br_netfilter\"]\n[docker.daemon]\nstorage-driver = \"overlay2\"\nregistry-mirrors = [\"https://a.example\"]\n",
        "[kernel]\nmodules = [\"overlay\"]\n[docker.daemon]\nregistry-mirrors = [\"https://b.example\"]\n",
    ])
    .unwrap();
    assert_eq!(
        profile
            .kernel_modules
            .iter()
            .map(ModuleName::as_str)
            .collect::<Vec<_>>(),
        ["overlay"]
    );
    assert_eq!(
        Json::Object(profile.docker.daemon),
        serde_json::json!({"storage-driver": "overlay2", "registry-mirrors": ["https://b.example"]})
    );
}

#[test]
fn unknown_key_is_located_in_its_layer() {
    let error = profile(&["[docker]\n", "\n[docker]\nrestrat = [\"x\"]\n"]).unwrap_err();
    assert!(
        error.starts_with(
            "layer1.toml:3:1: key `docker.restrat`: unknown key `restrat`; did you mean `restart`?"
        ),
        "{error}"
    );
}

/// Issue 13, item 6: a section's checks all run, so one run reports each of its problems.
#[test]
fn every_problem_of_a_container_is_reported() {
    let error = profile(&[
        "[containers.a1]\nhostname = \"-bad-\"\ncap_add = [\"NET ADMIN\"]\nstop_signal = \"?\"\n",
    ])
    .unwrap_err();
    insta::assert_snapshot!(error, @r"
        layer0.toml:1:13: key `containers.a1`: a container needs an `image`
        layer0.toml:2:1: key `containers.a1.hostname`: `-bad-` is not a hostname (letters, digits and `-`, in dot-separated labels of at most 63 characters)
        layer0.toml:3:1: key `containers.a1.cap_add`: `NET ADMIN` is not a capability (e.g. NET_ADMIN)
        layer0.toml:4:1: key `containers.a1.stop_signal`: `?` is not a signal (e.g. SIGQUIT)
    ");
}

#[test]
fn bad_module_name_is_located() {
    let error = profile(&["[kernel]\nmodules = [\"overlay\", \"no such\"]\n"]).unwrap_err();
    // toml places a conversion error on the whole array, not the element.
    assert!(
        error.starts_with(
            "layer0.toml:2:11: key `kernel.modules`: `no such` is not a kernel module name"
        ),
        "{error}"
    );
}

#[test]
fn empty_command_is_rejected() {
    let error = profile(&["[docker]\nrestart = []\n"]).unwrap_err();
    assert!(
        error.contains("key `docker.restart`: a command is a non-empty list"),
        "{error}"
    );
}

#[test]
fn daemon_values_dockerd_would_reject_are_located_in_the_layer_that_set_them() {
    let error = profile(&[
        "[docker.daemon]\nmtu = 1500\n",
        "[docker.daemon]\nmtu = 10\n",
    ])
    .unwrap_err();
    assert!(
        error.starts_with("layer1.toml:2:1: key `docker.daemon.mtu`: must be a whole number"),
        "{error}"
    );
    let error = profile(&["[docker.daemon.log-opts]\nmax-file = 3\n"]).unwrap_err();
    assert!(
        error.contains("key `docker.daemon.log-opts.max-file`: must be a string"),
        "{error}"
    );
    let error =
        profile(&["[docker.daemon]\nregistry-mirrors = [\"mirror.example.com\"]\n"]).unwrap_err();
    assert!(
        error.contains(
            "key `docker.daemon.registry-mirrors[0]`: `mirror.example.com` is not an http(s) URL"
        ),
        "{error}"
    );
    // Issue 9 case 8: a key dockerd does not know never reaches daemon.json.
    let error =
        profile(&["[docker.daemon]\nregistry-mirror = [\"https://m.example\"]\n"]).unwrap_err();
    assert!(error.starts_with("layer0.toml:2:1: key `docker.daemon.registry-mirror`: `registry-mirror` is not a daemon.json key; did you mean `registry-mirrors`?"), "{error}");
}

#[test]
fn cli_references_tell_names_from_files() {
    assert_eq!(
        ProfileRef::parse_cli("dind"),
        ProfileRef::Name("dind".into())
    );
    assert_eq!(
        ProfileRef::parse_cli("site.toml"),
        ProfileRef::LocalFile("site.toml".into())
    );
    assert_eq!(
        ProfileRef::parse_host("site.toml", &host_path("/etc/berth")),
        Ok(ProfileRef::HostFile(host_path("/etc/berth/site.toml")))
    );
    assert_eq!(
        ProfileRef::parse_host("sites/a.toml", &host_path("/etc/berth")),
        Ok(ProfileRef::HostFile(host_path("/etc/berth/sites/a.toml")))
    );
    for climbing in ["../../x.toml", "profiles/../../etc/x.toml", ".."] {
        let error = ProfileRef::parse_host(climbing, &host_path("/etc/berth")).unwrap_err();
        assert!(error.contains("contains `..`"), "{climbing}: {error}");
    }
}

#[test]
fn the_top_level_mtu_reaches_docker_runners_job_networks() {
    let runner = "[runners.r]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/r\"\nexecutor = \"docker\"\n";
    let resolved = profile(&[&format!("mtu = 1400\n{runner}")]).unwrap();
    let docker = resolved.runner.runners[0].settings["docker"]
        .as_table()
        .unwrap();
    assert_eq!(docker["network_mtu"].as_integer(), Some(1400));
    let error = profile(&[&format!(
        "mtu = 1400\n{runner}[runners.r.docker]\nnetwork_mtu = 1500\n"
    )])
    .unwrap_err();
    assert!(
        error.contains(
            "key `runners.r.docker.network_mtu`: 1500 contradicts the top-level `mtu = 1400`"
        ),
        "{error}"
    );
    let shell = "[runners.s]\nurl = \"https://gitlab.example.com\"\ntoken_file = \"/etc/berth/tokens/s\"\nexecutor = \"shell\"\n";
    let resolved = profile(&[&format!("mtu = 1400\n{shell}")]).unwrap();
    assert!(
        resolved.runner.runners[0].settings.get("docker").is_none(),
        "only docker executors"
    );
}
