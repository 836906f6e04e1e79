//! `[source]` (issue 20): the host's profiles come from a git repository in the team's own
//! GitLab, and a commit is applied only when a key of `allowed_signers` signed it.
//!
//! Every plan and apply fetches the ref (full history, into `/var/lib/berth/source/git`),
//! judges its head (signed by an allowed key; descending from the commit applied last, unless
//! `--allow-rewind`; no literal secret in the layers it gives this host) and converges to it,
//! or, when it is refused or the server cannot be reached, to the last commit applied, which
//! was verified when it was. What is applied is never a working tree: the verified commit's
//! `.toml` blobs are written under `/var/lib/berth/source/trees/COMMIT/` by berth itself (no
//! link, no checkout hook) and read from there without following a link.
//!
//! The run names what it applied ([`SourceRun`]): plan and apply print it, `--json`,
//! last-run.json, `status` and the metrics carry it. Nothing here knows a kind.

mod git;
pub(crate) mod layers;
mod section;
mod state;

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{
    host::{FileMode, Host, HostPath, READ_LIMIT, host_path},
    profile::{self, ProfileRef},
    secret::Secret,
};
use git::{Git, Signature};
pub(crate) use layers::default_layers;
use layers::{Checkout, Member};
pub(crate) use section::{Source, SourceSection};
use state::{Commit, State};

/// berth's copy of the repository and the trees of the commits it applied.
const SOURCE_DIR: &str = "/var/lib/berth/source";

/// Why the ref's head is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RefusalReason {
    Unsigned,
    UnknownSigner,
    Rewind,
    Secret,
}

impl RefusalReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::UnknownSigner => "unknown-signer",
            Self::Rewind => "rewind",
            Self::Secret => "secret",
        }
    }
}

/// The ref's head, refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Refused {
    pub reason: RefusalReason,
    pub commit: String,
    pub message: String,
}

/// What one run took from the source: the commit it converged to and what it knows of the
/// ref. Kept in last-run.json, shown by plan, apply and status, and turned into metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceRun {
    /// The repository's URL (it holds no credentials: `[source]` refuses one that does).
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// The commit converged to (full sha); `None` while no commit was ever verified.
    pub commit: Option<String>,
    pub signer: Option<String>,
    /// Committer time of `commit`, Unix seconds.
    pub committed_at: Option<i64>,
    /// The ref's head at the last fetch that succeeded, verified or not, and its time.
    pub ref_commit: Option<String>,
    pub ref_committed_at: Option<i64>,
    /// Why the ref's head is not what was applied, while it is refused.
    pub refused: Option<Refused>,
    /// This run's fetch failed: why (the token scrubbed).
    pub fetch_error: Option<String>,
    pub fetch_failures_total: u64,
}

impl SourceRun {
    fn of(source: &Source, state: &State, fetch_error: Option<String>) -> Self {
        Self {
            url: source.url.clone(),
            reference: source.reference.clone(),
            commit: state.applied.as_ref().map(|applied| applied.commit.clone()),
            signer: state
                .applied
                .as_ref()
                .and_then(|applied| applied.signer.clone()),
            committed_at: state.applied.as_ref().map(|applied| applied.committed_at),
            ref_commit: state.head.as_ref().map(|head| head.commit.clone()),
            ref_committed_at: state.head.as_ref().map(|head| head.committed_at),
            refused: state.refused.clone(),
            fetch_error,
            fetch_failures_total: state.fetch_failures_total,
        }
    }

    /// `source: URL@SHORTSHA (ref stable, signed by PRINCIPAL)`, and a line for a refusal or a
    /// failed fetch.
    pub(crate) fn describe(&self) -> String {
        let mut out = match (&self.commit, &self.signer) {
            (Some(commit), signer) => format!(
                "source: {}@{} (ref {}, signed by {})",
                self.url,
                short(commit),
                self.reference,
                signer.as_deref().unwrap_or("an allowed key")
            ),
            (None, _) => format!(
                "source: {} (ref {}): no verified commit yet",
                self.url, self.reference
            ),
        };
        if let Some(refused) = &self.refused {
            let _ = write!(
                out,
                "\nsource refused: {} of ref {} ({}): {}",
                short(&refused.commit),
                self.reference,
                refused.reason.as_str(),
                refused.message
            );
        }
        if let Some(error) = &self.fetch_error {
            let _ = write!(out, "\nsource fetch failed: {error}");
        }
        out
    }

