//! gitlab-runner's config.toml as a document edited key by key (toml_edit), so that whatever
//! berth does not own survives a write: comments, key order, indentation, `[[runners]]`
//! entries of other tools, keys berth does not know, and what gitlab-runner writes itself (`id`,
//! `token`, `token_obtained_at`, `token_expires_at`; it rotates its own token and rewrites the
//! file). Clobbered config.toml files and lost runner-written fields are a top complaint about
//! other tools (ansible-gitlab-runner #37 #155 #420, PR #250).
//!
//! Pure functions over text and documents; reading and writing the file is the resources' job.
//! [`redact`] makes any config.toml text safe to show: every token and secret value becomes
//! `"***"`.

use anyhow::{Result, anyhow, bail};
use serde_json::Value as Json;
use toml_edit::{DocumentMut, Item, TableLike, Value};

use crate::{
    host::HostPath,
    plan::FieldChange,
    profile::source::toml_to_json,
    secret::{REDACTED, Secret, is_secret_key},
};

/// Reads config.toml. Text that does not parse is an error, so the file is never overwritten:
/// gitlab-runner keeps running on the copy it loaded, and berth must not make that worse.
pub(crate) fn parse(path: &HostPath, text: &str) -> Result<DocumentMut> {
    let document: DocumentMut = text.parse().map_err(|error: toml_edit::TomlError| {
        // Only the place and the parser's words: its usual excerpt of the line could be a
        // `token = "..."` line.
        let place = error.span().map_or_else(String::new, |span| {
            let (line, column) = crate::profile::source::line_column(text, span.start);
            format!("line {line}, column {column}: ")
        });
        anyhow!("{place}{}", error.message().trim()).context(format!(
            "`{path}` is not valid TOML; berth will not overwrite it: fix it by hand first"
        ))
    })?;
    match document.get("runners") {
        None | Some(Item::ArrayOfTables(_)) => {}
        Some(_) => bail!(
            "`{path}`: `runners` is not a list of `[[runners]]` tables; berth will not overwrite it: fix it by hand first"
        ),
    }
    Ok(document)
}

/// The index of the `[[runners]]` entry named `name`.
pub(crate) fn find(document: &DocumentMut, name: &str) -> Option<usize> {
    document
        .get("runners")?
        .as_array_of_tables()?
        .iter()
        .position(|entry| entry.get("name").and_then(Item::as_str) == Some(name))
}

/// Names that more than one `[[runners]]` entry carries, with how many: gitlab-runner runs
/// every entry, and [`find`] gives berth the first alone.
pub(crate) fn duplicate_names(document: &DocumentMut) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for entry in document
        .get("runners")
        .and_then(Item::as_array_of_tables)
        .into_iter()
        .flat_map(toml_edit::ArrayOfTables::iter)
    {
        if let Some(name) = entry.get("name").and_then(Item::as_str) {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(name, count)| (name.to_owned(), count))
        .collect()
}

fn entry(document: &DocumentMut, index: usize) -> Option<&toml_edit::Table> {
    document.get("runners")?.as_array_of_tables()?.get(index)
}

pub(crate) fn entry_mut(document: &mut DocumentMut, index: usize) -> Option<&mut toml_edit::Table> {
    document
        .get_mut("runners")?
        .as_array_of_tables_mut()?
        .get_mut(index)
}

/// A string key of an entry (`url`, `executor`).
pub(crate) fn entry_str(document: &DocumentMut, index: usize, key: &str) -> Option<String> {
    entry(document, index)?
        .get(key)
        .and_then(Item::as_str)
        .map(str::to_owned)
}

/// The entry's `token`, as a secret.
pub(crate) fn entry_token(document: &DocumentMut, index: usize) -> Option<Secret> {
    entry_str(document, index, "token")
        .filter(|token| !token.is_empty())
        .map(Secret::new)
}

