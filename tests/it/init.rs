//! The road to a registered runner (issue 10, point 5): `berth init` writes a site layer and
//! berth.toml that validate and, with the token saved and the GitLab stand-in, converge to one
//! registered runner; it never overwrites a file; and a profile without a runner says so in
//! `plan`, `validate` and `doctor`.

use crate::{
    gitlab_server::VERIFY,
    harness::{Root, berth, profile_file, start_gitlab, unprivileged_layer},
    require_dockerd,
};

const GLRT: &str = "glrt-InitRoadToARunner0001";
const SITE: &str = "/etc/berth/profiles/site.toml";
const BERTH_TOML: &str = "/etc/berth/berth.toml";
const NO_RUNNER: &str = "no runner is declared";

/// Saves a token as the next steps say: root only.
fn save_token(root: &Root, runner: &str, token: &str) {
    let path = format!("/etc/berth/tokens/{runner}");
    root.write(&path, &format!("{token}\n"));
    root.chmod(&path, 0o600);
}

#[test]
fn init_writes_a_site_that_validates_and_converges_to_one_registered_runner() {
    let root = Root::new();
    // `concurrent = "auto"` in the site it writes counts this machine's CPUs and memory.
    root.with_overlay_kernel().with_machine(4, 16);
    let dockerd = require_dockerd!(&root);
    dockerd.import_profile_images();
    let gitlab = start_gitlab();
    gitlab.add_runner(GLRT);
    let address = gitlab.url().split("://").nth(1).unwrap().to_owned();

    let init = berth(&root)
        .args(["init", "--url", &gitlab.url(), "--runner", "ci-1"])
        .filter(&address, "[GITLAB]")
        .run();
    init.code(0);
    insta::assert_snapshot!(init.stdout, @r"
    wrote /etc/berth/profiles/site.toml
    wrote /etc/berth/berth.toml

    Next steps:
      1. save the runner's token (glrt-…, from GitLab: Runners → New runner) to `/etc/berth/tokens/ci-1`, readable by root only: `sudo install -m 0600 /dev/null /etc/berth/tokens/ci-1` then `sudoedit /etc/berth/tokens/ci-1`
      2. `berth plan`: what apply will do
      3. `sudo berth apply`: converge the host and register the runner with GitLab
      4. `berth doctor`: check the host end to end, the token with GitLab included
    ");
    assert_eq!(root.mode("/etc/berth/tokens"), 0o700);
    let site = root.read(SITE).unwrap();
    assert!(site.contains("[runners.ci-1.docker]\n"), "{site}");
    // The files parse, and berth.toml alone picks the layers: no -p.
    let validate = berth(&root).args(["validate"]).run();
    validate.code(0);
    assert_eq!(validate.stdout, "valid: dind, site\n");

    save_token(&root, "ci-1", GLRT);
    // The same layers as berth.toml names, and this test's daemon and stand-ins over them.
    let stand_ins = profile_file(
        &root.join("/work"),
        "stand-ins",
        &unprivileged_layer(&["gitlab-dind"]),
    );
    let layers = [
        "dind".into(),
        "site".into(),
        dockerd.layer_file().display().to_string(),
        stand_ins.display().to_string(),
    ];
    let profiles: Vec<&str> = layers
        .iter()
        .flat_map(|layer| ["-p", layer.as_str()])
        .collect();
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(&profiles)
        .run();
    plan.code(2);
    assert!(
        plan.stdout
            .lines()
            .any(|line| line.starts_with("runner/ci-1 ") && line.contains("+ register")),
        "{}",
        plan.stdout
    );
    assert!(!plan.stderr.contains(NO_RUNNER), "{}", plan.stderr);
    berth(&root)
        .docker(&dockerd)
        .args(["apply"])
        .args(&profiles)
        .run()
        .code(0);
    berth(&root).docker(&dockerd).args(&profiles).converged();
    let config = root.read("/srv/gitlab-runner/config.toml").unwrap();
    assert!(
        config.contains("concurrent = 4\n"),
        "four jobs at once on four CPUs with 16 GiB:\n{config}"
    );
    assert_eq!(gitlab.calls(VERIFY), 1, "registered once");
    assert_eq!(
        gitlab.total_calls(),
        1,
        "the second plan asked GitLab nothing"
    );
    let config = root.read("/srv/gitlab-runner/config.toml").unwrap();
    assert_eq!(config.matches("[[runners]]").count(), 1, "{config}");
    assert!(config.contains("name = \"ci-1\""), "{config}");
    assert!(
        config.contains("host = \"tcp://gitlab-dind:2375\""),
        "{config}"
    );
    // The runner container reads that config.toml through its bind-mounted directory.
    let seen = dockerd.docker([
        "exec",
        "gitlab-runner",
        "cat",
        "/etc/gitlab-runner/config.toml",
    ]);
    assert_eq!(seen, config.trim_end());
}

#[test]
fn init_never_overwrites_and_changes_nothing_when_a_file_is_in_the_way() {
    let root = Root::new();
    root.write(SITE, "# mine\n");
    let before = root.snapshot_all();
    let run = berth(&root)
        .args(["init", "--url", "https://gitlab.example.com"])
        .run();
    run.code(1);
    insta::assert_snapshot!(run.stderr, @"error: `/etc/berth/profiles/site.toml` exists; berth init never overwrites a file and changed nothing (edit it, or move it away and run berth init again)");
    assert_eq!(root.snapshot_all(), before, "nothing changed");

    // install.sh's berth.toml names only `dind`: init says what to change, and changes nothing.
    let root = Root::new();
    root.write(BERTH_TOML, "profiles = [\"dind\"]\n");
    let before = root.snapshot_all();
    let run = berth(&root)
        .args(["init", "--url", "https://gitlab.example.com"])
        .run();
    run.code(1);
    insta::assert_snapshot!(run.stderr, @r#"error: `/etc/berth/berth.toml` exists; berth init never overwrites a file and changed nothing: set `profiles = ["dind", "site"]` in it (or move it away), then run berth init again"#);
    assert_eq!(root.snapshot_all(), before, "nothing changed");

    // Once it says so, init writes only site.toml and keeps berth.toml as it is.
    root.write(BERTH_TOML, "profiles = [\"dind\", \"site\"]   # mine\n");
    let run = berth(&root)
        .args(["init", "--url", "https://gitlab.example.com"])
        .run();
    run.code(0);
    assert!(
        run.stdout
            .starts_with("wrote /etc/berth/profiles/site.toml\nkept  /etc/berth/berth.toml"),
        "{}",
        run.stdout
    );
    assert_eq!(
        root.read(BERTH_TOML).unwrap(),
        "profiles = [\"dind\", \"site\"]   # mine\n"
    );
    // And a second init refuses: site.toml is there now.
    let again = berth(&root)
        .args(["init", "--url", "https://gitlab.example.com"])
        .run();
    again.code(1);
}

/// An init killed between its two writes: berth.toml is written first, so what is left is a
/// berth.toml naming the profiles and no site.toml. That state is made here by hand (the fault
/// tools stop berth at a docker call, and init makes none); the next init finishes it.
#[test]
fn an_init_interrupted_between_its_two_files_is_finished_by_the_next() {
    let done = Root::new();
    let args = ["init", "--url", "https://gitlab.example.com"];
    berth(&done).args(args).run().code(0);
    let root = Root::new();
    root.write(BERTH_TOML, &done.read(BERTH_TOML).unwrap());
    let run = berth(&root).args(args).run();
    run.code(0);
    assert_eq!(
        root.read(SITE),
        done.read(SITE),
        "the site profile init writes"
    );
    assert_eq!(root.read(BERTH_TOML), done.read(BERTH_TOML));
    berth(&root).args(["validate"]).run().code(0);
}

#[test]
fn without_a_url_init_writes_a_placeholder_that_validate_refuses_at_its_line() {
    let root = Root::new();
    let init = berth(&root).args(["init", "--topology", "socket"]).run();
    init.code(0);
    assert!(
        init.stdout
            .contains("1. put your GitLab's URL in `/etc/berth/profiles/site.toml`"),
        "{}",
        init.stdout
    );
    let validate = berth(&root).args(["validate"]).run();
    validate.code(1);
    insta::assert_snapshot!(validate.stderr, @r"
    error: invalid profile `/etc/berth/profiles/site.toml`
      caused by: /etc/berth/profiles/site.toml:18:1: key `runners.docker-runner.url`: `https://gitlab.example.invalid` is a placeholder (`berth init` writes it without `--url`): put the URL of the GitLab the runner was created on here
    ");
}

/// Issue 10: the default profile declares no runner; the host then runs a runner container
/// that takes no jobs. `plan`, `validate` and `doctor` each say it once.
#[test]
fn a_profile_without_a_runner_is_told_once_by_plan_validate_and_doctor() {
    let root = Root::new();
    let only = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.contains(NO_RUNNER) || line.contains("berth init --url"))
            // The checklist's column width is the longest check name's: not this test's.
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let plan = berth(&root).args(["plan"]).run();
    // 1: on a temp root the Docker install is refused.
    plan.code(1);
    insta::assert_snapshot!(only(&plan.stderr).join("\n"), @"warning: dind (embedded):65:13: key `containers.gitlab-runner`: no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)");
    assert!(!plan.stdout.contains(NO_RUNNER));
    let validate = berth(&root).args(["validate"]).run();
    validate.code(0);
    insta::assert_snapshot!(only(&validate.stdout).join("\n"), @"warning: dind (embedded):65:13: key `containers.gitlab-runner`: no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)");
    let doctor = berth(&root).args(["doctor"]).run();
    insta::assert_snapshot!(only(&doctor.stdout).join("\n"), @r"
    warn runners no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)
    fix: create the runner in GitLab, save its token to /etc/berth/tokens/NAME, then `berth init --url URL --runner NAME`
    ");
    assert!(!doctor.stderr.contains(NO_RUNNER), "{}", doctor.stderr);

    // With a runner declared, none of them says it (doctor asks the stand-in about the token).
    let gitlab = start_gitlab();
    berth(&root)
        .args(["init", "--url", &gitlab.url()])
        .run()
        .code(0);
    for command in ["plan", "validate", "doctor"] {
        let run = berth(&root).args([command]).run();
        assert!(
            !run.stdout.contains(NO_RUNNER) && !run.stderr.contains(NO_RUNNER),
            "{command}: {}",
            run.transcript()
        );
    }
}
