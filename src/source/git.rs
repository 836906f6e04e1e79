//! The `git` CLI, run so that nothing but berth decides what it does: no system or user config
//! (`GIT_CONFIG_NOSYSTEM`, `HOME` an empty private directory), no hooks, no fsmonitor, no
//! prompt, only the http(s) transports, no redirects, objects checked as they arrive. Its whole
//! environment is set here (`full_env`), and its config goes through `GIT_CONFIG_COUNT`, not
//! `-c`: argv is readable by every user in `/proc/PID/cmdline`, the environment only by root.
//! The deploy token travels the same way, as an `Authorization` header, and so is never in
//! argv, `.git/config` or a credential store.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{
    host::exec::{CommandError, CommandLine, Stderr, spawn_error},
    secret::Secret,
};

/// A fetch of a small profile repository takes seconds; a wedged server must not hang the timer.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The bare repository berth fetches into, and how git is run on it.
pub(super) struct Git {
    /// The bare repository (`/var/lib/berth/source/git`, under the root).
    pub dir: PathBuf,
    /// An empty directory of root's alone: git's `HOME`, so no user's config is read.
    pub home: PathBuf,
    /// The allowed-signers file, where git reads it.
    pub allowed_signers: PathBuf,
    /// `USER:TOKEN`, when the repository needs a deploy token.
    pub credentials: Option<Secret>,
}

/// What `git verify-commit` and `%G?` say of a commit's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signature {
    /// Signed by a key of the allowed signers: its principal.
    Good(String),
    Unsigned,
    /// Signed, but by a key the allowed signers do not hold (or the signature is bad).
    UnknownSigner,
}

