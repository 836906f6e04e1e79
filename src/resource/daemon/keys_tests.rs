//! Table tests for the daemon.json key table, the value shapes and the mirror rules.

use super::*;

fn value(toml_value: &str) -> toml::Value {
    let table: toml::Table = toml::from_str(&format!("v = {toml_value}")).unwrap();
    table["v"].clone()
}

fn problem(key: &str, toml_value: &str, version: Option<DockerdVersion>) -> KeyProblem {
    check(key, &value(toml_value), version)
        .expect_err(&format!("`{key} = {toml_value}` should be refused"))
}

const V20_10: Option<DockerdVersion> = Some(v(20, 10));
const V24_0: Option<DockerdVersion> = Some(v(24, 0));
const V28_2: Option<DockerdVersion> = Some(v(28, 2));

#[test]
fn versions_parse_from_real_dockerd_output() {
    let cases = [
        (
            "Docker version 20.10.24+dfsg1, build 297e128",
            Some(v(20, 10)),
        ),
        ("Docker version 28.2.2, build e6534b4", Some(v(28, 2))),
        ("Docker version 24.0.7, build 311b9ff\n", Some(v(24, 0))),
        ("Docker version 29.0.0-rc.1, build 1234567", Some(v(29, 0))),
        ("28.5.1", Some(v(28, 5))),
        ("Docker version , build x", None),
        ("dockerd: command not found", None),
        ("", None),
    ];
    for (output, expected) in cases {
        assert_eq!(DockerdVersion::parse(output), expected, "{output:?}");
    }
    assert_eq!(v(20, 10).to_string(), "20.10");
    assert_eq!(v(19, 3).to_string(), "19.03");
    assert_eq!(v(24, 0).to_string(), "24.0");
}

#[test]
fn every_shape_check_refuses_with_its_message() {
    let cases: &[(&str, &str, &str)] = &[
        ("storage-driver", "2", "must be a string"),
        ("storage-driver", "\"\"", "must not be empty"),
        ("log-driver", "true", "must be a string"),
        ("log-level", "[]", "must be a string"),
        ("default-cgroupns-mode", "1", "must be a string"),
        ("bip", "\"\"", "must not be empty"),
        ("group", "0", "must be a string"),
        (
            "data-root",
            "\"var/lib/docker\"",
            "`var/lib/docker` must be an absolute path",
        ),
        (
            "exec-root",
            "\"run/docker\"",
            "`run/docker` must be an absolute path",
        ),
        ("pidfile", "\"\"", "`` must be an absolute path"),
        (
            "registry-mirrors",
            "\"https://m.example\"",
            "must be a list of URLs",
        ),
        ("registry-mirrors", "[1]", "must be a list of URLs"),
        (
            "insecure-registries",
            "\"r.example\"",
            "must be a list of strings",
        ),
        ("labels", "[1]", "must be a list of strings"),
        ("hosts", "\"fd://\"", "must be a list of strings"),
        ("dns", "\"1.1.1.1\"", "must be a list of strings"),
        ("dns-search", "[true]", "must be a list of strings"),
        ("dns-opts", "{}", "must be a list of strings"),
        (
            "exec-opts",
            "\"native.cgroupdriver=systemd\"",
            "must be a list of strings",
        ),
        ("storage-opts", "[[]]", "must be a list of strings"),
        ("mtu", "67", "must be a whole number from 68 to 65535"),
        ("mtu", "65536", "must be a whole number from 68 to 65535"),
        ("mtu", "\"1500\"", "must be a whole number from 68 to 65535"),
        (
            "max-concurrent-downloads",
            "0",
            "must be a whole number of at least 1",
        ),
        (
            "max-concurrent-uploads",
            "-1",
            "must be a whole number of at least 1",
        ),
        (
            "max-download-attempts",
            "1.5",
            "must be a whole number of at least 1",
        ),
        (
            "shutdown-timeout",
            "\"15\"",
            "must be a whole number of at least 1",
        ),
        ("debug", "\"true\"", "must be true or false"),
        ("live-restore", "1", "must be true or false"),
        ("ipv6", "\"no\"", "must be true or false"),
        ("iptables", "0", "must be true or false"),
        ("ip-forward", "[]", "must be true or false"),
        ("ip-masq", "\"\"", "must be true or false"),
        ("userland-proxy", "1", "must be true or false"),
        ("experimental", "\"yes\"", "must be true or false"),
        ("icc", "0", "must be true or false"),
        ("selinux-enabled", "1", "must be true or false"),
        (
            "log-opts",
            "[\"max-size=10m\"]",
            "must be a table of strings",
        ),
    ];
    for (key, toml_value, message) in cases {
        assert_eq!(
            problem(key, toml_value, None),
            KeyProblem::new(*message),
            "{key} = {toml_value}"
        );
    }
    let log_opts = problem("log-opts", "{ max-size = \"10m\", max-file = 3 }", None);
    assert_eq!(
        log_opts,
        KeyProblem::at_key(
            "max-file",
            "must be a string: dockerd reads every log option as text, write `max-file = \"3\"`"
        )
    );
}