    /// The metrics of issue 20, written only with `[source]`.
    pub(crate) fn metrics(&self) -> String {
        let mut out = String::new();
        let escape = |text: &str| {
            text.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let mut gauge = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let info = self
            .commit
            .iter()
            .map(|commit| {
                (
                    format!(
                        "{{url=\"{}\",ref=\"{}\",commit=\"{}\"}}",
                        escape(&self.url),
                        escape(&self.reference),
                        escape(commit)
                    ),
                    "1".to_owned(),
                )
            })
            .collect();
        gauge(
            "berth_source_info",
            "gauge",
            "The commit of [source] this host converged to.",
            info,
        );
        gauge(
            "berth_source_commit_timestamp_seconds",
            "gauge",
            "Committer time of the commit this host converged to.",
            self.committed_at
                .iter()
                .map(|at| (String::new(), at.to_string()))
                .collect(),
        );
        gauge(
            "berth_source_ref_commit_timestamp_seconds",
            "gauge",
            "Committer time of the ref's head at the last successful fetch, verified or not.",
            self.ref_committed_at
                .iter()
                .map(|at| {
                    (
                        format!("{{ref=\"{}\"}}", escape(&self.reference)),
                        at.to_string(),
                    )
                })
                .collect(),
        );
        gauge(
            "berth_source_fetch_failures_total",
            "counter",
            "Fetches of [source] that failed, across runs.",
            vec![(String::new(), self.fetch_failures_total.to_string())],
        );
        let refused = match &self.refused {
            Some(refused) => (
                format!("{{reason=\"{}\"}}", refused.reason.as_str()),
                "1".to_owned(),
            ),
            None => ("{reason=\"\"}".to_owned(), "0".to_owned()),
        };
        gauge(
            "berth_source_refused",
            "gauge",
            "1 while the ref's head is refused (unsigned, unknown-signer, rewind, secret).",
            vec![refused],
        );
        out
    }
}

/// The profiles a run converges to, from the source, and what it took.
pub(crate) struct Prepared {
    pub profiles: Vec<ProfileRef>,
    pub run: SourceRun,
}

/// Whether the run may record what it did (apply) or only looks (plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    Plan,
    Apply { allow_rewind: bool },
}

/// Fetches the ref, judges its head and says which commit's layers this run converges to.
/// Fails only when there is no verified commit at all to converge to.
pub(crate) fn prepare(host: &Host, source: &Source, look: Look) -> Result<Prepared> {
    let mut state = match State::read(host, &source.url) {
        Ok(state) => state,
        // `plan` as another user: berth's state is root's; plan from nothing.
        Err(error) if look == Look::Plan => {
            tracing::debug!("{error:#}");
            State {
                url: source.url.clone(),
                ..State::default()
            }
        }
        Err(error) => return Err(error),
    };
    let member = Member {
        hostname: layers::hostname(host)?,
        group: source.group.clone(),
    };
    let git = open(host, source)?;
    let fetched = git.fetch(&source.url, &source.reference);
    let mut fetch_error = None;
    match fetched {
        Ok(head) => take(host, &git, source, &member, &mut state, &head, look)?,
        Err(error) => {
            let error = format!("{error:#}");
            tracing::warn!(
                "failed to fetch `{}` ({}): {error}; converging to the last verified commit",
                source.url,
                source.reference
            );
            if let Look::Apply { .. } = look {
                state.fetch_failures_total += 1;
            }
            fetch_error = Some(error);
        }
    }
    if let Look::Apply { .. } = look {
        state.write(host)?;
    }
    let run = SourceRun::of(source, &state, fetch_error);
    let Some(applied) = &state.applied else {
        bail!(
            "no verified commit of `{}` ({}) to converge to yet{}",
            source.url,
            source.reference,
            match (&run.refused, &run.fetch_error) {
                (Some(refused), _) => format!(
                    ": `{}` is refused: {}",
                    short(&refused.commit),
                    refused.message
                ),
                (None, Some(error)) => format!(": {error}"),
                (None, None) => String::new(),
            }
        );
    };
    let checkout = tree(host, &git, &applied.commit)?;
    let profiles = checkout.profiles(&source.layers, &member)?;
    if let Look::Apply { .. } = look {
        let mut keep = vec![applied.commit.as_str()];
        keep.extend(state.head.as_ref().map(|head| head.commit.as_str()));
        prune_trees(host, &keep)?;
    }
    Ok(Prepared { profiles, run })
}

/// The last run's knowledge of the source, for a run that failed before it could say.
pub(crate) fn last_known(host: &Host, source: &Source) -> Option<SourceRun> {
    State::read(host, &source.url)
        .inspect_err(|error| tracing::debug!("{error:#}"))
        .ok()
        .map(|state| SourceRun::of(source, &state, None))
}

