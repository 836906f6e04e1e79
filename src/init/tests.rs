use super::*;
use crate::{
    profile::{embedded_text, source::TomlFile},
    resource::profile::Profile,
};

const TOPOLOGIES: [Topology; 5] = [
    Topology::Dind,
    Topology::DindTls,
    Topology::Socket,
    Topology::DindService,
    Topology::DindSysbox,
];

fn request(topology: Topology, url: Option<&str>) -> InitRequest {
    InitRequest {
        topology,
        url: url.map(str::to_owned),
        runner: "ci-1".into(),
    }
}

/// The topology's embedded profile with the rendered site.toml over it.
fn resolved(topology: Topology, site: &str) -> Result<Profile, String> {
    let name = topology.profile_name();
    Profile::from_sources(
        vec![name.into(), "site".into()],
        &[
            TomlFile::new(name, embedded_text(name).expect("embedded")),
            TomlFile::new("site.toml", site),
        ],
    )
    .map_err(|error| error.problem().to_string())
}

#[test]
fn every_topologys_site_declares_one_runner_over_its_profile_without_warnings() {
    for topology in TOPOLOGIES {
        let site = render_site(&request(topology, Some("https://gitlab.example.com"))).unwrap();
        let profile = resolved(topology, &site)
            .unwrap_or_else(|error| panic!("{}: {error}\n{site}", topology.profile_name()));
        assert!(
            profile.warnings.is_empty(),
            "{}: {:?}",
            topology.profile_name(),
            profile.warnings
        );
        let [runner] = profile.runner.runners.as_slice() else {
            panic!("one runner: {:?}", profile.runner.runners);
        };
        assert_eq!(runner.name, "ci-1");
        assert_eq!(runner.url, "https://gitlab.example.com");
        assert_eq!(runner.token.file().to_string(), "/etc/berth/tokens/ci-1");
        let docker = runner.settings["docker"].as_table().unwrap();
        assert_eq!(docker["image"].as_str(), Some("docker:27"));
        let privileged = docker["privileged"].as_bool().unwrap();
        assert_eq!(privileged, topology == Topology::DindService);
        // Every setting comes with its why.
        assert!(site.contains("# Socket binding") || topology == Topology::DindService);
        assert!(site.contains(&format!("[\"{}\", \"site\"]", topology.profile_name())));
    }
}

#[test]
fn the_url_replaces_the_placeholder_and_keeps_its_comment_and_alignment() {
    let site = render_site(&request(Topology::Dind, Some("https://git.corp.example"))).unwrap();
    assert!(
        site.contains("# The GitLab instance the runner was created on.\nurl        = \"https://git.corp.example\"\n"),
        "{site}"
    );
    assert!(site.contains("token_file = \"/etc/berth/tokens/ci-1\"\n"));
    assert!(site.contains("sudo install -m 0600 /dev/null /etc/berth/tokens/ci-1"));
    assert!(!site.contains("RUNNER"), "{site}");
}

#[test]
fn without_a_url_the_placeholder_is_refused_at_its_line() {
    let site = render_site(&request(Topology::Dind, None)).unwrap();
    let error = resolved(Topology::Dind, &site).unwrap_err();
    let line = site
        .lines()
        .position(|line| line.starts_with("url "))
        .unwrap()
        + 1;
    assert!(
        error.starts_with(&format!(
            "site.toml:{line}:1: key `runners.ci-1.url`: `{PLACEHOLDER_URL}` is a placeholder"
        )),
        "{error}"
    );
}

#[test]
fn berth_toml_names_the_topology_then_site() {
    for topology in TOPOLOGIES {
        let text = render_berth_toml(topology);
        assert!(names_these_profiles(&text, topology), "{text}");
        assert!(text.starts_with("# berth's settings for this host"));
    }
    assert!(!names_these_profiles(
        "profiles = [\"dind\"]\n",
        Topology::Dind
    ));
}

#[test]
fn a_runner_name_must_make_a_token_file_name() {
    for bad in ["", "a/b", "..", ".hidden", "with space"] {
        assert!(check_runner_name(bad).is_err(), "{bad:?}");
    }
    check_runner_name("docker-runner_2.ci").unwrap();
}
