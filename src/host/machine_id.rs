//! The machine's identity, `/etc/machine-id`, and the one way berth publishes anything made of
//! it: machine-id(5) asks programs never to show the id itself but an application-specific ID,
//! as systemd's `sd_id128_get_machine_app_specific` makes it. Each use (the instance label, the
//! FleetLock client id, the machine a runner's system ID was made on) has its own app ID, so
//! none of them can be matched with another.

use anyhow::Result;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Host, host_path};

const MACHINE_ID: &str = "/etc/machine-id";

/// `/etc/machine-id` under the root, trimmed; `None` when it is missing or empty.
pub(crate) fn read(host: &Host) -> Result<Option<String>> {
    let text = host.read_optional(&host_path(MACHINE_ID))?;
    Ok(text
        .map(|text| text.trim().to_owned())
        .filter(|id| !id.is_empty()))
}

/// `sd_id128_get_machine_app_specific`: HMAC-SHA256 keyed by the machine id's 16 bytes over
/// `app_id`, its first 16 bytes marked as a version 4 UUID, in hexadecimal. A machine id that is
/// not 32 hexadecimal digits (never on a systemd host) keys it with its text as it is.
pub(crate) fn app_specific(machine_id: &str, app_id: &[u8; 16]) -> String {
    let key = hex::decode(machine_id)
        .ok()
        .filter(|bytes| bytes.len() == 16)
        .unwrap_or_else(|| machine_id.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(app_id);
    let mut id: [u8; 16] = mac.finalize().into_bytes()[..16]
        .try_into()
        .expect("SHA-256 is 32 bytes");
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    hex::encode(id)
}