/// The profiles of the commit applied last, without fetching: what `berth watch` watches,
/// `validate`, `show` and `doctor` read.
pub(crate) fn applied_profiles(host: &Host, source: &Source) -> Result<Option<Vec<ProfileRef>>> {
    let state = State::read(host, &source.url)?;
    let Some(applied) = &state.applied else {
        return Ok(None);
    };
    let dir = trees_dir().join(&applied.commit);
    if !host.exists(&dir.join(COMPLETE)) {
        return Ok(None);
    }
    let member = Member {
        hostname: layers::hostname(host)?,
        group: source.group.clone(),
    };
    let checkout = Checkout::new(
        &host.path(&dir),
        format!("commit `{}`", short(&applied.commit)),
    );
    checkout.profiles(&source.layers, &member).map(Some)
}

/// The commit the ref points at on the server now (`git ls-remote`), for watch's poll.
pub(crate) fn remote_head(host: &Host, source: &Source) -> Result<Option<String>> {
    open(host, source)?.remote_head(&source.url, &source.reference)
}

/// The ref's head as the last fetch found it.
pub(crate) fn fetched_head(host: &Host, source: &Source) -> Option<String> {
    State::read(host, &source.url)
        .ok()
        .and_then(|state| state.head.map(|head| head.commit))
}

/// Records the fetched `head` in `state` and judges it, unless it is the commit applied last:
/// applied, or refused with its reason. A head whose layers cannot be read or checked fails the
/// run, as an invalid profile does, and is not recorded as applied.
fn take(
    host: &Host,
    git: &Git,
    source: &Source,
    member: &Member,
    state: &mut State,
    head: &str,
    look: Look,
) -> Result<()> {
    let committed_at = git.committed_at(head)?;
    state.head = Some(Commit {
        commit: head.to_owned(),
        committed_at,
        signer: None,
    });
    let applied = state.applied.as_ref().map(|applied| applied.commit.clone());
    if applied.as_deref() == Some(head) {
        state.refused = None;
        return Ok(());
    }
    let judged = match judge(host, git, source, member, head, applied.as_deref(), look) {
        Ok(judged) => judged,
        Err(error) => {
            if let Look::Apply { .. } = look {
                state.write(host)?;
            }
            return Err(error.context(format!(
                "commit `{}` of `{}` cannot be applied",
                short(head),
                source.reference
            )));
        }
    };
    match judged {
        Ok(signer) => {
            state.applied = Some(Commit {
                commit: head.to_owned(),
                committed_at,
                signer: Some(signer),
            });
            state.refused = None;
        }
        Err(refused) => {
            tracing::warn!(
                "refused `{}` of `{}` ({}): {}; converging to the last verified commit",
                short(&refused.commit),
                source.reference,
                refused.reason.as_str(),
                refused.message
            );
            state.refused = Some(refused);
        }
    }
    Ok(())
}

/// Judges `head`: `Ok(principal)` when it may be applied, else why not.
fn judge(
    host: &Host,
    git: &Git,
    source: &Source,
    member: &Member,
    head: &str,
    applied: Option<&str>,
    look: Look,
) -> Result<Result<String, Refused>> {
    let refuse = |reason: RefusalReason, message: String| {
        Ok(Err(Refused {
            reason,
            commit: head.to_owned(),
            message,
        }))
    };
    let signer = match git.signature(head)? {
        Signature::Good(signer) => signer,
        Signature::Unsigned => {
            return refuse(
                RefusalReason::Unsigned,
                "the commit is not signed; berth applies only commits signed by a key in `allowed_signers`".to_owned(),
            );
        }
        Signature::UnknownSigner => {
            return refuse(
                RefusalReason::UnknownSigner,
                format!(
                    "the commit is not signed by a key in `{}`",
                    source.allowed_signers
                ),
            );
        }
    };
    if let Some(applied) = applied
        && !git.descends(head, applied)?
    {
        let allowed = matches!(look, Look::Apply { allow_rewind: true });
        if !allowed {
            return refuse(
                RefusalReason::Rewind,
                format!(
                    "the ref moved to a commit that does not descend from `{}`, the one applied last (a force-push or a replayed older commit); `berth apply --allow-rewind` takes it",
                    short(applied)
                ),
            );
        }
        tracing::warn!(
            "`{}` does not descend from `{}`: taken, as --allow-rewind says",
            short(head),
            short(applied)
        );
    }
    let checkout = tree(host, git, head)?;
    let profiles = checkout.profiles(&source.layers, member)?;
    let (_, sources) = profile::read(&profiles, host)?;
    let secrets = profile::literal_secrets(&sources);
    if secrets.is_empty() {
        // Checked before it is recorded as applied: a broken merge fails the run, and the
        // host's metrics keep naming the commit it really runs.
        crate::resource::profile::load(&profiles, host)?;
    }
    if let Some(first) = secrets.first() {
        return refuse(
            RefusalReason::Secret,
            format!(
                "{first}{}",
                match secrets.len() {
                    1 => String::new(),
                    more => format!(" (and {} more)", more - 1),
                }
            ),
        );
    }
    Ok(Ok(signer))
}