pub(crate) fn entry_id(document: &DocumentMut, index: usize) -> Option<i64> {
    entry(document, index)?.get("id").and_then(Item::as_integer)
}

/// The entry's `token_expires_at`, as gitlab-runner writes it (a TOML datetime; a string is
/// read too). `None` when absent, unreadable, or Go's zero time, which gitlab-runner writes for
/// a token that never expires.
pub(crate) fn entry_expiry(document: &DocumentMut, index: usize) -> Option<jiff::Timestamp> {
    let item = entry(document, index)?.get("token_expires_at")?;
    let text = match item.as_value()? {
        Value::Datetime(datetime) => datetime.value().to_string(),
        Value::String(text) => text.value().clone(),
        _ => return None,
    };
    // Go's zero time is year 1: any time before the epoch means "never".
    text.parse::<jiff::Timestamp>()
        .ok()
        .filter(|at| at.as_second() > 0)
}

/// Puts a blank line between the global keys and the first table when there is none, as
/// gitlab-runner writes it (a file begun by registering a runner has no global keys at first).
pub(crate) fn separate_globals(document: &mut DocumentMut) {
    let root = document.as_table_mut();
    if !root.iter().any(|(_, item)| item.is_value()) {
        return;
    }
    let first = root
        .iter()
        .filter_map(|(key, item)| {
            let table = match item {
                Item::Table(table) => table,
                Item::ArrayOfTables(tables) => tables.get(0)?,
                _ => return None,
            };
            Some((table.position().unwrap_or(isize::MAX), key.to_owned()))
        })
        .min();
    let Some((_, key)) = first else {
        return;
    };
    let table = match root.get_mut(&key) {
        Some(Item::Table(table)) => table,
        Some(Item::ArrayOfTables(tables)) => tables.get_mut(0).expect("has a first table"),
        _ => return,
    };
    let prefix = table.decor().prefix().and_then(|prefix| prefix.as_str());
    if prefix.is_none_or(|prefix| !prefix.contains('\n')) {
        let indent = prefix.unwrap_or_default().to_owned();
        table.decor_mut().set_prefix(format!("\n{indent}"));
    }
}

/// Appends a `[[runners]]` entry with just its name; returns its index.
pub(crate) fn add_entry(document: &mut DocumentMut, name: &str) -> usize {
    let runners = document
        .entry("runners")
        .or_insert_with(|| Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
    let runners = runners
        .as_array_of_tables_mut()
        .expect("`parse` checked that `runners` is an array of tables");
    // Indent like the entries already there (gitlab-runner indents by two spaces).
    let indent = runners.iter().find_map(|entry| key_indent_like(entry));
    let mut entry = toml_edit::Table::new();
    set_value(&mut entry, "name", name.into(), indent.as_deref());
    runners.push(entry);
    runners.len() - 1
}

pub(crate) fn remove_entry(document: &mut DocumentMut, index: usize) {
    if let Some(runners) = document
        .get_mut("runners")
        .and_then(Item::as_array_of_tables_mut)
    {
        runners.remove(index);
    }
}

/// What berth writes into an entry from GitLab's answer, in gitlab-runner's key order.
pub(crate) struct Credentials<'a> {
    pub url: &'a str,
    pub id: i64,
    pub token: &'a Secret,
    pub token_obtained_at: toml_edit::Datetime,
    pub token_expires_at: toml_edit::Datetime,
}

/// Sets the entry's credentials: existing keys change in place, missing ones are added.
pub(crate) fn write_credentials(
    document: &mut DocumentMut,
    index: usize,
    credentials: &Credentials,
) {
    let entry = entry_mut(document, index).expect("the entry exists");
    let values: [(&str, Value); 5] = [
        ("url", credentials.url.into()),
        ("id", credentials.id.into()),
        ("token", credentials.token.expose().into()),
        ("token_obtained_at", credentials.token_obtained_at.into()),
        ("token_expires_at", credentials.token_expires_at.into()),
    ];
    for (key, value) in values {
        set_value(entry, key, value, None);
    }
}

