//! Container changes through the Engine API (issue 24): create, start, stop, restart, remove,
//! rename and update, each one request. A container's create body carries its env values,
//! which may be secrets: it is never logged, and no error repeats it (what `-v` shows is the
//! method and path, as for every request). A stop or restart waits as long as the container's
//! own stop timeout allows, saying how far it got, as the CLI's `docker stop` did.

use std::{future::Future, time::Duration};

use bollard::{
    errors::Error as BollardError,
    models::{ContainerCreateBody, ContainerUpdateBody, RestartPolicy},
    query_parameters::{
        CreateContainerOptions, RemoveContainerOptions, RenameContainerOptions,
        RestartContainerOptions, StartContainerOptions, StopContainerOptions,
    },
};

use super::{Engine, EngineError};
use crate::host::exec::Progress;

impl Engine {
    /// `POST /containers/create?name=NAME`: the new container's ID.
    pub(crate) fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..CreateContainerOptions::default()
        };
        let what = format!("`POST /containers/create?name={name}`");
        self.ask(&what, |client| async move {
            client
                .create_container(Some(options), body)
                .await
                .map(|created| created.id)
        })
    }

    /// `POST /containers/ID/start`.
    pub(crate) fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.ask(
            &format!("`POST /containers/{id}/start`"),
            |client| async move {
                client
                    .start_container(id, None::<StartContainerOptions>)
                    .await
            },
        )
    }

    /// `POST /containers/ID/stop` without `t` (nor `signal`, which API 1.41 does not know): the
    /// daemon sends the container's own stop signal and waits its own stop timeout, as `docker
    /// stop` without `-t` does. Waits up to `timeout`, telling `progress` how far it got.
    pub(crate) fn stop_container(
        &self,
        id: &str,
        timeout: Duration,
        progress: impl Progress,
    ) -> Result<(), EngineError> {
        let what = format!("`POST /containers/{id}/stop`");
        self.ask_reporting(&what, timeout, progress, |client| async move {
            client
                .stop_container(id, None::<StopContainerOptions>)
                .await
        })
    }

    /// `POST /containers/ID/restart` without `t`: stopped as [`Engine::stop_container`] stops.
    pub(crate) fn restart_container(
        &self,
        id: &str,
        timeout: Duration,
        progress: impl Progress,
    ) -> Result<(), EngineError> {
        let what = format!("`POST /containers/{id}/restart`");
        self.ask_reporting(&what, timeout, progress, |client| async move {
            client
                .restart_container(id, None::<RestartContainerOptions>)
                .await
        })
    }

    /// `DELETE /containers/ID?v=true`, with `force=true` when `force` (a running one is killed):
    /// its anonymous volumes go with it, named ones stay (`docker rm --volumes [--force]`).
    pub(crate) fn remove_container(&self, id: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            v: true,
            force,
            link: false,
        };
        self.ask(&format!("`DELETE /containers/{id}`"), |client| async move {
            client.remove_container(id, Some(options)).await
        })
    }

    /// `POST /containers/ID/rename?name=NEW`.
    pub(crate) fn rename_container(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptions {
            name: new_name.to_owned(),
        };
        self.ask(
            &format!("`POST /containers/{id}/rename`"),
            |client| async move { client.rename_container(id, options).await },
        )
    }

    /// `POST /containers/ID/update` of the restart policy alone (`docker update --restart`).
    pub(crate) fn update_restart_policy(
        &self,
        id: &str,
        policy: RestartPolicy,
    ) -> Result<(), EngineError> {
        let body = ContainerUpdateBody {
            restart_policy: Some(policy),
            ..ContainerUpdateBody::default()
        };
        self.ask(
            &format!("`POST /containers/{id}/update`"),
            |client| async move { client.update_container(id, body).await },
        )
    }

    /// One request that may take long (a stop that drains running jobs): up to `timeout`
    /// rather than the client's, with `progress` told the time elapsed once per its interval.
    fn ask_reporting<T, F>(
        &self,
        what: &str,
        timeout: Duration,
        mut progress: impl Progress,
        request: impl FnOnce(bollard::Docker) -> F,
    ) -> Result<T, EngineError>
    where
        F: Future<Output = Result<T, BollardError>>,
    {
        let client = self.client()?.with_timeout(timeout);
        tracing::debug!("asking the Docker daemon at {}: {what}", self.address.host);
        let hung = || EngineError::Hung {
            what: what.to_owned(),
            timeout,
        };
        let answer = self.runtime.block_on(async {
            let started = tokio::time::Instant::now();
            let deadline = started + timeout;
            let mut report_at = started + progress.interval();
            let mut request = std::pin::pin!(request(client));
            loop {
                match tokio::time::timeout_at(report_at.min(deadline), &mut request).await {
                    Ok(answer) => return Some(answer),
                    Err(_) if tokio::time::Instant::now() >= deadline => return None,
                    Err(_) => {
                        progress.report(started.elapsed());
                        report_at += progress.interval();
                    }
                }
            }
        });
        match answer {
            None | Some(Err(BollardError::RequestTimeoutError)) => Err(hung()),
            Some(Ok(answer)) => Ok(answer),
            Some(Err(error)) => Err(self.error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fake_daemon;
    use super::*;

    /// A create refused with 409 (the name is taken) says what Docker said, as the CLI's
    /// "Error response from daemon" did, typed as a conflict; the body (env values) is in no
    /// part of the error.
    #[test]
    fn a_409_on_create_is_a_conflict_in_dockers_words_without_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let engine = fake_daemon(dir.path(), |path| {
            if path.contains("/containers/create") {
                (
                    409,
                    r#"{"message":"Conflict. The container name \"/gitlab-runner\" is already in use by container \"4f2a9c\". You have to remove (or rename) that container to be able to reuse that name."}"#,
                )
            } else {
                (500, r#"{"message":"unexpected"}"#)
            }
        });
        let body = ContainerCreateBody {
            image: Some("gitlab/gitlab-runner:v17.11.0".into()),
            env: Some(vec!["RUNNER_TOKEN=glrt-s3cr3t".into()]),
            ..ContainerCreateBody::default()
        };
        let error = engine.create_container("gitlab-runner", body).unwrap_err();
        assert!(matches!(error, EngineError::Conflict(_)), "{error:?}");
        let chain = format!(
            "{:#}",
            anyhow::Error::new(error).context("failed to create container `gitlab-runner`")
        );
        assert!(!chain.contains("s3cr3t"), "{chain}");
        insta::assert_snapshot!(chain, @r#"failed to create container `gitlab-runner`: Conflict. The container name "/gitlab-runner" is already in use by container "4f2a9c". You have to remove (or rename) that container to be able to reuse that name."#);
    }
}
