//! Network changes through the Engine API (issue 24): create, remove, connect and disconnect,
//! and the containers on a network, running or not (what a replacement reconnects).

use std::collections::HashMap;

use bollard::{
    models::{
        EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    },
    query_parameters::ListContainersOptions,
};

use super::{Engine, EngineError};

impl Engine {
    /// `POST /networks/create`: the new network's ID. A daemon of API 1.41 creates a second
    /// network of a name unless asked `CheckDuplicate` (a field later APIs dropped, refusing
    /// duplicates themselves, and bollard's model no longer has): it says so in its warning,
    /// and the twin is removed at once and the create refused as a conflict, as the CLI's
    /// request was.
    pub(crate) fn create_network(
        &self,
        request: NetworkCreateRequest,
    ) -> Result<String, EngineError> {
        let name = request.name.clone();
        let created = self.ask("`POST /networks/create`", |client| async move {
            client.create_network(request).await
        })?;
        if created.warning.contains("already exists") {
            self.remove_network(&created.id)?;
            return Err(EngineError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        Ok(created.id)
    }

    /// `DELETE /networks/NAME`: refused (Conflict, or the daemon's 403 on older versions) while
    /// a container is on it.
    pub(crate) fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.ask(&format!("`DELETE /networks/{name}`"), |client| async move {
            client.remove_network(name).await
        })
    }

    /// `POST /networks/NAME/connect` of `container`, with `aliases` on it.
    pub(crate) fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<(), EngineError> {
        let request = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(EndpointSettings {
                aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                ..EndpointSettings::default()
            }),
        };
        self.ask(
            &format!("`POST /networks/{network}/connect`"),
            |client| async move { client.connect_network(network, request).await },
        )
    }

    /// `POST /networks/NAME/disconnect` of `container`, forced (`docker network disconnect
    /// --force`: also when the network's endpoint is gone).
    pub(crate) fn disconnect_network(
        &self,
        network: &str,
        container: &str,
    ) -> Result<(), EngineError> {
        let request = NetworkDisconnectRequest {
            container: container.to_owned(),
            force: Some(true),
        };
        self.ask(
            &format!("`POST /networks/{network}/disconnect`"),
            |client| async move { client.disconnect_network(network, request).await },
        )
    }

    /// The names of the containers on `network`, running or not (`GET /containers/json?all=1`
    /// filtered on it: a network's own inspect lists only the running ones).
    pub(crate) fn containers_on(&self, network: &str) -> Result<Vec<String>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "network".to_owned(),
                vec![network.to_owned()],
            )])),
            ..ListContainersOptions::default()
        };
        self.ask("`GET /containers/json`", |client| async move {
            let listed = client.list_containers(Some(options)).await?;
            Ok(listed
                .into_iter()
                .filter_map(|container| container.names?.into_iter().next())
                .map(|name| name.trim_start_matches('/').to_owned())
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fake_daemon;
    use super::*;

    /// A daemon of API 1.41 makes a second network of a name and only warns: berth removes
    /// that twin at once and reports the conflict the CLI's `CheckDuplicate` request got.
    #[test]
    fn a_twin_network_a_daemon_made_anyway_is_removed_and_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let engine = fake_daemon(dir.path(), |path| match path.split('?').next() {
            Some("/networks/create") => (
                201,
                r#"{"Id":"twin","Warning":"Network with name ci-net (id : first) already exists"}"#,
            ),
            Some("/networks/twin") => (204, ""),
            _ => (500, r#"{"message":"unexpected"}"#),
        });
        let request = NetworkCreateRequest {
            name: "ci-net".into(),
            ..NetworkCreateRequest::default()
        };
        let error = engine.create_network(request).unwrap_err();
        assert!(matches!(error, EngineError::Conflict(_)), "{error:?}");
        assert_eq!(error.to_string(), "network with name ci-net already exists");
    }
}