/// Written last into a commit's tree: the tree is whole.
const COMPLETE: &str = ".berth-complete";

fn trees_dir() -> HostPath {
    host_path(SOURCE_DIR).join("trees")
}

/// The `.toml` files of a verified `commit`, written by berth from git's blobs (a link or a
/// submodule is never written, so none is ever followed).
fn tree(host: &Host, git: &Git, commit: &str) -> Result<Checkout> {
    let dir = trees_dir().join(commit);
    let shown = format!("commit `{}`", short(commit));
    if !host.exists(&dir.join(COMPLETE)) {
        host.ensure_dir(&dir, 0o700)?;
        for (path, blob) in git.toml_files(commit, READ_LIMIT)? {
            layers::repository_path(&path)
                .map_err(|message| anyhow::anyhow!("`{path}` of {shown} {message}"))?;
            let bytes = git.blob(&blob)?;
            let file = dir.join(&path);
            if let Some(parent) = file.parent() {
                host.ensure_dir(&parent, 0o700)?;
            }
            host.write_atomic(&file, &bytes, 0o600)?;
        }
        host.write_atomic(&dir.join(COMPLETE), commit.as_bytes(), 0o600)?;
    }
    Ok(Checkout::new(&host.path(&dir), shown))
}

/// Removes the trees of every commit but the one applied and the ref's head (refused, it is
/// judged again at the next fetch): a host that follows a busy ref for years keeps two.
fn prune_trees(host: &Host, keep: &[&str]) -> Result<()> {
    let dir = trees_dir();
    for name in host.list_dir(&dir)? {
        if keep.contains(&name.as_str()) {
            continue;
        }
        host.remove_tree(&dir.join(&name))?;
    }
    Ok(())
}

/// The bare repository and how to run git on it; reads the deploy token.
fn open(host: &Host, source: &Source) -> Result<Git> {
    let dir = host_path(SOURCE_DIR);
    host.ensure_dir(&dir, 0o700)?;
    let home = dir.join("home");
    host.ensure_dir(&home, 0o700)?;
    let credentials = source
        .token_file
        .as_ref()
        .map(|file| read_deploy_token(host, file))
        .transpose()?;
    let (_, FileMode(_)) = host.read_trusted(&source.allowed_signers)?.with_context(|| {
        format!(
            "the allowed signers file `{}` does not exist: berth applies only commits signed by a key in it",
            source.allowed_signers
        )
    })?;
    let repository = dir.join("git");
    let git = Git {
        dir: host.path(&repository),
        home: host.path(&home),
        allowed_signers: host.path(&source.allowed_signers),
        credentials,
    };
    if !host.exists(&repository.join("HEAD")) {
        git.init()?;
    }
    Ok(git)
}

/// `USER:TOKEN` from a file of root's alone (0600), as a runner's token file.
fn read_deploy_token(host: &Host, file: &HostPath) -> Result<Secret> {
    let (text, FileMode(mode)) = host
        .read_trusted(file)?
        .with_context(|| format!("the deploy token file `{file}` does not exist"))?;
    if mode & 0o077 != 0 {
        bail!(
            "refusing the deploy token file `{file}`: other users can read it (mode {mode:04o}); `chmod 600 {file}`"
        );
    }
    let token = text.trim();
    if !token.contains(':') || token.contains(['\n', '\r']) {
        bail!("the deploy token file `{file}` must hold one line, `USER:TOKEN`");
    }
    Ok(Secret::new(token))
}

/// The short form of a commit, as GitLab shows it (8 characters).
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..8).unwrap_or(commit)
}

