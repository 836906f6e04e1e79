//! The conventions of a system tool (issue 13, point 9): `--version` with its commit,
//! completions, the man page, journal priorities, `TERM=dumb`, local times in `status`, the
//! metrics monitoring needs, and the timer's refusal to converge a host nobody configured.
//! And the source's own: no import cycle in `src/` beyond a list that only shrinks (issue 19).

use std::{collections::BTreeSet, path::Path, process::Command};

use crate::{
    harness::{BERTH, Root, berth, profile_file, tool_available},
    module_graph::{self, ModuleGraph},
};

/// A profile of files only (overlay persisted, daemon.json): it converges on an empty root,
/// where Docker is not installed.
const FILES_ONLY: &str =
    "[kernel]\nmodules = [\"overlay\"]\n\n[docker.daemon]\nstorage-driver = \"overlay2\"\n";

fn files_only(root: &Root) -> std::path::PathBuf {
    profile_file(&root.scratch("profiles"), "files", FILES_ONLY)
}

#[test]
fn version_names_the_commit_and_its_date() {
    let root = Root::new();
    let run = berth(&root).args(["--version"]).run();
    run.code(0);
    let version = run.stdout.trim_end();
    let rest = version
        .strip_prefix(&format!("berth {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `berth VERSION (COMMIT DATE)`: {version}"));
    let (commit, date) = rest.split_once(' ').unwrap();
    // Built from this checkout: the commit is HEAD's (a tarball build says `unknown`).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success());
    match head {
        Some(head) => {
            assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim());
            assert!(
                date.parse::<jiff::civil::Date>().is_ok(),
                "not a date: {date}"
            );
        }
        None => assert_eq!(rest, "unknown unknown"),
    }
}

