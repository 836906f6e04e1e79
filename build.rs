#![allow(
    clippy::disallowed_methods,
    reason = "the build script reads profiles/ in the source tree"
)]
//! Embeds every file in `profiles/` into the binary, keyed by its file stem, so a new profile
//! ships by being added to the directory: there is no list to forget to update. Also tells the
//! binary which commit it was built from, for `--version` and `berth_build_info`.

use std::{env, fs, path::Path, process::Command};

fn main() {
    commit();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .expect("profiles/ exists")
        .map(|entry| entry.expect("readable profiles/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    entries.sort();
    let mut generated = String::from("pub(crate) static EMBEDDED: &[(&str, &str)] = &[\n");
    for path in entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        generated.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    generated.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("embedded_profiles.rs");
    fs::write(out, generated).expect("write embedded_profiles.rs");
}

/// Sets `BERTH_COMMIT` (the short hash of HEAD) and `BERTH_COMMIT_DATE`
/// (the commit's date, YYYY-MM-DD) from git; both are `unknown` in a build without git (a
/// source tarball, a Debian source package).
fn commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let hash = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = hash
        .as_ref()
        .and_then(|_| git(&["log", "-1", "--format=%cs", "HEAD"]));
    println!(
        "cargo:rustc-env=BERTH_COMMIT={}",
        hash.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=BERTH_COMMIT_DATE={}",
        date.as_deref().unwrap_or("unknown")
    );
    // A new commit (HEAD moves, or the branch it names does) builds a new version string; only
    // this checkout's branch is watched, so commits on other branches (worktrees share the
    // refs) do not rebuild it.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            // A path that does not exist would rerun this script on every build (a branch
            // packed by `git gc` lives in packed-refs).
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
