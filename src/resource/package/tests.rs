//! The unit tables of `package/docker`: os-release, families, the diff.
use super::*;

const BOOKWORM: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
const MINT: &str = "NAME=\"Linux Mint\"\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_CODENAME=wilma\nUBUNTU_CODENAME=noble\n";
const ROCKY: &str = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";

fn os(text: &str) -> OsRelease {
    OsRelease::parse(text)
}

#[test]
fn os_release_decides_the_family() {
    let cases = [
        (BOOKWORM, Some(Family::Debian)),
        ("ID=ubuntu\nID_LIKE=debian\n", Some(Family::Debian)),
        (MINT, Some(Family::Debian)),
        ("ID=fedora\n", Some(Family::Fedora)),
        (ROCKY, Some(Family::RedHat)),
        (
            "ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\n",
            Some(Family::RedHat),
        ),
        ("ID=rhel\nID_LIKE=\"fedora\"\n", Some(Family::RedHat)),
        ("ID=alpine\n", None),
        ("ID=arch\n", None),
    ];
    for (text, family) in cases {
        assert_eq!(os(text).family(), family, "{text}");
    }
    let mint = os(MINT);
    assert_eq!(mint.id, "linuxmint");
    assert_eq!(mint.id_like, ["ubuntu", "debian"]);
    assert_eq!(mint.ubuntu_codename.as_deref(), Some("noble"));
}

#[test]
fn each_family_installs_its_own_docker() {
    let packages = |source, text| install_for(source, &os(text)).map(|i| i.packages);
    assert_eq!(
        packages(InstallSource::Distro, BOOKWORM),
        Ok(vec!["docker.io", "ca-certificates"])
    );
    assert_eq!(
        packages(InstallSource::Distro, "ID=fedora\n"),
        Ok(vec!["moby-engine"])
    );
    assert_eq!(packages(InstallSource::Distro, ROCKY), Ok(vec!["docker"]));
    assert_eq!(
        packages(InstallSource::DockerCe, BOOKWORM),
        Ok(vec!["docker-ce", "docker-ce-cli", "containerd.io"])
    );
    let unknown = install_for(InstallSource::Distro, &os("ID=alpine\n")).unwrap_err();
    assert!(unknown.contains("`alpine`"), "{unknown}");
    assert!(unknown.contains("install = false"), "{unknown}");
}

#[test]
fn docker_ce_names_dockers_repository_for_the_release() {
    let Some(Repository::Apt { key_url, sources }) =
        install_for(InstallSource::DockerCe, &os(MINT))
            .unwrap()
            .repository
    else {
        panic!("an apt repository");
    };
    assert_eq!(key_url, "https://download.docker.com/linux/ubuntu/gpg");
    assert!(sources.contains("URIs: https://download.docker.com/linux/ubuntu\nSuites: noble\nComponents: stable\nSigned-By: /etc/apt/keyrings/docker.asc\n"), "{sources}");
    assert_eq!(
        install_for(InstallSource::DockerCe, &os(ROCKY))
            .unwrap()
            .repository,
        Some(Repository::Dnf {
            repo_url: "https://download.docker.com/linux/centos/docker-ce.repo".into()
        })
    );
    let no_codename = install_for(InstallSource::DockerCe, &os("ID=debian\n")).unwrap_err();
    assert!(no_codename.contains("VERSION_CODENAME"), "{no_codename}");
}

fn state(text: Option<&str>, installed: &[&str], docker_present: bool) -> PackageState {
    PackageState {
        docker_present,
        os: text.map(os),
        installed: installed.iter().map(|name| (*name).to_owned()).collect(),
        repository_present: false,
        apt_lists: true,
        machine_root: true,
    }
}

fn planned(source: InstallSource, observed: &PackageState) -> Vec<(String, Option<String>)> {
    DockerPackage::new(source, false)
        .diff(observed, &Earlier::default())
        .changes
        .into_iter()
        .map(|(change, _)| (change.detail, change.refused))
        .collect()
}

#[test]
fn only_what_is_missing_is_installed_and_a_present_docker_is_left() {
    let distro = InstallSource::Distro;
    assert_eq!(
        planned(distro, &state(Some(BOOKWORM), &[], false)),
        [("docker.io ca-certificates".to_owned(), None)]
    );
    assert_eq!(
        planned(distro, &state(Some(BOOKWORM), &["ca-certificates"], false)),
        [("docker.io".to_owned(), None)]
    );
    assert_eq!(
        planned(
            distro,
            &state(Some(BOOKWORM), &["docker.io", "ca-certificates"], false)
        ),
        []
    );
    // Installed some other way (docker-ce, by hand): never swapped, whatever `install` says.
    for source in [distro, InstallSource::DockerCe, InstallSource::Never] {
        assert_eq!(planned(source, &state(Some(BOOKWORM), &[], true)), []);
        assert_eq!(planned(source, &state(None, &[], true)), []);
    }
}

