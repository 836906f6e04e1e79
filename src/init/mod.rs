//! `berth init`: the first two files of a host, `/etc/berth/profiles/site.toml` (the GitLab URL,
//! one runner whose token is read from `/etc/berth/tokens/NAME`, and the `[runners.NAME.docker]`
//! settings the chosen topology needs, each with why) and `/etc/berth/berth.toml` (`profiles =
//! [TOPOLOGY, "site"]`). The templates are the TOML files beside this one, edited with
//! toml_edit so their comments reach the host as written.
//!
//! It never overwrites: when a file is there already it changes nothing and says which. It
//! neither reads tokens nor talks to Docker or GitLab.

use anyhow::{Result, bail};
use toml_edit::{DocumentMut, Item, Key, value};

use crate::{
    cli::Topology,
    host::{Host, HostPath, host_path},
    settings::HOST_CONFIG,
};

const SITE_TEMPLATE: &str = include_str!("site.toml");
const BERTH_TOML_TEMPLATE: &str = include_str!("berth.toml");
/// The runner name and URL the templates are written with.
const TEMPLATE_RUNNER: &str = "RUNNER";
const TEMPLATE_TOPOLOGY: &str = "TOPOLOGY";
/// What `--url` defaults to: `.invalid` never resolves (RFC 6761), and `validate` refuses it
/// with what to do, so a site.toml written without `--url` cannot reach anyone by mistake.
pub(crate) const PLACEHOLDER_URL: &str = "https://gitlab.example.invalid";

/// Where the runners' token files live.
const TOKENS_DIRECTORY: &str = "/etc/berth/tokens";

/// Where the site layer goes: where `-p site` and berth.toml's `"site"` find it.
const SITE_PROFILE: &str = "/etc/berth/profiles/site.toml";

/// What `berth init` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct InitRequest {
    pub topology: Topology,
    pub url: Option<String>,
    pub runner: String,
}

/// What `berth init` wrote, for the printer.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    /// The host paths written, in order.
    pub files: Vec<HostPath>,
    /// berth.toml already said `profiles = [TOPOLOGY, "site"]`, so it was left as it is.
    pub kept_berth_toml: bool,
    pub token_file: HostPath,
    pub placeholder_url: bool,
}

fn docker_template(topology: Topology) -> &'static str {
    match topology {
        Topology::Dind => include_str!("docker-dind.toml"),
        Topology::DindTls => include_str!("docker-dind-tls.toml"),
        Topology::Socket => include_str!("docker-socket.toml"),
        Topology::DindService => include_str!("docker-dind-service.toml"),
        Topology::DindSysbox => include_str!("docker-dind-sysbox.toml"),
    }
}

/// A runner name becomes a file name (`/etc/berth/tokens/NAME`) and a TOML key.
fn check_runner_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        bail!(
            "`{name}` is not a runner name berth init takes: letters, digits, `-`, `_` and `.`, not starting with `.` (it names the token file /etc/berth/tokens/NAME)"
        );
    }
    Ok(())
}

/// The text of site.toml for `request`.
pub(crate) fn render_site(request: &InitRequest) -> Result<String> {
    let text = format!("{SITE_TEMPLATE}{}", docker_template(request.topology));
    let mut document: DocumentMut = text.parse().expect("the site template is TOML");
    let runners = document["runners"]
        .as_table_mut()
        .expect("the template has [runners]");
    let (_, mut runner) = runners
        .remove_entry(TEMPLATE_RUNNER)
        .expect("the template has [runners.RUNNER]");
    let table = runner.as_table_mut().expect("[runners.RUNNER] is a table");
    if let Some(url) = &request.url {
        set_keeping_comments(&mut table["url"], url);
    }
    let token_file = token_file(&request.runner).to_string();
    set_keeping_comments(&mut table["token_file"], &token_file);
    runners.insert_formatted(&Key::new(request.runner.as_str()), runner);
    // The comments name the token file in the commands to run, and the topology chosen.
    Ok(document
        .to_string()
        .replace(&format!("/etc/berth/tokens/{TEMPLATE_RUNNER}"), &token_file)
        .replace(
            &format!("[{TEMPLATE_TOPOLOGY}, \"site\"]"),
            &format!("[\"{}\", \"site\"]", request.topology.profile_name()),
        ))
}

