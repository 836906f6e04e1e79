//! What the daemon says of its own version (`GET /version`), for `berth doctor`.

use super::{Engine, EngineError};

/// The daemon's release and the newest API version it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaemonVersion {
    /// `20.10.24`.
    pub version: String,
    /// `1.41`.
    pub api: String,
}

impl Engine {
    /// `GET /version`.
    pub(crate) fn version(&self) -> Result<DaemonVersion, EngineError> {
        self.ask("`GET /version`", |client| async move {
            let answer = client.version().await?;
            Ok(DaemonVersion {
                version: answer.version.unwrap_or_default(),
                api: answer.api_version.unwrap_or_default(),
            })
        })
    }
}