#[test]
fn completions_for_bash_parse_and_cover_the_subcommands() {
    let root = Root::new();
    let dir = root.scratch("completions");
    for (shell, marker) in [
        ("bash", "complete -F _berth"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let run = berth(&root).args(["completions", shell]).run();
        run.code(0);
        assert!(run.stdout.contains(marker), "{shell}:\n{}", run.stdout);
        for subcommand in ["plan", "apply", "doctor", "completions"] {
            assert!(run.stdout.contains(subcommand), "{shell}: no {subcommand}");
        }
        std::fs::write(dir.join(shell), &run.stdout).unwrap();
    }
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(dir.join("bash"))
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let unknown = berth(&root).args(["completions", "tcsh"]).run();
    assert_ne!(unknown.code, 0);
}

#[test]
fn the_man_page_renders_with_every_subcommand() {
    let root = Root::new();
    let run = berth(&root).args(["man"]).run();
    run.code(0);
    assert!(
        run.stdout.starts_with(".ie \\n(.g .ds Aq") && run.stdout.contains("\n.TH berth 1 "),
        "{}",
        run.stdout
    );
    let page = root.scratch("man").join("berth.1");
    std::fs::write(&page, &run.stdout).unwrap();
    if !tool_available("man", "apt-get install man-db") {
        return;
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(rendered.status.success());
    let text = String::from_utf8_lossy(&rendered.stdout);
    for heading in [
        "NAME",
        "SYNOPSIS",
        "BERTH PLAN",
        "BERTH APPLY",
        "BERTH DOCTOR",
    ] {
        assert!(text.contains(heading), "no {heading}:\n{text}");
    }
    // The hidden subcommand (this page's source) stays out of it.
    assert!(!text.contains("BERTH MAN"), "{text}");
}

#[test]
fn under_the_journal_each_line_has_its_priority_and_an_error_is_one_entry() {
    let root = Root::new();
    let broken = profile_file(
        &root.join("/work"),
        "broken",
        "[containers.web]\nimage = \"busybox\"\nprivilegd = true\n",
    );
    let run = berth(&root)
        .args(["plan", "-p"])
        .args([&broken])
        .run_under_journal();
    run.code(1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one entry:\n{}", run.stderr);
    assert!(
        lines[0].starts_with("<3>error: invalid profile `[ROOT]/work/broken.toml`: "),
        "{}",
        run.stderr
    );
    assert!(lines[0].contains("privilegd"), "{}", run.stderr);

    // Warnings and info lines get theirs; the plan on stdout stays as it is.
    let run = berth(&root)
        .args(["plan", "-v", "-p"])
        .args([files_only(&root)])
        .run_under_journal();
    run.code(2);
    assert!(
        run.stderr.lines().all(|line| line.starts_with("<7>debug: ")
            || line.starts_with("<6>")
            || line.starts_with("<4>warning: ")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("<7>debug: "), "{}", run.stderr);
    assert!(!run.stdout.contains('<'), "{}", run.stdout);

    // Not the journal's stream (a redirected child inherits the variable, not the stream):
    // plain lines, and the error with its causes on lines of their own.
    let run = berth(&root)
        .env("JOURNAL_STREAM", "1:1")
        .args(["plan", "-p"])
        .args([&broken])
        .run();
    run.code(1);
    assert!(run.stderr.starts_with("error: invalid profile"));
    assert!(run.stderr.contains("\n  caused by: "), "{}", run.stderr);
}

/// Runs berth with stdout on a pseudo-terminal (`script`), with `TERM` as given.
fn plan_on_a_terminal(root: &Root, term: &str) -> String {
    let command = format!(
        "{BERTH} --root {} plan -p {}",
        root.path().display(),
        files_only(root).display()
    );
    let output = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", term)
        .env("DOCKER_HOST", "unix:///nonexistent/berth-test/docker.sock")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn term_dumb_means_no_colour_on_a_terminal() {
    if !tool_available("script", "apt-get install bsdutils") {
        return;
    }
    let root = Root::new();
    let coloured = plan_on_a_terminal(&root, "xterm");
    assert!(coloured.contains('\u{1b}'), "{coloured:?}");
    let dumb = plan_on_a_terminal(&root, "dumb");
    assert!(!dumb.contains('\u{1b}'), "{dumb:?}");
    assert!(dumb.contains("Plan: "), "{dumb:?}");
}

#[test]
fn the_action_column_lines_up_in_colour_as_in_plain_text() {
    let root = Root::new();
    let strip = |text: &str| {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let plain = berth(&root).args(["plan", "--color", "never"]).run();
    let coloured = berth(&root).args(["plan", "--color", "always"]).run();
    assert!(plain.stdout.contains("package/docker "), "{}", plain.stdout);
    assert!(coloured.stdout.contains('\u{1b}'));
    assert_eq!(strip(&coloured.stdout), plain.stdout);
}

#[test]
fn a_unit_started_apply_or_watch_refuses_a_host_whose_berth_toml_names_no_profiles() {
    let root = Root::new();
    let before = root.snapshot_all();
    let run = berth(&root).args(["apply", "--from-timer"]).run();
    run.code(1);
    insta::assert_snapshot!(run.stderr, @"error: berth's units converge only a host whose `/etc/berth/berth.toml` names its profiles, and it names none: write the site profile (or run `berth init`), list it as `profiles = [...]` in `/etc/berth/berth.toml`, review `berth plan`, then `sudo berth apply`");
    assert_eq!(root.snapshot_all(), before, "the host is unchanged");
    // berth-watch.service passes it too: the watch does not start, so nothing converges.
    let watch = berth(&root).args(["watch", "--from-timer"]).run();
    watch.code(1);
    assert!(watch.stderr.contains("names none"), "{}", watch.stderr);
    assert_eq!(root.snapshot_all(), before, "the host is unchanged");

    root.write(
        "/etc/berth/berth.toml",
        "# profiles = [\"dind\", \"site\"]\nprofiles = []\n",
    );
    let before = root.snapshot_all();
    berth(&root).args(["apply", "--from-timer"]).run().code(1);
    assert_eq!(root.snapshot_all(), before, "the host is unchanged");

    // Named: the timer converges.
    root.write("/etc/berth/profiles/files.toml", FILES_ONLY);
    root.write("/etc/berth/berth.toml", "profiles = [\"files\"]\n");
    berth(&root).args(["apply", "--from-timer"]).run().code(0);
    assert!(root.exists("/etc/docker/daemon.json"));
}

#[test]
fn metrics_keep_the_last_success_through_a_failed_run_and_name_the_build() {
    let root = Root::new();
    let metrics_file = ["--metrics-file", "/var/lib/node-exporter/berth.prom"];
    berth(&root)
        .args(["apply", "-p"])
        .args([files_only(&root)])
        .args(metrics_file)
        .run()
        .code(0);
    let converged = berth(&root).args(["status", "--json"]).run().json();
    let started = converged["last_run"]["started_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let seconds = format!(
        "{}",
        started.as_millisecond() as f64 / 1000.0 // as the metrics file writes it
    );
    let sample = |metrics: &str, name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}:\n{metrics}"))
            .to_owned()
    };
    let metrics = root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert_eq!(
        sample(&metrics, "berth_last_success_timestamp_seconds").parse::<f64>(),
        seconds.parse::<f64>()
    );
    assert!(
        metrics.contains(&format!(
            "\nberth_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );

    let broken = profile_file(&root.join("/work"), "broken", "nonsense = 1\n");
    berth(&root)
        .args(["apply", "-p"])
        .args([&broken])
        .args(metrics_file)
        .run()
        .code(1);
    let metrics = root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert_eq!(sample(&metrics, "berth_last_run_success"), "0");
    assert_eq!(
        sample(&metrics, "berth_last_success_timestamp_seconds").parse::<f64>(),
        seconds.parse::<f64>(),
        "the failed run keeps the last success"
    );
    let status = berth(&root).env("TZ", "Asia/Tokyo").args(["status"]).run();
    status.code(1);
    let local = started
        .to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S JST")
        .to_string();
    assert!(
        status.stdout.contains(&format!("converged: {local} (")),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.lines().next().unwrap().contains(" JST (")
            && status.stdout.contains(" seconds ago)"),
        "{}",
        status.stdout
    );
}

/// The imports that close the import cycles `src/` still has (files relative to `src/`, the
/// importer first), each with why it is there. The list only shrinks: an import that no longer
/// closes a cycle must leave it, and any other cycle fails. Empty since part 2 of issue 19:
/// `src/` has no import cycle, and none may come back.
const KNOWN_BACK_EDGES: &[(&str, &str, &str)] = &[];

#[test]
fn src_has_no_import_cycle_beyond_the_known_back_edges() {
    let graph = ModuleGraph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // A parser that found nothing would find no cycle either.
    assert!(graph.files.len() > 50, "{:?}", graph.files);
    assert!(
        graph
            .edges
            .contains_key(&("engine.rs".to_owned(), "plan.rs".to_owned())),
        "engine.rs imports plan.rs"
    );
    let mut problems = Vec::new();
    for (from, to, _) in KNOWN_BACK_EDGES {
        if !graph.closes_a_cycle(from, to) {
            problems.push(format!(
                "`{from} -> {to}` no longer closes an import cycle: take it off KNOWN_BACK_EDGES in tests/it/conventions.rs (the list only shrinks)"
            ));
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN_BACK_EDGES
        .iter()
        .map(|(from, to, _)| ((*from).to_owned(), (*to).to_owned()))
        .collect();
    for cycle in graph.cycles(&known) {
        let edges: Vec<String> = cycle.iter().map(ToString::to_string).collect();
        problems.push(format!(
            "an import cycle in src/: {}; remove one of these imports (move what both need below them, or pass it in): no new back-edge is allowed",
            edges.join(", then ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The kinds of `src/resource/` stand side by side (docs/ARCHITECTURE.md): what they share sits
/// below them (`docker_object`, `journal`, `src/docker/`) or above them (`mod.rs`, `profile`,
/// `prefetch`), and a kind imports another kind only where this list says why. Like the back
/// edges, the list only shrinks.
const KIND_TO_KIND: &[(&str, &str, &str)] = &[
    (
        "resource/container/mod.rs",
        "resource/daemon/service.rs",
        "depends on `daemon/docker`, named by DaemonService::id",
    ),
    (
        "resource/network/mod.rs",
        "resource/daemon/service.rs",
        "depends on `daemon/docker`, named by DaemonService::id",
    ),
    (
        "resource/volume.rs",
        "resource/daemon/service.rs",
        "depends on `daemon/docker`, named by DaemonService::id",
    ),
    (
        "resource/orphan.rs",
        "resource/daemon/service.rs",
        "depends on `daemon/docker`, named by DaemonService::id",
    ),
    (
        "resource/daemon/service.rs",
        "resource/package/mod.rs",
        "depends on `package/docker`, named by DockerPackage::id (whether Docker was installed is the typed fact Made::DockerInstalled in Earlier)",
    ),
    (
        "resource/daemon/mod.rs",
        "resource/package/mod.rs",
        "[docker] install names the package kind's InstallSource",
    ),
];

/// The kind a module file of `src/resource/` belongs to; `None` for what is not a kind.
fn kind_of(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("resource/")?;
    let kind = rest.split('/').next()?.trim_end_matches(".rs");
    (!matches!(
        kind,
        "mod" | "profile" | "prefetch" | "docker_object" | "journal"
    ))
    .then_some(kind)
}

#[test]
fn a_kind_imports_another_kind_only_where_the_list_says_why() {
    let graph = ModuleGraph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(kind_of("resource/container/drift.rs"), Some("container"));
    assert_eq!(kind_of("resource/docker_object.rs"), None);
    let crossing: Vec<&module_graph::Edge> = graph
        .edges
        .values()
        .filter(|edge| match (kind_of(&edge.from), kind_of(&edge.to)) {
            (Some(from), Some(to)) => from != to,
            _ => false,
        })
        .collect();
    let mut problems: Vec<String> = crossing
        .iter()
        .filter(|edge| {
            !KIND_TO_KIND
                .iter()
                .any(|(from, to, _)| edge.from == *from && edge.to == *to)
        })
        .map(|edge| format!("a kind imports another: {edge}; pass what it needs as a fact (docs/ARCHITECTURE.md)"))
        .collect();
    for (from, to, _) in KIND_TO_KIND {
        if !crossing
            .iter()
            .any(|edge| edge.from == *from && edge.to == *to)
        {
            problems.push(format!(
                "`{from} -> {to}` is gone: take it off KIND_TO_KIND in tests/it/conventions.rs (the list only shrinks)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `src/host/` is the lowest layer (docs/ARCHITECTURE.md): what it needs from above, such as
/// how often a long run reports, the caller passes in.
#[test]
fn host_imports_nothing_of_berth_outside_it() {
    let graph = ModuleGraph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let upward: Vec<String> = graph
        .edges
        .values()
        .filter(|edge| edge.from.starts_with("host/") && !edge.to.starts_with("host/"))
        .map(ToString::to_string)
        .collect();
    assert!(upward.is_empty(), "host/ imports from above it: {upward:?}");
}

#[test]
fn the_cycle_check_reads_paths_as_rustc_does_and_names_a_cycle_by_its_imports() {
    let src = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = src.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "//! crate::c::X in a comment imports nothing\nmod a;\nmod b;\nmod c;\npub struct X;\npub fn run() {\n    let _ = \"crate::c::X\";\n    a::f();\n}\n",
    );
    write(
        "a.rs",
        "mod inner;\nuse inner::Z;\npub struct A;\npub fn f() {}\n",
    );
    write(
        "a/inner.rs",
        "use super::{A, super::b::{self, Thing}};\npub struct Z;\n",
    );
    write(
        "b.rs",
        "pub struct Thing;\nfn g<'a>(x: &'a str) -> char {\n    crate::a::inner::Z;\n    '\"'\n}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    /* crate::c */\n}\n",
    );
    write("c.rs", "use crate::X;\n");
    let graph = ModuleGraph::read(src.path());
    let edges: BTreeSet<(&str, &str)> = graph
        .edges
        .keys()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    // A child naming its parent (a/inner.rs -> a.rs, tests -> b.rs) is no edge; naming the
    // crate root is one.
    assert_eq!(
        edges,
        BTreeSet::from([
            ("lib.rs", "a.rs"),
            ("a.rs", "a/inner.rs"),
            ("a/inner.rs", "b.rs"),
            ("b.rs", "a/inner.rs"),
            ("c.rs", "lib.rs"),
        ])
    );
    let cycles: Vec<Vec<String>> = graph
        .cycles(&BTreeSet::new())
        .iter()
        .map(|cycle| cycle.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(
        cycles,
        [[
            "a/inner.rs -> b.rs (src/a/inner.rs:1)",
            "b.rs -> a/inner.rs (src/b.rs:3)"
        ]]
    );
    assert!(graph.closes_a_cycle("b.rs", "a/inner.rs"));
    assert!(!graph.closes_a_cycle("c.rs", "lib.rs"));
    let allowed = BTreeSet::from([("b.rs".to_owned(), "a/inner.rs".to_owned())]);
    assert!(graph.cycles(&allowed).is_empty());
}

/// "No two types share a name" (docs/ARCHITECTURE.md): a reader who meets `ReplaceIntent` or
/// `Command` knows which one it is. Type aliases and associated types (`type Op = ..`) are
/// names of another kind and not counted.
#[test]
fn no_two_types_in_src_share_a_name() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = ModuleGraph::read(&src);
    let mut declared: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in &graph.files {
        let text = module_graph::blank_out(&std::fs::read_to_string(src.join(file)).unwrap());
        let tokens = module_graph::tokens(&text);
        for pair in tokens.windows(2) {
            let [(keyword, offset), (name, _)] = pair else {
                unreachable!()
            };
            if matches!(*keyword, "struct" | "enum" | "trait" | "union")
                && name.starts_with(|c: char| c.is_ascii_uppercase())
            {
                let line = text[..*offset].matches('\n').count() + 1;
                declared
                    .entry((*name).to_owned())
                    .or_default()
                    .push(format!("src/{file}:{line}"));
            }
        }
    }
    assert!(
        declared.contains_key("ReplaceIntent"),
        "the scan finds types"
    );
    let shared: Vec<String> = declared
        .iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(name, places)| format!("`{name}` at {}", places.join(", ")))
        .collect();
    assert!(
        shared.is_empty(),
        "types that share a name (give each one that says what it is): {}",
        shared.join("; ")
    );
}