impl Git {
    fn environment(&self, with_credentials: bool) -> Vec<(String, String)> {
        let mut config: Vec<(&str, String)> = vec![
            ("core.hooksPath", "/dev/null".to_owned()),
            ("core.fsmonitor", "false".to_owned()),
            ("protocol.allow", "never".to_owned()),
            // http too: the signature, not the transport, is what berth trusts (and the test
            // server is plain http on 127.0.0.1); docs/source.md says to use https.
            ("protocol.https.allow", "always".to_owned()),
            ("protocol.http.allow", "always".to_owned()),
            ("http.followRedirects", "false".to_owned()),
            ("credential.helper", String::new()),
            ("transfer.fsckObjects", "true".to_owned()),
            ("gc.auto", "0".to_owned()),
            ("maintenance.auto", "false".to_owned()),
            ("gpg.format", "ssh".to_owned()),
            (
                "gpg.ssh.allowedSignersFile",
                self.allowed_signers.display().to_string(),
            ),
        ];
        if with_credentials && let Some(credentials) = &self.credentials {
            config.push((
                "http.extraHeader",
                format!(
                    "Authorization: Basic {}",
                    base64(credentials.expose().as_bytes())
                ),
            ));
        }
        let mut environment = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_owned(), self.home.display().to_string()),
            (
                "XDG_CONFIG_HOME".to_owned(),
                self.home.display().to_string(),
            ),
            ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
            ("GIT_CONFIG_GLOBAL".to_owned(), "/dev/null".to_owned()),
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_DIR".to_owned(), self.dir.display().to_string()),
            ("LC_ALL".to_owned(), "C".to_owned()),
            ("GIT_CONFIG_COUNT".to_owned(), config.len().to_string()),
        ];
        // A host behind a proxy or with its own CA reaches its GitLab as every other client does.
        for name in PASSED_THROUGH {
            if let Ok(value) = std::env::var(name) {
                environment.push((name.to_owned(), value));
            }
        }
        for (index, (key, value)) in config.into_iter().enumerate() {
            environment.push((format!("GIT_CONFIG_KEY_{index}"), key.to_owned()));
            environment.push((format!("GIT_CONFIG_VALUE_{index}"), value));
        }
        environment
    }

    /// Runs git with `args`; a non-zero exit is returned, not an error.
    fn run_unchecked(
        &self,
        args: &[&str],
        with_credentials: bool,
    ) -> Result<(bool, Vec<u8>, String), CommandError> {
        let command = CommandLine::new("git", args.iter().copied());
        tracing::debug!("running `{command}`");
        let handle = duct::cmd("git", args)
            .full_env(self.environment(with_credentials))
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .start()
            .map_err(|source| spawn_error(&command, source))?;
        let Some(output) = handle
            .wait_timeout(TIMEOUT)
            .map_err(|source| spawn_error(&command, source))?
        else {
            let _ = handle.kill();
            return Err(CommandError::TimedOut {
                command: command.to_string(),
                timeout: TIMEOUT,
            });
        };
        let stderr = self.scrub(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status.success(), output.stdout.clone(), stderr))
    }

    /// Whatever git says of a request goes to berth's logs and report: never with the token in
    /// it, whole, alone or as the header carries it.
    fn scrub(&self, text: &str) -> String {
        let Some(credentials) = &self.credentials else {
            return text.to_owned();
        };
        let whole = credentials.expose();
        let token = whole.split_once(':').map_or(whole, |(_, token)| token);
        let mut text = credentials.scrub(text);
        for secret in [token.to_owned(), base64(whole.as_bytes())] {
            text = Secret::new(secret).scrub(&text);
        }
        text
    }

    fn run(&self, args: &[&str], with_credentials: bool) -> Result<String> {
        let (success, stdout, stderr) = self.run_unchecked(args, with_credentials)?;
        if !success {
            let stderr = stderr.trim();
            return Err(CommandError::Failed {
                command: CommandLine::new("git", args.iter().copied()).to_string(),
                code: None,
                stderr: (!stderr.is_empty()).then(|| Stderr(stderr.to_owned())),
            }
            .into());
        }
        String::from_utf8(stdout).context("git printed what is not UTF-8")
    }

    /// Makes the bare repository (the caller looked: there is none yet).
    pub(super) fn init(&self) -> Result<()> {
        self.run(&["init", "--quiet", "--bare"], false)?;
        Ok(())
    }

    /// Fetches `reference` (a branch or tag) of `url` with its whole history; returns the
    /// commit it points at.
    pub(super) fn fetch(&self, url: &str, reference: &str) -> Result<String> {
        let refspec = format!("+{reference}:{FETCHED}");
        self.run(
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--",
                url,
                &refspec,
            ],
            true,
        )?;
        self.commit_of(FETCHED)?
            .with_context(|| format!("`{reference}` of `{url}` is not a commit"))
    }

    /// The commit `name` points at, when it does.
    pub(super) fn commit_of(&self, name: &str) -> Result<Option<String>> {
        let spec = format!("{name}^{{commit}}");
        let (success, stdout, _) =
            self.run_unchecked(&["rev-parse", "--verify", "--quiet", &spec], false)?;
        Ok(success.then(|| String::from_utf8_lossy(&stdout).trim().to_owned()))
    }

    /// The commit ref `reference` of `url` points at now (`git ls-remote`), without fetching.
    pub(super) fn remote_head(&self, url: &str, reference: &str) -> Result<Option<String>> {
        let listed = self.run(&["ls-remote", "--", url, reference], true)?;
        // An annotated tag is listed twice: the tag, then (`^{}`) the commit it names.
        let mut head = None;
        for line in listed.lines() {
            let Some((object, name)) = line.split_once('\t') else {
                continue;
            };
            let wanted = [
                format!("refs/heads/{reference}"),
                format!("refs/tags/{reference}"),
            ];
            if wanted.iter().any(|wanted| wanted == name) {
                head = head.or(Some(object.to_owned()));
            } else if wanted.iter().any(|wanted| format!("{wanted}^{{}}") == name) {
                head = Some(object.to_owned());
            }
        }
        Ok(head)
    }

    /// Who signed `commit`, as the allowed signers know them.
    pub(super) fn signature(&self, commit: &str) -> Result<Signature> {
        let format = self.run(&["log", "-1", "--format=%G?%x00%GS", commit], false)?;
        let (status, principal) = format.trim_end().split_once('\0').unwrap_or(("N", ""));
        if status == "N" {
            return Ok(Signature::Unsigned);
        }
        // `%G?` alone would trust git's formatting: verify-commit's exit is the verdict.
        let (verified, _, _) = self.run_unchecked(&["verify-commit", commit], false)?;
        Ok(if verified && status == "G" && !principal.is_empty() {
            Signature::Good(principal.to_owned())
        } else {
            Signature::UnknownSigner
        })
    }

    /// True when `descendant` has `ancestor` in its history (or is it).
    pub(super) fn descends(&self, descendant: &str, ancestor: &str) -> Result<bool> {
        let (success, _, stderr) = self.run_unchecked(
            &["merge-base", "--is-ancestor", ancestor, descendant],
            false,
        )?;
        if !success && !stderr.trim().is_empty() {
            bail!(
                "failed to compare `{ancestor}` with `{descendant}`: {}",
                stderr.trim()
            );
        }
        Ok(success)
    }

    /// The committer time of `commit`, in Unix seconds.
    pub(super) fn committed_at(&self, commit: &str) -> Result<i64> {
        let text = self.run(&["log", "-1", "--format=%ct", commit], false)?;
        text.trim()
            .parse()
            .with_context(|| format!("git gave no committer time for `{commit}`"))
    }

    /// The regular `.toml` files of `commit`'s tree (links and submodules are not files), with
    /// their blob ids: `(path, blob)`.
    pub(super) fn toml_files(&self, commit: &str, limit: u64) -> Result<Vec<(String, String)>> {
        let listed = self.run(
            &["ls-tree", "-r", "-z", "--long", "--full-tree", commit],
            false,
        )?;
        let mut files = Vec::new();
        for entry in listed.split('\0').filter(|entry| !entry.is_empty()) {
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let fields: Vec<&str> = meta.split_whitespace().collect();
            let [mode, "blob", blob, size] = fields.as_slice() else {
                continue;
            };
            if !matches!(*mode, "100644" | "100755") || !path.ends_with(".toml") {
                continue;
            }
            if size.parse::<u64>().map_or(true, |size| size > limit) {
                bail!("`{path}` of `{commit}` is larger than berth reads ({limit} bytes)");
            }
            files.push((path.to_owned(), (*blob).to_owned()));
        }
        Ok(files)
    }

    /// A blob's bytes.
    pub(super) fn blob(&self, blob: &str) -> Result<Vec<u8>> {
        let (success, stdout, stderr) = self.run_unchecked(&["cat-file", "blob", blob], false)?;
        if !success {
            bail!("failed to read blob `{blob}`: {}", stderr.trim());
        }
        Ok(stdout)
    }
}

/// The only variables of berth's own environment git sees, besides `PATH`: how to reach the
/// server (curl's proxy variables) and which CAs to trust.
const PASSED_THROUGH: [&str; 9] = [
    "http_proxy",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Where a fetch leaves the ref's head in the bare repository.
pub(super) const FETCHED: &str = "refs/berth/fetched";

/// RFC 4648 base64, for the Basic authorization header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_git_says_is_scrubbed_of_the_token_in_every_form() {
        let git = Git {
            dir: PathBuf::new(),
            home: PathBuf::new(),
            allowed_signers: PathBuf::new(),
            credentials: Some(Secret::new("deploy:s3cr3t")),
        };
        assert_eq!(
            git.scrub("fatal: deploy:s3cr3t s3cr3t ZGVwbG95OnMzY3IzdA== refused"),
            "fatal: *** *** *** refused"
        );
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("deploy:s3cr3t", "ZGVwbG95OnMzY3IzdA=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
