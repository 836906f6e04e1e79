use super::*;

#[test]
fn host_paths_must_be_absolute_and_plain() {
    assert!(HostPath::new("/etc/docker/daemon.json").is_ok());
    assert!(
        HostPath::new("etc/docker")
            .unwrap_err()
            .contains("not an absolute path")
    );
    assert!(HostPath::new("/etc/../root").unwrap_err().contains("`..`"));
}

#[test]
fn paths_resolve_under_the_root() {
    let host = Host::new("/tmp/r");
    assert_eq!(
        host.path(&host_path("/etc/x")),
        PathBuf::from("/tmp/r/etc/x")
    );
    assert_eq!(
        Host::new("/").path(&host_path("/etc/x")),
        PathBuf::from("/etc/x")
    );
}

#[test]
fn atomic_write_keeps_the_existing_mode_and_uses_the_new_mode_otherwise() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    let file = host_path("/etc/a/b.json");
    host.write_atomic(&file, b"one", 0o600).unwrap();
    assert_eq!(host.mode(&file).unwrap(), Some(FileMode(0o600)));
    std::fs::set_permissions(host.path(&file), std::fs::Permissions::from_mode(0o640)).unwrap();
    host.write_atomic(&file, b"two", 0o600).unwrap();
    assert_eq!(host.mode(&file).unwrap(), Some(FileMode(0o640)));
    assert_eq!(host.read_optional(&file).unwrap().as_deref(), Some("two"));
    let leftovers: Vec<_> = host.list_dir(&host_path("/etc/a")).unwrap();
    assert_eq!(leftovers, ["b.json"], "no temporary file is left behind");
}

#[test]
fn atomic_write_over_a_directory_fails_and_names_the_path() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    std::fs::create_dir_all(root.path().join("etc/x.json")).unwrap();
    let error = host
        .write_atomic(&host_path("/etc/x.json"), b"{}", 0o644)
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("failed to write `/etc/x.json`"),
        "{error:#}"
    );
}

use std::os::unix::fs::symlink;

/// A root with a hostile directory `/srv/runner` (as the runner's is) and a file outside it
/// that a planted link aims at.
fn hostile_root() -> (tempfile::TempDir, Host) {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    std::fs::create_dir_all(root.path().join("srv/runner")).unwrap();
    std::fs::create_dir_all(root.path().join("root/.ssh")).unwrap();
    std::fs::write(root.path().join("root/.ssh/authorized_keys"), "key\n").unwrap();
    host.distrust(&host_path("/srv/runner"));
    (root, host)
}

fn message(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

#[test]
fn a_link_in_a_hostile_directory_is_refused_and_its_target_untouched() {
    let (root, host) = hostile_root();
    symlink(
        "/root/.ssh/authorized_keys",
        root.path().join("srv/runner/config.toml"),
    )
    .unwrap();
    let file = host_path("/srv/runner/config.toml");
    let error = host.write_secret(&file, b"planted", 0o600).unwrap_err();
    assert!(
        message(&error).contains("`/srv/runner/config.toml` is a symbolic link"),
        "{error:#}"
    );
    let error = host.read_optional(&file).unwrap_err();
    assert!(message(&error).contains("symbolic link"), "{error:#}");
    assert!(
        host.mode(&file).is_err(),
        "its mode is not read through it either"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("root/.ssh/authorized_keys")).unwrap(),
        "key\n"
    );
    host.remove_file(&file).unwrap();
    assert!(
        root.path().join("root/.ssh/authorized_keys").exists(),
        "removing a link removes the link"
    );
}

#[test]
fn a_directory_link_in_a_hostile_directory_is_refused() {
    let (root, host) = hostile_root();
    symlink("/root/.ssh", root.path().join("srv/runner/certs")).unwrap();
    let error = host
        .write_atomic(&host_path("/srv/runner/certs/authorized_keys"), b"x", 0o644)
        .unwrap_err();
    assert!(
        message(&error).contains("`/srv/runner/certs` is a symbolic link"),
        "{error:#}"
    );
    let error = host
        .ensure_dir(&host_path("/srv/runner/certs"), 0o700)
        .unwrap_err();
    assert!(message(&error).contains("symbolic link"), "{error:#}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("root/.ssh/authorized_keys")).unwrap(),
        "key\n"
    );
}

