//! `[hygiene]`: the thresholds berth keeps every daemon it manages below, as written and as
//! checked. Without the section nothing is pruned.

use serde::Deserialize;

use crate::profile::{Layers, source::KeyPath, source::LocatedError};

/// `[hygiene]` as written; every key optional (its default below).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HygieneSection {
    /// Free space to keep on the filesystem of each daemon's data root: `"20%"`.
    pub keep_free: Option<String>,
    /// An image no container used for this long may go: `"72h"`.
    pub unused_images_after: Option<String>,
    /// The most build cache a daemon keeps: `"20GB"`.
    pub build_cache_max: Option<String>,
    /// A volume gitlab-runner made for jobs, unused for this long, may go: `"168h"`.
    pub job_volumes_after: Option<String>,
}

/// `[hygiene]` checked, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HygieneSpec {
    /// Percent of the data root's filesystem to keep free, 0 to 99.
    pub keep_free_percent: u8,
    /// Seconds.
    pub unused_images_after: u64,
    /// Bytes.
    pub build_cache_max: u64,
    /// Seconds.
    pub job_volumes_after: u64,
}

const DEFAULT_KEEP_FREE: &str = "20%";
const DEFAULT_UNUSED_IMAGES_AFTER: &str = "72h";
const DEFAULT_BUILD_CACHE_MAX: &str = "20GB";
const DEFAULT_JOB_VOLUMES_AFTER: &str = "168h";

/// Checks `[hygiene]`, each bad value placed at its file:line:key; every one is reported.
pub(crate) fn resolve(
    section: Option<HygieneSection>,
    layers: &Layers,
) -> Result<Option<HygieneSpec>, Vec<LocatedError>> {
    let Some(section) = section else {
        return Ok(None);
    };
    let key = KeyPath::parse_dotted("hygiene");
    let mut errors = Vec::new();
    let mut check = |name: &str,
                     value: Option<String>,
                     default: &str,
                     parse: fn(&str) -> Result<u64, String>| {
        let value = value.unwrap_or_else(|| default.to_owned());
        parse(&value)
            .map_err(|message| errors.push(layers.error_at(&key.key(name), message)))
            .unwrap_or_default()
    };
    let keep_free = check(
        "keep_free",
        section.keep_free,
        DEFAULT_KEEP_FREE,
        parse_percent,
    );
    let unused_images_after = check(
        "unused_images_after",
        section.unused_images_after,
        DEFAULT_UNUSED_IMAGES_AFTER,
        parse_age,
    );
    let build_cache_max = check(
        "build_cache_max",
        section.build_cache_max,
        DEFAULT_BUILD_CACHE_MAX,
        parse_bytes,
    );
    let job_volumes_after = check(
        "job_volumes_after",
        section.job_volumes_after,
        DEFAULT_JOB_VOLUMES_AFTER,
        parse_age,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(HygieneSpec {
        keep_free_percent: u8::try_from(keep_free).expect("checked to be below 100"),
        unused_images_after,
        build_cache_max,
        job_volumes_after,
    }))
}

/// `"20%"`: a whole percent from 0 to 99 (100 % free can never hold).
fn parse_percent(text: &str) -> Result<u64, String> {
    let digits = text
        .strip_suffix('%')
        .ok_or_else(|| format!("`{text}` is not a percentage: write it with `%`, as in \"20%\""))?;
    match digits.parse::<u64>() {
        Ok(percent) if percent < 100 => Ok(percent),
        Ok(_) => Err(format!(
            "`{text}` cannot be kept free: a percentage from 0% to 99%"
        )),
        Err(_) => Err(format!(
            "`{text}` is not a percentage: a whole number from 0% to 99%, as in \"20%\""
        )),
    }
}

/// `"72h"`, `"7d"`, `"1h 30m"` (jiff's friendly durations, days of 24 hours): seconds.
fn parse_age(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration: write it as \"72h\", \"7d\" or \"90m\"");
    let span: jiff::Span = text.parse().map_err(|_| bad())?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    u64::try_from(duration.as_secs()).map_err(|_| bad())
}

/// `"20GB"`, `"500MB"`, `"1.5TB"`, `"8GiB"`: bytes (decimal units as Docker prints them, and
/// the binary ones).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a size: write it as \"20GB\", \"500MB\" or \"8GiB\"");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.trim() {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes > 1e18 {
        return Err(bad());
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "finite, non-negative and below 1e18"
    )]
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_written_or_refused() {
        assert_eq!(parse_percent("20%"), Ok(20));
        assert_eq!(parse_percent("99%"), Ok(99));
        assert!(parse_percent("20").is_err());
        assert!(parse_percent("120%").is_err());
        assert!(parse_percent("100%").is_err());
        assert!(parse_percent("-1%").is_err());
        assert_eq!(parse_age("72h"), Ok(72 * 3600));
        assert_eq!(parse_age("7d"), Ok(7 * 86400));
        assert_eq!(parse_age("0s"), Ok(0));
        assert!(parse_age("3 parsecs").is_err());
        assert!(parse_age("-1h").is_err());
        assert_eq!(parse_bytes("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("8GiB"), Ok(8 * 1024 * 1024 * 1024));
        assert!(parse_bytes("20").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