#[test]
fn well_shaped_values_pass() {
    let cases: &[(&str, &str)] = &[
        ("storage-driver", "\"overlay2\""),
        ("data-root", "\"/var/lib/docker\""),
        (
            "registry-mirrors",
            "[\"https://m.example\", \"http://10.0.0.1:5000/\"]",
        ),
        ("registry-mirrors", "[]"),
        ("insecure-registries", "[\"r.example:5000\"]"),
        ("mtu", "1450"),
        ("max-concurrent-downloads", "3"),
        ("debug", "true"),
        ("log-opts", "{ max-size = \"50m\", max-file = \"3\" }"),
        (
            "default-address-pools",
            "[{ base = \"10.10.0.0/16\", size = 24 }]",
        ),
        ("features", "{ buildkit = true }"),
    ];
    for (key, toml_value) in cases {
        for version in [None, V20_10, V28_2] {
            assert_eq!(
                check(key, &value(toml_value), version),
                Ok(()),
                "{key} = {toml_value} on {version:?}"
            );
        }
    }
}

#[test]
fn unknown_keys_are_refused_with_the_key_probably_meant() {
    let cases: &[(&str, &str)] = &[
        (
            "registry-mirror",
            "`registry-mirror` is not a daemon.json key; did you mean `registry-mirrors`?",
        ),
        (
            "insecure-registry",
            "`insecure-registry` is not a daemon.json key; did you mean `insecure-registries`?",
        ),
        (
            "storage-opt",
            "`storage-opt` is not a daemon.json key; did you mean `storage-opts`?",
        ),
        (
            "log_driver",
            "`log_driver` is not a daemon.json key; did you mean `log-driver`?",
        ),
        (
            "Live-Restore",
            "`Live-Restore` is not a daemon.json key; did you mean `live-restore`?",
        ),
        (
            "storage-drvier",
            "`storage-drvier` is not a daemon.json key; did you mean `storage-driver`?",
        ),
        (
            "add-runtime",
            "`add-runtime` is not a daemon.json key; did you mean `runtimes`?",
        ),
        (
            "containerd-plugins-namespace",
            "`containerd-plugins-namespace` is not a daemon.json key; did you mean `containerd-plugin-namespace`?",
        ),
        (
            "no-such-option",
            "`no-such-option` is not a daemon.json key dockerd 20.10 to 29.7 knows",
        ),
        (
            "http-proxy",
            "`http-proxy` is not a top-level daemon.json key: it goes in `proxies` (`[docker.daemon.proxies]`, dockerd 23.0 on)",
        ),
    ];
    for (key, message) in cases {
        assert_eq!(problem(key, "true", None).message, *message, "{key}");
    }
    assert_eq!(
        problem("bogus", "true", V28_2).message,
        "`bogus` is not a daemon.json key dockerd 28.2 knows"
    );
    // Two letters are not a typo of `ip`.
    assert!(problem("xy", "true", None).message.ends_with("knows"));
}

