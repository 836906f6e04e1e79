//! A host without Docker (issue 10): `package/docker` installs it, and until Docker runs every
//! network, volume and container is still planned and counted, never dropped from the plan.
//!
//! The real thing runs in a Debian root made by `debootstrap --variant=minbase`, with berth
//! inside it under `chroot` and the real apt-get installing docker.io; the rest runs against
//! temporary roots and the private dockerd.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::{
    harness::{BERTH, Root, Run, berth, profile_file, require, tool_available},
    require_dockerd,
};

const BOOKWORM_OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=bookworm\nID=debian\n";

/// Docker missing from a Debian root berth manages from outside (`--root`), with `install =
/// false`: plan lists and counts every object as waiting for Docker and exits 1, for the install
/// it must refuse; apply makes the files, refuses to go on without Docker and says how to get it
/// (exit 1).
#[test]
fn docker_missing_plan_counts_every_object_and_apply_with_install_false_exits_1() {
    let root = Root::new();
    root.write("/etc/os-release", BOOKWORM_OS_RELEASE);
    let never = profile_file(&root.join("/work"), "never", "[docker]\ninstall = false\n");
    let host = || berth(&root).args(["-p", "dind", "-p"]).args([&never]);
    let plan = host().args(["plan"]).run();
    plan.code(1);
    insta::assert_snapshot!(plan.transcript(), @r#"
    exit: 1
    --- stdout
    kernel-module/overlay        + persist   /etc/modules-load.d/overlay.conf
    package/docker               + install   Docker is not installed
        refused: `[docker] install = false`: install Docker yourself (`apt-get install docker.io`, then start it), or let berth install it with `install = "distro"`
    daemon-config                + create    /etc/docker/daemon.json
        --- /etc/docker/daemon.json
        +++ /etc/docker/daemon.json
        @@ -0,0 +1,9 @@
        +{
        +  "storage-driver": "overlay2",
        +  "log-driver": "json-file",
        +  "log-opts": {
        +    "max-size": "50m",
        +    "max-file": "3"
        +  },
        +  "live-restore": true
        +}
    network/gitlab-runner-net    + create    driver=bridge (after Docker is installed)
    volume/gitlab-dind-data      + create    driver=local (after Docker is installed)
    container/gitlab-dind        + create    image docker:27-dind (after Docker is installed)
    container/gitlab-runner      + create    image gitlab/gitlab-runner:v17.11.0 (after Docker is installed)

    Plan: 6 to add, 0 to change, 0 to destroy, 1 refused.
    --- stderr
    warning: dind (embedded):65:13: key `containers.gitlab-runner`: no runner is declared: the host will run a runner container that takes no jobs (berth init writes one)
    warning: kernel-module/overlay: the running kernel is not visible under the root (no /proc/filesystems or /proc/modules): `overlay` is only persisted, not loaded
    warning: daemon/docker: Docker is not installed (no docker.service unit and no dockerd under the root): daemon.json takes effect when it is
    "#);
    let apply = host().args(["apply"]).run();
    apply.code(1);
    assert!(
        apply
            .stdout
            .ends_with("Apply failed: 2 added, 0 changed, 0 destroyed, 6 failed.\n"),
        "{}",
        apply.stdout
    );
    assert!(
        apply.stderr.contains("error: refused to install `package/docker`\n  caused by: `[docker] install = false`: install Docker yourself (`apt-get install docker.io`, then start it)"),
        "{}",
        apply.stderr
    );
    for object in ["daemon/docker` failed", "package/docker` failed"] {
        assert!(apply.stderr.contains(object), "{object}: {}", apply.stderr);
    }
    assert!(
        root.exists("/etc/docker/daemon.json"),
        "the files need no Docker"
    );
}

/// With the default `install = "distro"`, a root other than `/` is not installed into: apt-get
/// cannot install there. The plan names the packages and the way to do it.
#[test]
fn an_install_under_another_root_is_refused_with_the_way_to_do_it() {
    let root = Root::new();
    root.write("/etc/os-release", BOOKWORM_OS_RELEASE);
    let plan = berth(&root).args(["plan"]).run();
    plan.code(1);
    let install = plan
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("package/docker"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(install, @r"
    package/docker               + install   docker.io ca-certificates
        refused: apt-get and dnf install only into the system they run on, not under `--root`; run berth inside that root (`chroot ROOT berth apply`), or install Docker there yourself
    ");
}

/// Issue 23: berth's units are sandboxed (read-only /usr and /var/lib/dpkg, a narrow capability
/// set), so a run they start (`--from-timer`) refuses to install Docker and says to run `berth
/// apply` by hand once, rather than failing halfway through apt-get.
#[test]
fn a_unit_started_run_refuses_to_install_docker_and_says_to_apply_by_hand_once() {
    let root = Root::new();
    root.write("/etc/os-release", BOOKWORM_OS_RELEASE)
        .write("/etc/berth/berth.toml", "profiles = [\"dind\"]\n");
    let apply = berth(&root).args(["apply", "--from-timer"]).run();
    apply.code(1);
    let refusal: Vec<&str> = apply
        .stderr
        .lines()
        .skip_while(|line| !line.starts_with("error: refused to install `package/docker`"))
        .take(2)
        .collect();
    insta::assert_snapshot!(refusal.join("\n"), @"
    error: refused to install `package/docker`
      caused by: berth's units run sandboxed and cannot install packages (apt-get, dnf, dpkg, Docker's repository): run `sudo berth apply` by hand once; the timer and berth-watch converge the rest from then on
    ");
}

/// Issue 23: a Docker that answers is installed, whatever installed it. The stand-in is the
/// private dockerd with nothing of it under the root (no docker.service, no dockerd where
/// packages put it): a static binary, or the snap once its unit is there. Plan installs no
/// second Docker, and doctor says which Docker it found.
#[test]
fn a_docker_that_answers_is_installed_whatever_installed_it_and_doctor_names_it() {
    let root = Root::new();
    root.write("/etc/os-release", BOOKWORM_OS_RELEASE);
    let dockerd = require_dockerd!(&root);
    root.with_overlay_kernel();
    fs::remove_file(root.join("/lib/systemd/system/docker.service")).unwrap();
    let host = || {
        berth(&root)
            .docker(&dockerd)
            .args(["-p", "dind", "-p"])
            .args([dockerd.layer_file()])
    };
    let plan = host().args(["plan"]).run();
    assert!(!plan.stdout.contains("package/docker"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("refused"), "{}", plan.stdout);
    let doctor_line = || {
        let doctor = host().args(["doctor"]).run();
        doctor
            .stdout
            .lines()
            .find(|line| line.contains("docker install"))
            .unwrap_or_else(|| panic!("{}", doctor.stdout))
            .to_owned()
    };
    insta::assert_snapshot!(doctor_line(), @"ok    docker install                            a Docker that answers, with no docker.service unit and no dockerd where packages put it (a static binary, rootless, or started by hand): berth installs no second Docker");

    root.write(
        "/etc/systemd/system/snap.docker.dockerd.service",
        "[Service]\nExecStart=/usr/bin/snap run docker.dockerd\n",
    );
    insta::assert_snapshot!(doctor_line(), @r#"ok    docker install                            the snap (`/etc/systemd/system/snap.docker.dockerd.service`): berth installs no second Docker; for daemon changes set `[docker] restart = ["snap", "restart", "docker"]`"#);
}

/// Docker installed but down: every object is planned as the create it will be once Docker
/// starts, and "Docker does not answer" is said once, not once per object.
#[test]
fn docker_down_plans_every_object_after_docker_starts_with_one_warning() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dockerd.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while dockerd.docker_unchecked(["version"]).status.success() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    root.with_overlay_kernel();
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["-p", "dind", "-p"])
        .args([dockerd.layer_file()])
        .args(["plan"])
        .run();
    plan.code(2);
    let objects: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.starts_with("daemon/") || line.contains("(after"))
        .collect();
    insta::assert_snapshot!(objects.join("\n"), @r"
    daemon/docker                + start     the daemon does not answer: Cannot connect to the Docker daemon at unix://[DOCKERD]/docker.sock. Is the docker daemon running?
    network/gitlab-runner-net    + create    driver=bridge (after Docker starts)
    volume/gitlab-dind-data      + create    driver=local (after Docker starts)
    container/gitlab-dind        + create    image docker:27-dind (after Docker starts)
    container/gitlab-runner      + create    image gitlab/gitlab-runner:v17.11.0 (after Docker starts)
    ");
    assert_eq!(
        plan.stderr.matches("Docker does not answer").count(),
        1,
        "{}",
        plan.stderr
    );
}

/// A Debian bookworm root made by `debootstrap --variant=minbase`, cached as a tarball in
/// cargo's scratch directory for tests: built once (about 40 s), unpacked in seconds after.
fn debian_tarball() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let tarball = cache.join("debian-bookworm-minbase.tar");
    if tarball.exists() {
        return tarball;
    }
    let build = cache.join("debootstrap-build");
    let _ = fs::remove_dir_all(&build);
    let started = Instant::now();
    // No mirror named: debootstrap's own default serves.
    let made = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&build)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "debootstrap failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let partial = tarball.with_extension("tar.partial");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&build)
        .arg("-cf")
        .arg(&partial)
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success(), "tar of the Debian root failed");
    fs::rename(&partial, &tarball).unwrap();
    fs::remove_dir_all(&build).unwrap();
    eprintln!(
        "built the Debian root in {:.0?} (cached at {})",
        started.elapsed(),
        tarball.display()
    );
    tarball
}