/// Sets one value, keeping the key's place, indentation and trailing comment; a new key is
/// indented like its siblings, or by `indent` in a table without any.
fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value, indent: Option<&str>) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        Some(other) => *other = Item::Value(value),
        None => {
            let indent = key_indent_like(table).or_else(|| indent.map(str::to_owned));
            table.insert(key, Item::Value(value));
            if let Some(indent) = indent
                && let Some(mut key) = table.key_mut(key)
            {
                key.leaf_decor_mut().set_prefix(indent);
            }
        }
    }
}

/// Merges `desired` into `table` key by key: tables merge, everything else is replaced; keys
/// not in `desired` stay. Returns the fields that change, under `path` (`runners.docker.image`).
pub(crate) fn merge(
    table: &mut dyn TableLike,
    desired: &toml::Table,
    path: &str,
) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    merge_into(table, desired, path, false, None, &mut changes);
    changes
}

/// gitlab-runner indents each nesting level by two more spaces; a file without indentation
/// stays without.
fn deeper(indent: Option<&str>) -> Option<String> {
    indent
        .filter(|indent| !indent.is_empty())
        .map(|indent| format!("{indent}  "))
}

fn merge_into(
    table: &mut dyn TableLike,
    desired: &toml::Table,
    path: &str,
    inline: bool,
    expected_indent: Option<&str>,
    changes: &mut Vec<FieldChange>,
) {
    let indent = key_indent_like(table).or_else(|| expected_indent.map(str::to_owned));
    for (key, wanted) in desired {
        let field = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let toml::Value::Table(wanted_table) = wanted {
            if table.get(key).is_none() && !inline {
                // A new sub-table: created empty, then filled key by key like an existing one.
                let mut new_table = toml_edit::Table::new();
                new_table.set_implicit(wanted_table.values().all(toml::Value::is_table));
                if let Some(indent) = indent.as_deref().filter(|indent| !indent.is_empty()) {
                    new_table.decor_mut().set_prefix(indent);
                }
                table.insert(key, Item::Table(new_table));
            }
            if let Some(item) = table.get_mut(key)
                && item.is_table_like()
            {
                let child_inline = inline || item.is_inline_table();
                let child = item.as_table_like_mut().expect("checked table-like");
                let child_indent = deeper(indent.as_deref());
                merge_into(
                    child,
                    wanted_table,
                    &field,
                    child_inline,
                    child_indent.as_deref(),
                    changes,
                );
                continue;
            }
        }
        let before = table.get(key).and_then(item_to_toml);
        if before.as_ref() == Some(wanted) {
            continue;
        }
        let secret = is_secret_key(key);
        let show = |value: &toml::Value| {
            if secret {
                Json::String(REDACTED.into())
            } else {
                toml_to_json(value)
            }
        };
        changes.push(FieldChange::new(
            field.clone(),
            before.as_ref().map(show),
            Some(show(wanted)),
        ));
        let item = if inline {
            Item::Value(to_value(wanted))
        } else {
            to_item(wanted, indent.as_deref())
        };
        match item {
            Item::Value(value) => set_value(table, key, value, indent.as_deref()),
            other => {
                table.insert(key, other);
            }
        }
    }
}

/// The indentation of a table's keys (`  ` in gitlab-runner's own files).
fn key_indent_like(table: &dyn TableLike) -> Option<String> {
    table.iter().find_map(|(key, item)| {
        if !item.is_value() {
            return None;
        }
        let prefix = table.key(key)?.leaf_decor().prefix()?.as_str()?;
        let indent = prefix.rsplit('\n').next().unwrap_or(prefix);
        (!indent.is_empty() && indent.chars().all(|c| c == ' ' || c == '\t'))
            .then(|| indent.to_owned())
    })
}