#[test]
fn keys_are_gated_by_the_dockerd_version() {
    assert_eq!(
        problem("default-network-opts", "{}", V20_10).message,
        "`default-network-opts` is a daemon.json key known only from dockerd 24.0; this host has 20.10"
    );
    assert_eq!(
        problem("min-api-version", "\"1.24\"", V28_2).message,
        "`min-api-version` is a daemon.json key known only from dockerd 29.0; this host has 28.2"
    );
    assert_eq!(
        problem("proxies", "{}", V20_10).message,
        "`proxies` is a daemon.json key known only from dockerd 23.0; this host has 20.10"
    );
    assert_eq!(
        problem("graph", "\"/var/lib/docker\"", V24_0).message,
        "`graph` is a daemon.json key dockerd reads only before 23.0; this host has 24.0; write `data-root`"
    );
    assert_eq!(
        problem("api-cors-header", "\"*\"", V28_2).message,
        "`api-cors-header` is a daemon.json key dockerd reads only before 28.0; this host has 28.2"
    );
    for (key, toml_value) in [
        ("graph", "\"/var/lib/docker\""),
        ("default-network-opts", "{}"),
        ("min-api-version", "\"1.24\""),
        ("default-stop-timeout", "10"),
    ] {
        assert_eq!(check(key, &value(toml_value), None), Ok(()), "{key}");
    }
    assert_eq!(check("graph", &value("\"/g\""), V20_10), Ok(()));
    assert_eq!(check("default-network-opts", &value("{}"), V24_0), Ok(()));
    assert!(known_in("features", v(20, 10)));
    assert!(known_in("oom-score-adjust", v(24, 0)));
    assert!(!known_in("oom-score-adjust", v(25, 0)));
    assert!(known_in("nri-opts", v(30, 1)), "newer than the table");
    assert!(
        known_in("storage-driver", v(19, 3)),
        "older is read as 20.10"
    );
    assert!(!known_in("registry-mirror", v(28, 2)));
}

#[test]
fn suggestions_follow_the_version() {
    assert_eq!(
        problem("bip66", "\"x\"", V20_10).message,
        "`bip66` is not a daemon.json key; did you mean `bip`?"
    );
    assert_eq!(
        problem("bip66", "\"x\"", V28_2).message,
        "`bip66` is not a daemon.json key; did you mean `bip6`?"
    );
}

#[test]
fn mirrors_are_checked_as_dockerd_checks_them() {
    let refused: &[(&str, Option<DockerdVersion>, &str)] = &[
        (
            "mirror.example.com",
            None,
            "`mirror.example.com` is not an http(s) URL: dockerd wants the scheme, e.g. `https://mirror.example.com`",
        ),
        (
            "mirror.example.com:5000",
            None,
            "`mirror.example.com:5000` is not an http(s) URL: dockerd wants the scheme, e.g. `https://mirror.example.com:5000`",
        ),
        (
            "ftp://mirror.example",
            None,
            "`ftp://mirror.example` is not an http(s) URL: dockerd takes only `https://` and `http://` mirrors, not `ftp://`",
        ),
        ("https://", None, "`https://` has no host"),
        (
            "https://mirror.example/v2",
            None,
            "`https://mirror.example/v2` has a path: dockerd before 24.0.8 refuses a mirror URL with a path other than `/` (paths are accepted from dockerd 25.0)",
        ),
        (
            "https://mirror.example/v2/",
            V24_0,
            "`https://mirror.example/v2/` has a path: dockerd 24.0 refuses a mirror URL with a path other than `/` (paths are accepted from dockerd 25.0)",
        ),
        (
            "https://mirror.example/?x=1",
            V28_2,
            "`https://mirror.example/` has a query (`?…`) after it: dockerd refuses a mirror URL with a query or fragment",
        ),
        (
            "https://mirror.example#top",
            V28_2,
            "`https://mirror.example` has a fragment (`#…`) after it: dockerd refuses a mirror URL with a query or fragment",
        ),
        (
            "https://user:hunter2@mirror.example",
            V28_2,
            "`https://***@mirror.example` has credentials in it: dockerd refuses a user name or password in a mirror URL",
        ),
        (
            "https://user@mirror.example",
            None,
            "`https://***@mirror.example` has credentials in it: dockerd refuses a user name or password in a mirror URL",
        ),
    ];
    for (mirror, version, message) in refused {
        let toml_value = format!("[\"https://ok.example\", {mirror:?}]");
        assert_eq!(
            problem("registry-mirrors", &toml_value, *version),
            KeyProblem::at_index(1, *message),
            "{mirror} on {version:?}"
        );
    }
    for (mirror, version) in [
        ("https://mirror.example", None),
        ("https://mirror.example/", None),
        ("HTTPS://mirror.example", None),
        ("http://10.0.0.1:5000", V20_10),
        ("https://mirror.example/v2/cache", V28_2),
        ("https://[::1]:5000/", None),
    ] {
        let toml_value = format!("[{mirror:?}]");
        assert_eq!(
            check("registry-mirrors", &value(&toml_value), version),
            Ok(()),
            "{mirror} on {version:?}"
        );
    }
}

