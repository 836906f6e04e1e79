//! Resolves what the user typed, `/etc/berth/berth.toml` and the defaults into the settings of
//! one run, before anything else happens.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{
    cli::{Cli, Command},
    host::{Host, host_path},
    profile::{DEFAULT_PROFILE, ProfileRef},
    resource::Options,
    toml_source::TomlSource,
};

/// The host's own berth settings.
pub const HOST_CONFIG: &str = "/etc/berth/berth.toml";

/// `/etc/berth/berth.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The profiles this host converges to when `-p` is not given, in layering order.
    pub profiles: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Settings {
    pub host: Host,
    pub profiles: Vec<ProfileRef>,
    pub options: Options,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> Result<Self> {
        let root = absolute(&cli.root)?;
        if !root.is_dir() {
            bail!("the root `{}` is not a directory", cli.root.display());
        }
        let host = Host::new(root);
        let profiles = if cli.profiles.is_empty() {
            Self::host_profiles(&host)?
        } else {
            cli.profiles
                .iter()
                .map(|text| ProfileRef::parse_cli(text))
                .collect()
        };
        let options = match &cli.command {
            Command::Plan(args) | Command::Apply(args) => Options {
                allow_storage_driver_change: args.allow_storage_driver_change,
                adopt: args.adopt,
            },
            Command::Validate => Options::default(),
        };
        Ok(Self {
            host,
            profiles,
            options,
        })
    }

    /// The profiles named in berth.toml, else the embedded default.
    fn host_profiles(host: &Host) -> Result<Vec<ProfileRef>> {
        let path = host_path(HOST_CONFIG);
        let Some(text) = host.read_optional(&path)? else {
            return Ok(vec![ProfileRef::Name(DEFAULT_PROFILE.to_owned())]);
        };
        let source = TomlSource::new(path.to_string(), text);
        let (config, _) = source
            .parse::<HostConfig>()
            .with_context(|| format!("invalid berth settings `{path}`"))?;
        match config.profiles {
            Some(profiles) if !profiles.is_empty() => Ok(profiles
                .iter()
                .map(|text| ProfileRef::parse_host(text))
                .collect()),
            _ => Ok(vec![ProfileRef::Name(DEFAULT_PROFILE.to_owned())]),
        }
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("failed to read the current directory")?
            .join(path))
    }
}