/// A Debian root unpacked from [`debian_tarball`], with berth copied in and what it mounted
/// into it unmounted on drop (before the directory is removed).
struct Chroot {
    mounts: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-debian-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let unpacked = Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xf")
            .arg(debian_tarball())
            .status()
            .unwrap();
        assert!(unpacked.success(), "unpacking the Debian root failed");
        fs::copy(BERTH, dir.path().join("usr/local/bin/berth")).unwrap();
        let mut chroot = Self {
            mounts: Vec::new(),
            dir,
        };
        chroot.mount(&["-t", "proc", "proc"], "/proc");
        chroot
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// `mount ARGS <root>/AT`.
    fn mount(&mut self, args: &[&str], at: &str) {
        let target = self.path(at);
        fs::create_dir_all(&target).unwrap();
        let mounted = Command::new("mount")
            .args(args)
            .arg(&target)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount {args:?} {}", target.display());
        self.mounts.push(target);
    }

    fn bind(&mut self, outside: &Path, at: &str) {
        let outside = outside.display().to_string();
        self.mount(&["--bind", &outside], at);
    }

    /// `berth ARGS` inside the root, as root there, with `DOCKER_HOST` set.
    fn berth(&self, args: &[&str], docker_host: &str) -> Run {
        let output = Command::new("chroot")
            .arg(self.dir.path())
            .arg("/usr/local/bin/berth")
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("DOCKER_HOST", docker_host)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Chroot {
    /// What dpkg inside the root says of `package`: `install ok installed` once it is.
    fn dpkg_status(&self, package: &str) -> String {
        let status = Command::new("chroot")
            .arg(self.dir.path())
            .args(["dpkg-query", "-W", "-f=${Status}", package])
            .output()
            .unwrap();
        String::from_utf8_lossy(&status.stdout).into_owned()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for target in self.mounts.iter().rev() {
            let unmounted = Command::new("umount").arg(target).status();
            if !unmounted.is_ok_and(|status| status.success()) {
                let _ = Command::new("umount").arg("-l").arg(target).status();
            }
        }
    }
}

/// The profile the bare-host tests converge: Docker "started" by linking the private dockerd's
/// socket where the root's Docker listens, a network and a volume on it.
const PROFILE: &str = "/etc/berth/bare.toml";

/// A fresh Debian root ready for berth, and the `DOCKER_HOST` its Docker will answer on: apt's
/// downloads cached between runs (a warm run downloads nothing), the private dockerd's
/// directory bound in for `[docker] restart` to link.
/// The bare-host tests share apt's download cache, and apt locks it: one at a time.
static APT_CACHE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    APT_CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The Debian root needs root (chroot, mount) and debootstrap; under CI, lacking either fails.
fn chroot_possible() -> bool {
    let is_root = nix::unistd::geteuid().is_root();
    require((!is_root).then(|| "chroot and mount need root".to_owned()))
        && tool_available("debootstrap", "Debian: apt-get install debootstrap")
}

fn bare_debian(dockerd: &crate::harness::Dockerd) -> (Chroot, String) {
    let mut chroot = Chroot::new();
    let archives = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bare-host-apt-archives");
    fs::create_dir_all(archives.join("partial")).unwrap();
    chroot.bind(&archives, "/var/cache/apt/archives");
    chroot.bind(dockerd.dir(), "/mnt/test-dockerd");
    let socket = "/run/berth-test/docker.sock";
    fs::create_dir_all(chroot.path("/etc/berth")).unwrap();
    fs::write(
        chroot.path(PROFILE),
        format!(
            "[docker]\nrestart = [\"sh\", \"-c\", \"mkdir -p /run/berth-test && ln -sf /mnt/test-dockerd/docker.sock {socket} && echo started >> /run/berth-test/starts\"]\nready_timeout = 30\n\n[networks.bare-net]\n\n[volumes.bare-cache]\n"
        ),
    )
    .unwrap();
    (chroot, format!("unix://{socket}"))
}

/// The bare host, for real: in a minimal Debian with no Docker, `plan` shows the install and
/// exits 2; `apply` installs docker.io with the real apt-get, starts Docker through the
/// profile's `[docker] restart` (here: the test's private dockerd's socket appears where the
/// root's Docker listens, as `systemctl start docker` would make it), creates the network and
/// volume on it and exits 0; the next plan has nothing to install.
#[test]
fn a_bare_debian_gets_docker_installed_and_converges() {
    if !chroot_possible() {
        return;
    }
    let daemon_root = Root::new();
    let dockerd = require_dockerd!(&daemon_root);
    let _one_at_a_time = one_at_a_time();
    let started = Instant::now();
    let (chroot, docker_host) = bare_debian(&dockerd);
    let unpacked = started.elapsed();
    let berth = |command: &str| chroot.berth(&["-p", PROFILE, command], &docker_host);

    let plan = berth("plan");
    plan.code(2);
    insta::assert_snapshot!(plan.stdout, @r"
    package/docker       + install   docker.io ca-certificates
    daemon/docker        + start     after Docker is installed
    network/bare-net     + create    driver=bridge (after Docker is installed)
    volume/bare-cache    + create    driver=local (after Docker is installed)

    Plan: 4 to add, 0 to change, 0 to destroy.
    ");

    let installing = Instant::now();
    let apply = berth("apply");
    apply.code(0);
    let installed = installing.elapsed();
    assert!(
        apply
            .stdout
            .ends_with("Apply complete: 4 added, 0 changed, 0 destroyed.\n"),
        "{}\n--- stderr\n{}",
        apply.stdout,
        apply.stderr
    );
    // apt-get's own progress went to stderr, not into berth's report.
    assert!(
        apply.stderr.contains("Setting up docker.io"),
        "{}",
        apply.stderr
    );
    assert!(!apply.stdout.contains("Setting up"), "{}", apply.stdout);
    assert_eq!(chroot.dpkg_status("docker.io"), "install ok installed");
    assert_eq!(
        fs::read_to_string(chroot.path("/run/berth-test/starts")).unwrap(),
        "started\n",
        "Docker was started once, through `[docker] restart`"
    );
    assert!(
        dockerd
            .docker(["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|name| name == "bare-net")
    );

    let again = berth("plan");
    again.code(0);
    assert_eq!(again.stdout, "No changes: the host matches the profile.\n");
    eprintln!(
        "bare host: Debian root unpacked in {unpacked:.1?}, apply (apt-get install docker.io) in {installed:.1?}"
    );
}

/// Faults: `berth apply` and its apt-get killed together (as a power cut or the unit's stop
/// timeout kills the whole cgroup) while dpkg unpacks docker.io. Docker then looks installed
/// (its dockerd is on disk) and every apt-get refuses until `dpkg --configure -a`: the next plan
/// shows the install's recovery, and the next apply finishes it and converges.
#[test]
fn an_install_killed_while_dpkg_unpacks_is_finished_by_the_next_apply() {
    if !chroot_possible() {
        return;
    }
    let daemon_root = Root::new();
    let dockerd = require_dockerd!(&daemon_root);
    let _one_at_a_time = one_at_a_time();
    let (chroot, docker_host) = bare_debian(&dockerd);
    let mut apply = Command::new("chroot")
        .arg(chroot.dir.path())
        .args(["/usr/local/bin/berth", "-p", PROFILE, "apply"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DOCKER_HOST", &docker_host)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = nix::unistd::Pid::from_raw(apply.id() as i32);
    // docker.io's dockerd on disk: dpkg is unpacking it, and has configured nothing of it yet.
    let dockerd_binary = chroot.path("/usr/sbin/dockerd");
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    while !dockerd_binary.exists() {
        assert!(
            apply.try_wait().unwrap().is_none(),
            "apply ended before dpkg unpacked docker.io"
        );
        assert!(Instant::now() < deadline, "dpkg never unpacked docker.io");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
    apply.wait().unwrap();
    let left = chroot.dpkg_status("docker.io");
    assert_ne!(left, "install ok installed", "the kill came too late");

    let berth = |command: &str| chroot.berth(&["-p", PROFILE, command], &docker_host);
    let plan = berth("plan");
    plan.code(2);
    let recovery = plan
        .stdout
        .lines()
        .find(|line| line.starts_with("package/docker"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        recovery.contains("! recover")
            && recovery.contains("finish the install an interrupted run left: docker.io"),
        "{}",
        plan.stdout
    );
    let apply = berth("apply");
    apply.code(0);
    assert!(
        apply.stderr.contains("dpkg --configure -a"),
        "{}",
        apply.stderr
    );
    assert_eq!(chroot.dpkg_status("docker.io"), "install ok installed");
    let audit = Command::new("chroot")
        .arg(chroot.dir.path())
        .args(["dpkg", "--audit"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&audit.stdout),
        "",
        "dpkg has nothing left unfinished"
    );
    let again = berth("plan");
    again.code(0);
    assert_eq!(again.stdout, "No changes: the host matches the profile.\n");
}