#[test]
fn a_password_in_a_mirror_never_reaches_the_message() {
    let password = "s3cr3t";
    for mirror in [
        "https://user:s3cr3t@mirror.example",
        "https://user:s3cr3t@mirror.example/v2?x#y",
        "http://user:s3cr3t@mirror.example:5000/path",
        "https://user:s3cr3t/x@mirror.example",
        "https://user:s3cr3t?x@mirror.example",
        "https://user:s3cr3t#x@mirror.example",
        "https://user:p@ss:s3cr3t@mirror.example",
        "user:s3cr3t@mirror.example",
        "ftp://user:s3cr3t@mirror.example",
        "https://s3cr3t@mirror.example",
    ] {
        for version in [None, V20_10, V28_2] {
            let toml_value = format!("[{mirror:?}]");
            let message = problem("registry-mirrors", &toml_value, version).message;
            assert!(!message.contains(password), "{mirror}: {message}");
            assert!(
                message.contains("***@mirror.example"),
                "{mirror}: {message}"
            );
        }
    }
}

#[test]
fn credentials_are_masked_for_printing() {
    let cases = [
        (
            "https://user:pw@mirror.example",
            "https://***@mirror.example",
        ),
        (
            "https://user@mirror.example/v2/",
            "https://***@mirror.example/v2/",
        ),
        ("http://u:p@ss@m.example:5000", "http://***@m.example:5000"),
        ("u:pw@m.example", "***@m.example"),
        ("https://mirror.example/", "https://mirror.example/"),
        ("", ""),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_url_credentials(url), shown, "{url}");
    }
}

#[test]
fn the_table_is_sorted_unique_and_within_its_versions() {
    for pair in KEYS.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} then {}",
            pair[0].name,
            pair[1].name
        );
    }
    for known_key in KEYS {
        assert!(
            known_key.since >= OLDEST && known_key.since <= NEWEST,
            "{}",
            known_key.name
        );
        if let Some(until) = known_key.until {
            assert!(
                known_key.since < until && until <= NEWEST,
                "{}",
                known_key.name
            );
        }
    }
    for (name, other) in OTHER_NAMES {
        assert!(entry(other).is_some(), "{name} -> {other}");
    }
}

/// Issue 12, items 1 and 2: the reload column of the table.
#[test]
fn reloadable_keys_follow_the_dockerd_version() {
    let at = |major, minor| Some(v(major, minor));
    for key in [
        "default-shm-size",
        "default-ipc-mode",
        "default-cgroupns-mode",
        "network-diagnostic-port",
        "registry-mirrors",
        "runtimes",
        "authorization-plugins",
    ] {
        assert!(reloadable_in(key, at(20, 10)), "{key}");
        assert!(reloadable_in(key, None), "{key}");
    }
    assert!(!reloadable_in("features", at(20, 10)));
    assert!(!reloadable_in("features", at(29, 7)));
    assert!(!reloadable_in("features", None));
    assert!(!reloadable_in("nri-opts", at(29, 1)));
    assert!(reloadable_in("nri-opts", at(29, 2)));
    assert!(reloadable_in("default-stop-timeout", at(29, 7)));
    assert!(!reloadable_in("default-stop-timeout", at(28, 5)));
    assert!(reloadable_in("cluster-store", at(20, 10)));
    assert!(!reloadable_in("cluster-store", at(23, 0)), "gone in 23.0");
    assert!(!reloadable_in("mtu", at(29, 7)));
    assert!(!reloadable_in("no-such-key", None));
}