/// issue 18: `config.toml → a/../p.toml` with `a → d/e`. The kernel reads `d/p.toml` (`a/..`
/// is `d`, through the link); writing through text-resolved `..` hit `p.toml` beside
/// config.toml. Where a link may be followed at all, berth now writes what the kernel reads.
#[test]
fn a_link_chain_through_dot_dot_is_followed_as_the_kernel_follows_it() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    let etc = root.path().join("etc/app");
    std::fs::create_dir_all(etc.join("d/e")).unwrap();
    std::fs::write(etc.join("d/p.toml"), "kernel's\n").unwrap();
    std::fs::write(etc.join("p.toml"), "text's\n").unwrap();
    symlink("d/e", etc.join("a")).unwrap();
    symlink("a/../p.toml", etc.join("config.toml")).unwrap();
    let file = host_path("/etc/app/config.toml");
    assert_eq!(
        host.read_optional(&file).unwrap().as_deref(),
        Some("kernel's\n")
    );
    host.write_atomic(&file, b"new\n", 0o644).unwrap();
    assert_eq!(
        std::fs::read_to_string(etc.join("config.toml")).unwrap(),
        "new\n",
        "what the kernel reads is what was written"
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("p.toml")).unwrap(),
        "text's\n"
    );
    assert!(
        etc.join("config.toml")
            .symlink_metadata()
            .unwrap()
            .is_symlink()
    );

    // The same chain in a hostile directory is refused at its first link.
    host.distrust(&host_path("/etc/app"));
    let error = host.write_atomic(&file, b"planted\n", 0o644).unwrap_err();
    assert!(
        message(&error).contains("`/etc/app/config.toml` is a symbolic link"),
        "{error:#}"
    );
}

#[test]
fn a_link_is_not_followed_where_another_user_can_write() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    let dir = root.path().join("etc/shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(root.path().join("etc/target"), "kept\n").unwrap();
    symlink("../target", dir.join("file")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = host
        .write_atomic(&host_path("/etc/shared/file"), b"x", 0o644)
        .unwrap_err();
    assert!(message(&error).contains("symbolic link"), "{error:#}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    host.write_atomic(&host_path("/etc/shared/file"), b"x", 0o644)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/target")).unwrap(),
        "x"
    );
}

#[test]
fn a_link_out_of_the_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    symlink("../../../../../../etc/passwd", root.path().join("etc/x")).unwrap();
    let error = host.read_optional(&host_path("/etc/x")).unwrap_err();
    assert!(
        message(&error).contains("leads out of the root"),
        "{error:#}"
    );
}

#[test]
fn reads_take_regular_files_of_bounded_size_and_never_wait() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let sparse = std::fs::File::create(root.path().join("etc/big")).unwrap();
    sparse.set_len(2 << 30).unwrap();
    let error = host.read_optional(&host_path("/etc/big")).unwrap_err();
    assert!(message(&error).contains("is larger than"), "{error:#}");
    nix::unistd::mkfifo(
        &root.path().join("etc/fifo"),
        Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let error = host.read_optional(&host_path("/etc/fifo")).unwrap_err();
    assert!(
        message(&error).contains("`/etc/fifo` is a FIFO, not a regular file"),
        "{error:#}"
    );
    let error = host
        .write_atomic(&host_path("/etc/fifo"), b"x", 0o644)
        .unwrap_err();
    assert!(message(&error).contains("is a FIFO"), "{error:#}");
}

#[test]
fn directories_get_their_mode_whatever_the_umask_and_secrets_theirs_before_the_rename() {
    let root = tempfile::tempdir().unwrap();
    let host = Host::new(root.path());
    host.ensure_dir(&host_path("/srv/a/b"), 0o700).unwrap();
    let mode = |path: &str| {
        std::fs::metadata(root.path().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("srv"), 0o755);
    assert_eq!(mode("srv/a"), 0o755);
    assert_eq!(mode("srv/a/b"), 0o700);
    let file = host_path("/srv/a/b/config.toml");
    host.write_atomic(&file, b"old", 0o644).unwrap();
    host.write_secret(&file, b"token", 0o600).unwrap();
    assert_eq!(mode("srv/a/b/config.toml"), 0o600);
}
