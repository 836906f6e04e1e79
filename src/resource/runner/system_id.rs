//! gitlab-runner's `.runner_system_id`: the identity of this host among a runner's managers.
//!
//! GitLab keys a runner's managers by this ID, so berth must present the same one the runner
//! will: it reads the file beside config.toml, and when there is none writes one in
//! gitlab-runner's own format, so the runner picks it up instead of inventing another. The
//! format: `s_` and the first 12 hex digits of HMAC-SHA256(key = the machine ID, message =
//! `gitlab-runner`), or, on a machine without a machine ID, `r_` and 12 random letters and
//! digits. The file is mode 0600, in a 0700 directory, with no trailing newline.

use anyhow::{Context as _, Result};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::host::{Host, HostPath, host_path};

/// The file's name, beside config.toml.
pub(crate) const FILE_NAME: &str = ".runner_system_id";

/// Where gitlab-runner looks for the machine ID, in order (as its machineid library does).
const MACHINE_ID_FILES: &[&str] = &[
    "/var/lib/dbus/machine-id",
    "/etc/machine-id",
    "/sys/class/dmi/id/product_uuid",
];

/// `.runner_system_id` beside `config`.
pub(crate) fn path(config: &HostPath) -> HostPath {
    config
        .parent()
        .unwrap_or_else(|| host_path("/"))
        .join(FILE_NAME)
}

/// True for what gitlab-runner accepts: `s_` or `r_` and 12 letters or digits.
pub(crate) fn is_valid(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("s_").or_else(|| id.strip_prefix("r_")) else {
        return false;
    };
    rest.len() == 12 && rest.chars().all(|c| c.is_ascii_alphanumeric())
}

/// More than a system ID takes (`s_` and 12 characters), for a file in the runner's directory.
const ID_LIMIT: u64 = 4096;

/// The system ID in the file beside `config`, if there is a valid one.
pub(crate) fn read(host: &Host, config: &HostPath) -> Result<Option<String>> {
    super::config::distrust_directory(host, config);
    Ok(host
        .read_limited(&path(config), ID_LIMIT)?
        .map(|text| text.trim().to_owned())
        .filter(|id| is_valid(id)))
}

/// The system ID beside `config`, written first when absent or invalid (as gitlab-runner would).
pub(crate) fn ensure(host: &Host, config: &HostPath) -> Result<String> {
    if let Some(id) = read(host, config)? {
        return Ok(id);
    }
    let id = generate(host)?;
    let file = path(config);
    if let Some(dir) = file.parent() {
        host.ensure_dir(&dir, 0o700)?;
    }
    host.write_secret(&file, id.as_bytes(), 0o600)
        .context("failed to save the runner's system ID")?;
    Ok(id)
}

/// A new system ID for this host.
pub(crate) fn generate(host: &Host) -> Result<String> {
    match machine_id(host)? {
        Some(machine_id) => Ok(from_machine_id(&machine_id)),
        None => random(),
    }
}

/// The machine ID gitlab-runner would make the system ID from: the first of
/// [`MACHINE_ID_FILES`] that is not empty.
pub(crate) fn machine_id(host: &Host) -> Result<Option<String>> {
    for file in MACHINE_ID_FILES {
        if let Some(text) = host.read_optional(&host_path(file))? {
            let machine_id = text.trim();
            if !machine_id.is_empty() {
                return Ok(Some(machine_id.to_owned()));
            }
        }
    }
    Ok(None)
}

/// Replaces the system ID beside `config` with a new one made on this machine, as
/// gitlab-runner would have made it here; returns it.
pub(crate) fn regenerate(host: &Host, config: &HostPath) -> Result<String> {
    let id = generate(host)?;
    super::config::distrust_directory(host, config);
    host.write_secret(&path(config), id.as_bytes(), 0o600)
        .context("failed to save the runner's new system ID")?;
    Ok(id)
}

/// `s_` + the first 12 hex digits of HMAC-SHA256 keyed with the machine ID over
/// `gitlab-runner`.
pub(crate) fn from_machine_id(machine_id: &str) -> String {
    let mac = hmac_sha256(machine_id.as_bytes(), b"gitlab-runner");
    format!("s_{}", &hex::encode(mac)[..12])
}

fn random() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut id = String::from("r_");
    while id.len() < 14 {
        let mut byte = [0u8; 1];
        getrandom::fill(&mut byte).map_err(|error| anyhow::anyhow!("{error}"))?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        if byte[0] < 248 {
            id.push(ALPHABET[usize::from(byte[0]) % ALPHABET.len()] as char);
        }
    }
    Ok(id)
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests build fixture trees beside the host layer"
)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn ids_have_gitlab_runners_format() {
        let derived = from_machine_id("0123456789abcdef0123456789abcdef");
        assert!(is_valid(&derived), "{derived}");
        assert!(derived.starts_with("s_"));
        assert_eq!(derived, from_machine_id("0123456789abcdef0123456789abcdef"));
        let random = random().unwrap();
        assert!(is_valid(&random) && random.starts_with("r_"), "{random}");
        assert!(!is_valid("s_short"));
        assert!(!is_valid("x_0123456789ab"));
    }

    #[test]
    fn an_absent_id_is_written_beside_config_toml_and_then_kept() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path());
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/machine-id"),
            "b08dfa6083e7567a1921a715000001fb\n",
        )
        .unwrap();
        let config = host_path("/srv/gitlab-runner/config.toml");
        let id = ensure(&host, &config).unwrap();
        assert_eq!(id, from_machine_id("b08dfa6083e7567a1921a715000001fb"));
        let file = root.path().join("srv/gitlab-runner/.runner_system_id");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            id,
            "no trailing newline"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(file.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        std::fs::write(&file, "r_AbCdEfGhIjKl\n").unwrap();
        assert_eq!(ensure(&host, &config).unwrap(), "r_AbCdEfGhIjKl");
    }
}