/// The text of berth.toml for `topology`.
pub(crate) fn render_berth_toml(topology: Topology) -> String {
    let mut document: DocumentMut = BERTH_TOML_TEMPLATE
        .parse()
        .expect("the berth.toml template is TOML");
    let profiles = document["profiles"]
        .as_array_mut()
        .expect("the template has profiles = [...]");
    let name = profiles
        .iter_mut()
        .find(|entry| entry.as_str() == Some(TEMPLATE_TOPOLOGY))
        .expect("the template names TOPOLOGY");
    let decor = name.decor().clone();
    *name = topology.profile_name().into();
    *name.decor_mut() = decor;
    document.to_string()
}

/// Replaces a value and keeps the whitespace and comments around it.
fn set_keeping_comments(item: &mut Item, text: &str) {
    let decor = item.as_value().map(|old| old.decor().clone());
    *item = value(text);
    if let (Some(decor), Some(new)) = (decor, item.as_value_mut()) {
        *new.decor_mut() = decor;
    }
}

fn token_file(runner: &str) -> HostPath {
    HostPath::new(format!("{TOKENS_DIRECTORY}/{runner}")).expect("an absolute path")
}

/// Writes site.toml and berth.toml, or nothing at all when either is in the way.
pub(crate) fn run(host: &Host, request: &InitRequest) -> Result<Written> {
    check_runner_name(&request.runner)?;
    let site_path = host_path(SITE_PROFILE);
    let berth_toml_path = host_path(HOST_CONFIG);
    let site = render_site(request)?;
    let berth_toml = render_berth_toml(request.topology);
    if host.exists(&site_path) {
        bail!(
            "`{site_path}` exists; berth init never overwrites a file and changed nothing (edit it, or move it away and run berth init again)"
        );
    }
    let kept_berth_toml = match host.read_optional(&berth_toml_path)? {
        None => false,
        Some(text) if names_these_profiles(&text, request.topology) => true,
        Some(_) => bail!(
            "`{berth_toml_path}` exists; berth init never overwrites a file and changed nothing: set `profiles = [\"{}\", \"site\"]` in it (or move it away), then run berth init again",
            request.topology.profile_name()
        ),
    };
    // Where the next step puts the token: only root may look inside.
    host.ensure_dir(&host_path(TOKENS_DIRECTORY), 0o700)?;
    // berth.toml first: an init killed between the two writes leaves a berth.toml that names
    // these profiles, which the next init keeps, and no site.toml, which it writes. (The other
    // way round, the site.toml left behind would refuse every init after.) Meanwhile a timer
    // run fails to find `site` and changes nothing.
    if !kept_berth_toml {
        host.write_atomic(&berth_toml_path, berth_toml.as_bytes(), 0o644)?;
    }
    host.write_atomic(&site_path, site.as_bytes(), 0o644)?;
    let mut files = vec![site_path];
    if !kept_berth_toml {
        files.push(berth_toml_path);
    }
    Ok(Written {
        files,
        kept_berth_toml,
        token_file: token_file(&request.runner),
        placeholder_url: request.url.is_none(),
    })
}

/// True when an existing berth.toml already says what init would write.
fn names_these_profiles(text: &str, topology: Topology) -> bool {
    let Ok(document) = text.parse::<DocumentMut>() else {
        return false;
    };
    let profiles: Option<Vec<&str>> = document
        .get("profiles")
        .and_then(Item::as_array)
        .map(|array| array.iter().filter_map(|entry| entry.as_str()).collect());
    profiles.as_deref() == Some(&[topology.profile_name(), "site"])
}

/// What to do next, in order, as the printer shows it.
pub(crate) fn next_steps(written: &Written) -> Vec<String> {
    let mut steps = Vec::new();
    if written.placeholder_url {
        steps.push(format!(
            "put your GitLab's URL in `{SITE_PROFILE}` (`url`; `{PLACEHOLDER_URL}` is a placeholder)"
        ));
    }
    steps.push(format!(
        "save the runner's token (glrt-…, from GitLab: Runners → New runner) to `{}`, readable by root only: `sudo install -m 0600 /dev/null {0}` then `sudoedit {0}`",
        written.token_file
    ));
    steps.push("`berth plan`: what apply will do".to_owned());
    steps.push(
        "`sudo berth apply`: converge the host and register the runner with GitLab".to_owned(),
    );
    steps.push(
        "`berth doctor`: check the host end to end, the token with GitLab included".to_owned(),
    );
    steps
}

#[cfg(test)]
mod tests;