/// A profile value as a config.toml item: lists of tables become `[[a.b]]` (headers indented by
/// `indent`, their keys one level deeper), the rest plain values.
fn to_item(value: &toml::Value, indent: Option<&str>) -> Item {
    match value {
        toml::Value::Array(items)
            if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
        {
            let mut tables = toml_edit::ArrayOfTables::new();
            let key_indent = deeper(indent);
            for item in items {
                let mut table = toml_edit::Table::new();
                if let Some(indent) = indent.filter(|indent| !indent.is_empty()) {
                    table.decor_mut().set_prefix(indent);
                }
                if let toml::Value::Table(fields) = item {
                    for (key, value) in fields {
                        match to_item(value, key_indent.as_deref()) {
                            Item::Value(value) => {
                                set_value(&mut table, key, value, key_indent.as_deref());
                            }
                            other => {
                                table.insert(key, other);
                            }
                        }
                    }
                }
                tables.push(table);
            }
            Item::ArrayOfTables(tables)
        }
        other => Item::Value(to_value(other)),
    }
}

fn to_value(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => text.as_str().into(),
        toml::Value::Integer(number) => (*number).into(),
        toml::Value::Float(number) => (*number).into(),
        toml::Value::Boolean(flag) => (*flag).into(),
        toml::Value::Datetime(datetime) => (*datetime).into(),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        toml::Value::Table(table) => {
            let mut inline = toml_edit::InlineTable::new();
            for (key, value) in table {
                inline.insert(key, to_value(value));
            }
            Value::InlineTable(inline)
        }
    }
}

/// A config.toml item as a plain value, to compare with the profile's.
fn item_to_toml(item: &Item) -> Option<toml::Value> {
    match item {
        Item::None => None,
        Item::Value(value) => Some(value_to_toml(value)),
        Item::Table(table) => Some(toml::Value::Table(
            table
                .iter()
                .filter_map(|(key, item)| Some((key.to_owned(), item_to_toml(item)?)))
                .collect(),
        )),
        Item::ArrayOfTables(tables) => Some(toml::Value::Array(
            tables
                .iter()
                .filter_map(|table| item_to_toml(&Item::Table(table.clone())))
                .collect(),
        )),
    }
}

fn value_to_toml(value: &Value) -> toml::Value {
    match value {
        Value::String(text) => toml::Value::String(text.value().clone()),
        Value::Integer(number) => toml::Value::Integer(*number.value()),
        Value::Float(number) => toml::Value::Float(*number.value()),
        Value::Boolean(flag) => toml::Value::Boolean(*flag.value()),
        Value::Datetime(datetime) => toml::Value::Datetime(*datetime.value()),
        Value::Array(items) => toml::Value::Array(items.iter().map(value_to_toml).collect()),
        Value::InlineTable(table) => toml::Value::Table(
            table
                .iter()
                .map(|(key, value)| (key.to_owned(), value_to_toml(value)))
                .collect(),
        ),
    }
}