/// `validate --source DIR` and `show --source DIR`: the profiles each host gets from the
/// checkout `dir`. One host (`--hostname`, `--group`), or with `all` every `hosts/*.toml`,
/// each with every `groups/*.toml` (or only `group`): a host file does not say its group
/// (profiles know no `[source]`), so every pairing a host could be given is checked, and with
/// several each is named `host H, group G`.
pub(crate) fn checkout_members(
    dir: &std::path::Path,
    layers: &[layers::Layer],
    hostname: Option<&str>,
    group: Option<&str>,
    all: bool,
) -> Result<Vec<(Option<String>, Vec<ProfileRef>)>> {
    let dir =
        std::path::absolute(dir).with_context(|| format!("failed to find `{}`", dir.display()))?;
    let checkout = Checkout::new(&dir, format!("`{}`", dir.display()));
    let checked = |name: &str, what: &str| -> Result<String> {
        if layers::valid_name(name) {
            Ok(name.to_owned())
        } else {
            bail!("`{name}` is not a {what} name (letters, digits, `-`, `_`, `.`)")
        }
    };
    let group = group.map(|group| checked(group, "group")).transpose()?;
    if !all {
        let hostname = hostname.context("--source needs --hostname NAME, or --all")?;
        let member = Member {
            hostname: checked(hostname, "host")?,
            group,
        };
        return Ok(vec![(None, checkout.profiles(layers, &member)?)]);
    }
    let hosts = checkout.stems("hosts")?;
    if hosts.is_empty() {
        bail!("`{}` has no `hosts/*.toml` for --all", dir.display());
    }
    let groups: Vec<Option<String>> = match group {
        Some(group) => vec![Some(group)],
        None => {
            let groups = checkout.stems("groups")?;
            if groups.is_empty() {
                vec![None]
            } else {
                groups.into_iter().map(Some).collect()
            }
        }
    };
    let mut members = Vec::new();
    for hostname in &hosts {
        for group in &groups {
            let named = format!(
                "host {hostname}, group {}",
                group.as_deref().unwrap_or("(none)")
            );
            let member = Member {
                hostname: hostname.clone(),
                group: group.clone(),
            };
            members.push((Some(named), checkout.profiles(layers, &member)?));
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> SourceRun {
        SourceRun {
            url: "https://gitlab.example.com/infra/runner-profiles.git".into(),
            reference: "stable".into(),
            commit: Some("3f9c2a1b0d4e5f60718293a4b5c6d7e8f9012345".into()),
            signer: Some("alice@example.com".into()),
            committed_at: Some(1_796_600_000),
            ref_commit: Some("77e0d4c2aaaabbbbccccddddeeeeffff00001111".into()),
            ref_committed_at: Some(1_796_603_600),
            refused: None,
            fetch_error: None,
            fetch_failures_total: 3,
        }
    }

    /// The names docs/fleet/berth.rules.yml alerts on: exactly these.
    #[test]
    fn the_metrics_are_the_ones_the_fleet_rules_use() {
        let metrics = run().metrics();
        for line in [
            "berth_source_info{url=\"https://gitlab.example.com/infra/runner-profiles.git\",ref=\"stable\",commit=\"3f9c2a1b0d4e5f60718293a4b5c6d7e8f9012345\"} 1\n",
            "berth_source_commit_timestamp_seconds 1796600000\n",
            "berth_source_ref_commit_timestamp_seconds{ref=\"stable\"} 1796603600\n",
            "# TYPE berth_source_fetch_failures_total counter\nberth_source_fetch_failures_total 3\n",
            "berth_source_refused{reason=\"\"} 0\n",
        ] {
            assert!(metrics.contains(line), "{line}{metrics}");
        }
        let refused = SourceRun {
            refused: Some(Refused {
                reason: RefusalReason::UnknownSigner,
                commit: "77e0d4c2aaaabbbbccccddddeeeeffff00001111".into(),
                message: "the commit is not signed by a key in `/etc/berth/allowed_signers`".into(),
            }),
            ..run()
        };
        assert!(
            refused
                .metrics()
                .contains("berth_source_refused{reason=\"unknown-signer\"} 1\n")
        );
        assert_eq!(
            refused.describe(),
            "source: https://gitlab.example.com/infra/runner-profiles.git@3f9c2a1b (ref stable, signed by alice@example.com)\nsource refused: 77e0d4c2 of ref stable (unknown-signer): the commit is not signed by a key in `/etc/berth/allowed_signers`"
        );
        let none = SourceRun {
            commit: None,
            committed_at: None,
            ..run()
        };
        assert!(!none.metrics().contains("berth_source_info{"));
        assert!(
            !none
                .metrics()
                .contains("\nberth_source_commit_timestamp_seconds ")
        );
    }
}