#[test]
fn install_false_or_an_unknown_os_refuses_with_the_way_out() {
    let refusal = |source, observed: &PackageState| {
        let planned = planned(source, observed);
        assert_eq!(planned.len(), 1);
        planned[0].1.clone().expect("refused")
    };
    let never = refusal(InstallSource::Never, &state(Some(BOOKWORM), &[], false));
    assert!(never.contains("`[docker] install = false`"), "{never}");
    assert!(never.contains("apt-get install docker.io"), "{never}");
    let alpine = refusal(
        InstallSource::Distro,
        &state(Some("ID=alpine\n"), &[], false),
    );
    assert!(
        alpine.contains("`alpine` (the ID in /etc/os-release)"),
        "{alpine}"
    );
    let no_release = refusal(InstallSource::Distro, &state(None, &[], false));
    assert!(no_release.contains("/etc/os-release"), "{no_release}");
    let mut elsewhere = state(Some(BOOKWORM), &[], false);
    elsewhere.machine_root = false;
    let elsewhere = refusal(InstallSource::Distro, &elsewhere);
    assert!(elsewhere.contains("chroot ROOT berth apply"), "{elsewhere}");
}

#[test]
fn lists_are_read_first_only_when_apt_has_none_and_the_repository_once() {
    let op = |observed: &PackageState, source| {
        DockerPackage::new(source, false)
            .diff(observed, &Earlier::default())
            .changes
            .into_iter()
            .next()
            .and_then(|(_, op)| match op {
                Some(PackageOp::Install(op)) => Some(op),
                _ => None,
            })
            .expect("an install")
    };
    let mut bare = state(Some(BOOKWORM), &[], false);
    assert!(!op(&bare, InstallSource::Distro).update_lists);
    bare.apt_lists = false;
    assert!(op(&bare, InstallSource::Distro).update_lists);
    assert!(op(&bare, InstallSource::DockerCe).add_repository);
    bare.repository_present = true;
    assert!(!op(&bare, InstallSource::DockerCe).add_repository);
}

#[test]
fn install_takes_a_source_or_false() {
    #[derive(Debug, Deserialize)]
    struct InstallKey {
        install: InstallSource,
    }
    let parse = |text: &str| toml::from_str::<InstallKey>(text).map(|section| section.install);
    assert_eq!(
        parse("install = \"distro\"").unwrap(),
        InstallSource::Distro
    );
    assert_eq!(
        parse("install = \"docker-ce\"").unwrap(),
        InstallSource::DockerCe
    );
    assert_eq!(parse("install = false").unwrap(), InstallSource::Never);
    assert!(parse("install = true").is_err());
    assert!(parse("install = \"apt\"").is_err());
}

/// A throwaway ed25519 key made for these tests, and its fingerprint.
const TEST_KEY: &str = include_str!("../../../tests/fixtures/keys/test-one.asc");
const TEST_KEY_FINGERPRINT: &str = "8A1A6DF1FCAD72A49AD7959382758A04454220A6";
/// That key and a second one in one file.
const TWO_KEYS: &str = include_str!("../../../tests/fixtures/keys/test-two-keys.asc");

#[test]
fn primary_fingerprints_skip_subkeys() {
    let colons = "pub:-:4096:1:8D81803C0EBFCD88:1487788586:::-:::scESC::::::23::0:\nfpr:::::::::9DC858229FC7DD38854AE2D88D81803C0EBFCD88:\nuid:-::::1487792064::B5A08F01796E7F521861B449372CBA1F6F5D2A6D::Docker Release (CE deb) <docker@docker.com>::::::::::0:\nsub:-:4096:1:7EA0A9C3F273FCD8:1487788586::::::s::::::23:\nfpr:::::::::D3306A018370199E527AE7997EA0A9C3F273FCD8:\n";
    assert_eq!(
        primary_fingerprints(colons),
        [DOCKER_KEY_FINGERPRINT.to_owned()]
    );
}

/// gpg is needed for these (CI installs it); elsewhere a missing one is said, not hidden.
#[expect(clippy::print_stderr, reason = "a skipped test says so")]
fn gpg_available() -> bool {
    if exec::run(&CommandLine::new("gpg", ["--version"])).is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but gpg is not installed"
    );
    eprintln!("SKIPPED: gpg is not installed (Debian: apt-get install gpg)");
    false
}

#[test]
fn dockers_key_is_taken_only_with_the_pinned_fingerprint_and_alone() {
    // Issue 18: the key written to /etc/apt/keyrings/docker.asc signs every Docker package.
    if !gpg_available() {
        return;
    }
    check_fingerprint(TEST_KEY, TEST_KEY_FINGERPRINT).unwrap();
    check_fingerprint(TEST_KEY, &TEST_KEY_FINGERPRINT.to_lowercase()).unwrap();
    let other = check_fingerprint(TEST_KEY, DOCKER_KEY_FINGERPRINT).unwrap_err();
    assert_eq!(
        other.to_string(),
        format!(
            "the key's fingerprint is {TEST_KEY_FINGERPRINT}, not Docker's published {DOCKER_KEY_FINGERPRINT}"
        )
    );
    // The right key with another beside it would make apt trust the other one too.
    let two = check_fingerprint(TWO_KEYS, TEST_KEY_FINGERPRINT).unwrap_err();
    assert!(two.to_string().starts_with("it holds 2 keys ("), "{two}");
    let none = check_fingerprint("<html>not a key</html>", DOCKER_KEY_FINGERPRINT).unwrap_err();
    assert!(
        format!("{none:#}").contains("gpg could not read the key")
            || none.to_string() == "it holds no OpenPGP public key",
        "{none:#}"
    );
}