/// config.toml text with every secret value shown as `"***"`, for plans, diffs and logs.
pub(crate) fn redact(text: &str) -> String {
    match text.parse::<DocumentMut>() {
        Ok(mut document) => {
            redact_table(document.as_table_mut());
            document.to_string()
        }
        // Never shown unparsed: a line-by-line fallback hides the value of any secret key.
        Err(_) => {
            text.lines()
                .map(|line| match line.split_once('=') {
                    Some((key, _))
                        if is_secret_key(key.trim().trim_matches(|c| c == '"' || c == '\'')) =>
                    {
                        format!("{key}= \"{REDACTED}\"")
                    }
                    _ => line.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n")
                + if text.ends_with('\n') { "\n" } else { "" }
        }
    }
}

fn redact_table(table: &mut dyn TableLike) {
    for (key, item) in table.iter_mut() {
        let secret = is_secret_key(key.get());
        match item {
            Item::Value(Value::InlineTable(inline)) => redact_table(inline),
            Item::Value(value) if secret => {
                let decor = value.decor().clone();
                *value = REDACTED.into();
                *value.decor_mut() = decor;
            }
            Item::Table(child) => redact_table(child),
            Item::ArrayOfTables(tables) => {
                for child in tables.iter_mut() {
                    redact_table(child);
                }
            }
            _ => {}
        }
    }
}

/// Now, in UTC, truncated to whole seconds, as `gitlab-runner register` writes
/// `token_obtained_at`.
pub(crate) fn now() -> toml_edit::Datetime {
    utc_datetime(jiff::Timestamp::now().as_second())
}

/// Seconds since the Unix epoch as a TOML datetime in UTC (`2024-09-26T03:24:18Z`).
pub(crate) fn utc_datetime(seconds: i64) -> toml_edit::Datetime {
    let timestamp = jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    timestamp
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .parse()
        .expect("a formatted RFC 3339 time parses")
}

/// `token_expires_at` from GitLab's answer; a token that never expires is written as Go's zero
/// time, `0001-01-01T00:00:00Z`, exactly as gitlab-runner writes it.
pub(crate) fn expiry(gitlab_time: Option<&str>) -> toml_edit::Datetime {
    let zero = || {
        "0001-01-01T00:00:00Z"
            .parse()
            .expect("the zero time parses")
    };
    match gitlab_time {
        None => zero(),
        Some(text) => text.parse().unwrap_or_else(|_| {
            tracing::warn!(
                "GitLab sent a token_expires_at berth cannot read (`{text}`); writing the zero time, gitlab-runner then renews the token when it sees fit"
            );
            zero()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::host_path;

    #[test]
    fn the_expiry_is_read_back_and_the_zero_time_means_never() {
        let document: DocumentMut = "[[runners]]\nname = \"a\"\ntoken_expires_at = 2031-01-02T03:04:05.678Z\n\n[[runners]]\nname = \"b\"\ntoken_expires_at = 0001-01-01T00:00:00Z\n\n[[runners]]\nname = \"c\"\n"
            .parse()
            .unwrap();
        assert_eq!(
            entry_expiry(&document, 0).map(|at| at.to_string()),
            Some("2031-01-02T03:04:05.678Z".to_owned())
        );
        assert_eq!(entry_expiry(&document, 1), None);
        assert_eq!(entry_expiry(&document, 2), None);
    }

    /// A config.toml as gitlab-runner writes it, edited by hand since: a comment, a foreign
    /// runner, a key berth does not know.
    const WRITTEN_BY_RUNNER: &str = r#"# managed by berth, edited by hand
concurrent = 1
check_interval = 0
connection_max_age = "15m0s"
shutdown_timeout = 0

[session_server]
  session_timeout = 1800

[[runners]]
  name = "docker-runner"
  url = "https://gitlab.example.com"
  id = 18
  token = "glrt-rotated-by-the-runner"
  token_obtained_at = 2024-09-26T03:24:18Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "docker"
  my_unknown_key = "kept"
  [runners.cache]
    MaxUploadedArchiveSize = 0
  [runners.docker]
    tls_verify = false
    image = "alpine:3" # the default image
    privileged = false
    volumes = ["/cache"]

[[runners]]
  name = "hand-made"
  url = "https://other.example.com"
  token = "glrt-foreign"
  executor = "shell"
"#;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn only_owned_keys_change_and_everything_else_stays() {
        let mut document = parse(&host_path("/c.toml"), WRITTEN_BY_RUNNER).unwrap();
        let global_changes = merge(
            document.as_table_mut(),
            &table(
                "concurrent = 4\ncheck_interval = 3\n[session_server]\nsession_timeout = 1800\n",
            ),
            "",
        );
        assert_eq!(
            global_changes
                .iter()
                .map(|change| change.path.as_str())
                .collect::<Vec<_>>(),
            ["concurrent", "check_interval"]
        );
        let index = find(&document, "docker-runner").unwrap();
        let changes = merge(
            entry_mut(&mut document, index).unwrap(),
            &table(
                "executor = \"docker\"\nlimit = 2\n[docker]\nimage = \"docker:27\"\nprivileged = true\n",
            ),
            "runners.docker-runner",
        );
        assert_eq!(
            changes
                .iter()
                .map(|change| change.path.as_str())
                .collect::<Vec<_>>(),
            [
                "runners.docker-runner.limit",
                "runners.docker-runner.docker.image",
                "runners.docker-runner.docker.privileged"
            ]
        );
        let expected = WRITTEN_BY_RUNNER
            .replace("concurrent = 1", "concurrent = 4")
            .replace("check_interval = 0", "check_interval = 3")
            .replace(
                "  my_unknown_key = \"kept\"\n",
                "  my_unknown_key = \"kept\"\n  limit = 2\n",
            )
            .replace(
                "image = \"alpine:3\" # the default image",
                "image = \"docker:27\" # the default image",
            )
            .replace("    privileged = false", "    privileged = true");
        assert_eq!(document.to_string(), expected);
    }

    #[test]
    fn a_profile_in_sync_changes_nothing_and_renders_the_same_bytes() {
        let mut document = parse(&host_path("/c.toml"), WRITTEN_BY_RUNNER).unwrap();
        let index = find(&document, "docker-runner").unwrap();
        let changes = merge(
            entry_mut(&mut document, index).unwrap(),
            &table(
                "executor = \"docker\"\n[docker]\nimage = \"alpine:3\"\nvolumes = [\"/cache\"]\n",
            ),
            "runners.docker-runner",
        );
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(document.to_string(), WRITTEN_BY_RUNNER);
    }

    #[test]
    fn a_new_entry_gets_credentials_then_settings_after_the_last_entry() {
        let mut document = parse(&host_path("/c.toml"), WRITTEN_BY_RUNNER).unwrap();
        let index = add_entry(&mut document, "new");
        assert_eq!(index, 2);
        let token = Secret::new("glrt-new-token");
        write_credentials(
            &mut document,
            index,
            &Credentials {
                url: "https://gitlab.example.com",
                id: 42,
                token: &token,
                token_obtained_at: utc_datetime(1_727_320_458),
                token_expires_at: expiry(None),
            },
        );
        merge(
            entry_mut(&mut document, index).unwrap(),
            &table(
                "executor = \"docker\"\n[docker]\nimage = \"docker:27\"\n[docker.sysctls]\n\"net.ipv4.ip_forward\" = \"1\"\n[[docker.services]]\nname = \"postgres\"\n",
            ),
            "runners.new",
        );
        let text = document.to_string();
        assert!(text.starts_with(WRITTEN_BY_RUNNER), "{text}");
        assert_eq!(
            &text[WRITTEN_BY_RUNNER.len()..],
            "\n[[runners]]\n  name = \"new\"\n  url = \"https://gitlab.example.com\"\n  id = 42\n  token = \"glrt-new-token\"\n  token_obtained_at = 2024-09-26T03:14:18Z\n  token_expires_at = 0001-01-01T00:00:00Z\n  executor = \"docker\"\n  [runners.docker]\n    image = \"docker:27\"\n    [runners.docker.sysctls]\n      \"net.ipv4.ip_forward\" = \"1\"\n    [[runners.docker.services]]\n      name = \"postgres\"\n"
        );
        let reread = parse(&host_path("/c.toml"), &text).unwrap();
        assert_eq!(entry_id(&reread, 2), Some(42));
        assert_eq!(entry_token(&reread, 2), Some(token));
    }

    #[test]
    fn a_token_rotated_by_the_runner_is_left_alone_and_removal_keeps_the_rest() {
        let mut document = parse(&host_path("/c.toml"), WRITTEN_BY_RUNNER).unwrap();
        let index = find(&document, "docker-runner").unwrap();
        assert_eq!(
            entry_token(&document, index).unwrap().expose(),
            "glrt-rotated-by-the-runner"
        );
        remove_entry(&mut document, index);
        let text = document.to_string();
        assert!(!text.contains("docker-runner"));
        assert!(text.contains("name = \"hand-made\""));
        assert!(text.starts_with("# managed by berth, edited by hand\n"));
    }

    #[test]
    fn global_keys_added_to_a_file_begun_by_a_registration_get_their_blank_line() {
        let mut document = parse(&host_path("/c.toml"), "[[runners]]\nname = \"r\"\n").unwrap();
        merge(document.as_table_mut(), &table("concurrent = 4\n"), "");
        separate_globals(&mut document);
        assert_eq!(
            document.to_string(),
            "concurrent = 4\n\n[[runners]]\nname = \"r\"\n"
        );
        separate_globals(&mut document);
        assert_eq!(
            document.to_string(),
            "concurrent = 4\n\n[[runners]]\nname = \"r\"\n",
            "only once"
        );
        let mut untouched = parse(&host_path("/c.toml"), WRITTEN_BY_RUNNER).unwrap();
        separate_globals(&mut untouched);
        assert_eq!(untouched.to_string(), WRITTEN_BY_RUNNER);
    }

    #[test]
    fn unparseable_text_is_refused() {
        let error = parse(
            &host_path("/srv/gitlab-runner/config.toml"),
            "concurrent = \n",
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").starts_with(
                "`/srv/gitlab-runner/config.toml` is not valid TOML; berth will not overwrite it"
            ),
            "{error:#}"
        );
        let error = parse(
            &host_path("/c.toml"),
            "[[runners]]\n  name = \"r\"\n  token = \"glrt-SecretValue\n",
        )
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(": line 3, column "), "{message}");
        assert!(!message.contains("glrt-SecretValue"), "{message}");
        let error = parse(&host_path("/c.toml"), "runners = 3\n").unwrap_err();
        assert!(format!("{error:#}").contains("not a list of `[[runners]]` tables"));
    }

    #[test]
    fn redaction_hides_tokens_and_secrets_and_nothing_else() {
        let text = format!(
            "{WRITTEN_BY_RUNNER}  [runners.cache.s3]\n    AccessKey = \"AKIA\"\n    SecretKey = \"s3cr3t\"\n    BucketName = \"b\"\n"
        );
        let redacted = redact(&text);
        assert!(!redacted.contains("glrt-rotated-by-the-runner"));
        assert!(!redacted.contains("glrt-foreign"));
        assert!(!redacted.contains("s3cr3t"));
        assert!(redacted.contains("  token = \"***\"\n"), "{redacted}");
        assert!(redacted.contains("token_obtained_at = 2024-09-26T03:24:18Z"));
        assert!(redacted.contains("BucketName = \"b\""));
        let broken = redact("[[runners]]\n token = \"glrt-x\"\nbroken = \n");
        assert_eq!(broken, "[[runners]]\n token = \"***\"\nbroken = \n");
    }

    #[test]
    fn secret_fields_in_a_change_are_shown_as_stars() {
        let mut document = parse(&host_path("/c.toml"), "").unwrap();
        let changes = merge(
            document.as_table_mut(),
            &table("[cache.s3]\nSecretKey = \"s3cr3t\"\n"),
            "runners.r",
        );
        assert_eq!(changes[0].after, Some(Json::String("***".into())));
    }

    #[test]
    fn times_are_written_the_way_gitlab_runner_writes_them() {
        assert_eq!(utc_datetime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc_datetime(1_727_320_458).to_string(),
            "2024-09-26T03:14:18Z"
        );
        assert_eq!(
            utc_datetime(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(expiry(None).to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(
            expiry(Some("2021-09-27T21:05:03.203Z")).to_string(),
            "2021-09-27T21:05:03.203Z"
        );
        assert!(now().to_string().ends_with('Z'));
    }
}
