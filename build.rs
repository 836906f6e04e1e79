#![allow(
    clippy::disallowed_methods,
    reason = "the build script reads profiles/ in the source tree"
)]
//! Embeds every file in `profiles/` into the binary, keyed by its file stem, so a new profile
//! ships by being added to the directory: there is no list to forget to update.

use std::{env, fs, path::Path};

fn main() {
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
