//! A TOML file with its name, and errors that point into it. Parsing goes through serde (typed,
//! `deny_unknown_fields`), and every error, from the parser, from serde or from a later check,
//! is reported as `file:line:column: key `a.b.c`: message`, so an operator can jump to it.

use std::fmt;

use serde::{Deserialize, de::DeserializeOwned};

/// Where a TOML text came from (`/etc/berth/profiles/site.toml`, `dind (embedded)`) and the
/// text itself.
#[derive(Debug, Clone)]
pub(crate) struct TomlFile {
    pub name: String,
    pub text: String,
    /// The file's permission bits; `None` for an embedded profile.
    pub mode: Option<u32>,
}

/// A dotted key path: `docker.daemon.registry-mirrors`, `kernel.modules[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(crate) fn root() -> Self {
        Self::default()
    }

    pub(crate) fn parse_dotted(dotted: &str) -> Self {
        Self(
            dotted
                .split('.')
                .map(|key| Segment::Key(key.to_owned()))
                .collect(),
        )
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// The last key of the path (`env` of `containers.x.env`); `None` at the root or after an
    /// index.
    pub(crate) fn last_key(&self) -> Option<&str> {
        match self.0.last()? {
            Segment::Key(key) => Some(key),
            Segment::Index(_) => None,
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A problem in a TOML file, with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct LocatedError {
    pub file: String,
    /// 1-based line and column, when the place is known.
    pub position: Option<(usize, usize)>,
    pub key: Option<KeyPath>,
    pub message: String,
    /// What to do about it: the key or value that was probably meant, the values a key takes.
    pub hint: Option<String>,
}

impl LocatedError {
    pub(crate) fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for LocatedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = self.key.as_ref().filter(|key| !key.is_root()) {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl TomlFile {
    pub(crate) fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            mode: None,
        }
    }

    pub(crate) fn with_mode(mut self, mode: Option<u32>) -> Self {
        self.mode = mode;
        self
    }

    /// Parses the whole text as `T`; also returns it as a plain table for layering. Reports
    /// every syntax error the parser recovers from, and, in a file that parses, every key
    /// serde rejects: each table of the second level (`[docker.daemon]`, `[containers.web]`)
    /// is checked on its own, so one bad entry does not hide the next. That needs every field
    /// of `T` and of its top-level sections to be optional, as a layer's are.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<(T, toml::Table), Vec<LocatedError>> {
        let (document, syntax_errors) = toml::de::DeTable::parse_recoverable(&self.text);
        if !syntax_errors.is_empty() {
            return Err(syntax_errors
                .iter()
                .map(|error| self.located(error))
                .collect());
        }
        let mut problems: Vec<LocatedError> = Vec::new();
        for part in second_level_parts(document.clone()) {
            if let Err(error) = T::deserialize(toml::de::Deserializer::from(part)) {
                let problem = self.located(&error);
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // Both from the document parsed above, rather than parsing the text twice more.
        let table = toml::Table::deserialize(toml::de::Deserializer::from(document.clone()))
            .map_err(|error| vec![self.located(&error)])?;
        let typed = T::deserialize(toml::de::Deserializer::from(document))
            .map_err(|error| vec![self.located(&error)])?;
        Ok((typed, table))
    }

    fn located(&self, error: &toml::de::Error) -> LocatedError {
        let offset = error.span().map(|span| span.start);
        let (message, hint) = in_words(error.message().trim());
        LocatedError {
            file: self.name.clone(),
            position: offset.map(|offset| self.line_column(offset)),
            key: offset.and_then(|offset| self.key_path_at(offset)),
            message,
            hint,
        }
    }

    /// An error about `key`, placed where this file sets it (or at the file when it does not).
    pub(crate) fn error_at(&self, key: &KeyPath, message: impl Into<String>) -> LocatedError {
        LocatedError {
            file: self.name.clone(),
            position: self.position_of(key),
            key: Some(key.clone()),
            message: message.into(),
            hint: None,
        }
    }

    /// True when this file sets `key` (or something below it).
    pub(crate) fn sets(&self, key: &KeyPath) -> bool {
        self.span_of(key).is_some()
    }

    /// Where `key` is set, or else where its nearest parent is.
    pub(crate) fn position_of(&self, key: &KeyPath) -> Option<(usize, usize)> {
        (0..=key.0.len())
            .rev()
            .find_map(|length| self.span_of(&KeyPath(key.0[..length].to_vec())))
            .map(|offset| self.line_column(offset))
    }

    fn span_of(&self, key: &KeyPath) -> Option<usize> {
        let document = toml_edit::Document::parse(self.text.as_str()).ok()?;
        find_span(document.as_item(), &key.0)
    }

    /// The key path whose key or value covers byte `offset`.
    fn key_path_at(&self, offset: usize) -> Option<KeyPath> {
        let document = toml_edit::Document::parse(self.text.as_str()).ok()?;
        let mut path = KeyPath::root();
        descend(document.as_item(), offset, &mut path);
        (!path.is_root()).then_some(path)
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(&self.text, offset)
    }
}

fn find_span(item: &toml_edit::Item, segments: &[Segment]) -> Option<usize> {
    let Some((first, rest)) = segments.split_first() else {
        return item.span().map(|span| span.start);
    };
    match first {
        Segment::Key(name) => {
            let (key, child) = item.as_table_like()?.get_key_value(name)?;
            if rest.is_empty() {
                key.span().or_else(|| child.span()).map(|span| span.start)
            } else {
                find_span(child, rest)
            }
        }
        Segment::Index(index) => match item {
            toml_edit::Item::Value(toml_edit::Value::Array(array)) => {
                find_span(&toml_edit::Item::Value(array.get(*index)?.clone()), rest)
            }
            toml_edit::Item::ArrayOfTables(tables) => {
                find_span(&toml_edit::Item::Table(tables.get(*index)?.clone()), rest)
            }
            _ => None,
        },
    }
}

/// The 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |rest| rest.chars().count())
        + 1;
    (line, column)
}

fn covers(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|span| span.start <= offset && offset < span.end.max(span.start + 1))
}

fn descend(item: &toml_edit::Item, offset: usize, path: &mut KeyPath) {
    if let Some(table) = item.as_table_like() {
        for (key, child) in table.iter() {
            let key_span = table.key(key).and_then(|key| key.span());
            if covers(key_span, offset) {
                *path = path.key(key);
                return;
            }
            if covers(child.span(), offset) || contains_offset(child, offset) {
                *path = path.key(key);
                descend(child, offset, path);
                return;
            }
        }
    } else if let Some(array) = item.as_array() {
        for (index, value) in array.iter().enumerate() {
            if covers(value.span(), offset) {
                *path = path.index(index);
                descend(&toml_edit::Item::Value(value.clone()), offset, path);
                return;
            }
        }
    } else if let Some(tables) = item.as_array_of_tables() {
        for (index, table) in tables.iter().enumerate() {
            let child = toml_edit::Item::Table(table.clone());
            if contains_offset(&child, offset) {
                *path = path.index(index);
                descend(&child, offset, path);
                return;
            }
        }
    }
}

/// Standard tables (`[a.b]`) have no span of their own covering their body; look inside.
fn contains_offset(item: &toml_edit::Item, offset: usize) -> bool {
    if let Some(table) = item.as_table_like() {
        table.iter().any(|(key, child)| {
            covers(table.key(key).and_then(|key| key.span()), offset)
                || covers(child.span(), offset)
                || contains_offset(child, offset)
        })
    } else if let Some(tables) = item.as_array_of_tables() {
        tables
            .iter()
            .any(|table| contains_offset(&toml_edit::Item::Table(table.clone()), offset))
    } else {
        false
    }
}

/// Layers `overlay` onto `base`: tables merge key by key, everything else (scalars, arrays)
/// is replaced by the later layer.
pub(crate) fn deep_merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                deep_merge(existing, incoming);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// TOML and JSON agree on everything daemon.json uses; datetimes become RFC 3339 strings.
pub(crate) fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(text) => serde_json::Value::String(text.clone()),
        toml::Value::Integer(number) => serde_json::Value::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        toml::Value::Boolean(flag) => serde_json::Value::Bool(*flag),
        toml::Value::Datetime(datetime) => serde_json::Value::String(datetime.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(toml_to_json).collect())
        }
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_json(value)))
                .collect(),
        ),
    }
}

/// The known name `written` is most likely a typo of: at most two edits away (a swap of two
/// neighbours counts as one, case ignored), the closest first. strsim's Damerau-Levenshtein
/// counts `restrat` → `restart` as one edit where plain Levenshtein counts two.
pub(crate) fn closest<'a>(
    written: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let written = written.to_lowercase();
    known
        .into_iter()
        .map(|name| {
            (
                strsim::damerau_levenshtein(&written, &name.to_lowercase()),
                name,
            )
        })
        // Not a rewrite of a short name: `xy` is no typo of `ip`.
        .filter(|(distance, name)| {
            *distance <= 2 && *distance < written.chars().count().min(name.chars().count())
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The hint for a name that is not one of `known`: the one probably meant, and the choice.
pub(crate) fn did_you_mean(written: &str, known: &[&str]) -> Option<String> {
    let choice = known
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(written, known.iter().copied()) {
        Some(meant) if known.len() > 1 => {
            Some(format!("did you mean `{meant}`? (one of {choice})"))
        }
        Some(meant) => Some(format!("did you mean `{meant}`?")),
        None if known.is_empty() => None,
        None => Some(format!("one of {choice}")),
    }
}

/// serde's and toml's messages in an operator's words: `unknown field` becomes an unknown key
/// with the key probably meant, Rust's type names (`u32`, `a sequence`) become `a whole
/// number`, `a list`. Returns the message and its hint.
fn in_words(message: &str) -> (String, Option<String>) {
    let names = |rest: &str| -> (String, Vec<String>) {
        let (written, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        (written.to_owned(), known)
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (written, known) = names(rest);
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        // The probable key alone, since a section's keys make a long list; the list without one.
        let hint = match closest(&written, known.iter().copied()) {
            Some(meant) => Some(format!("did you mean `{meant}`?")),
            None => did_you_mean(&written, &known),
        };
        return (format!("unknown key `{written}`"), hint);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (written, known) = names(rest);
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        return (
            format!("`{written}` is not a value this key takes"),
            did_you_mean(&written, &known),
        );
    }
    if let Some(field) = message.strip_prefix("missing field `") {
        return (format!("needs `{}`", field.trim_end_matches('`')), None);
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            let hint = (expected == "a sequence" && found.starts_with("string "))
                .then(|| format!("write it as a list: `[{}]`", &found["string ".len()..]));
            return (
                format!(
                    "expected {}, found {}",
                    type_in_words(expected),
                    found_in_words(found)
                ),
                hint,
            );
        }
    }
    (message.to_owned(), None)
}

fn type_in_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" | "string" | "a character" => "a string".into(),
        "a sequence" | "a tuple" => "a list".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") || other.starts_with("map") => "a table".into(),
        other if other.starts_with("tuple") || other.starts_with("sequence") => "a list".into(),
        other => other.to_owned(),
    }
}

fn found_in_words(found: &str) -> String {
    let value = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|rest| rest.trim_matches('`'))
    };
    if let Some(text) = found.strip_prefix("string ") {
        format!("the string {text}")
    } else if let Some(number) = value("integer ").or_else(|| value("floating point ")) {
        format!("the number {number}")
    } else if let Some(flag) = value("boolean ") {
        format!("`{flag}`")
    } else {
        match found {
            "sequence" => "a list".into(),
            "map" => "a table".into(),
            other => other.to_owned(),
        }
    }
}

/// The document cut into parts that serde can check one by one: each top-level value that is
/// not a table on its own, and each key of a top-level table on its own (in its table).
fn second_level_parts(
    document: toml::Spanned<toml::de::DeTable<'_>>,
) -> Vec<toml::Spanned<toml::de::DeTable<'_>>> {
    let span = document.span();
    let mut parts = Vec::new();
    for (key, value) in document.into_inner() {
        let value_span = value.span();
        match value.into_inner() {
            toml::de::DeValue::Table(table) if !table.is_empty() => {
                for (child_key, child) in table {
                    let mut inner = toml::de::DeTable::new();
                    inner.insert(child_key, child);
                    let mut part = toml::de::DeTable::new();
                    part.insert(
                        key.clone(),
                        toml::Spanned::new(value_span.clone(), toml::de::DeValue::Table(inner)),
                    );
                    parts.push(toml::Spanned::new(span.clone(), part));
                }
            }
            other => {
                let mut part = toml::de::DeTable::new();
                part.insert(key, toml::Spanned::new(value_span, other));
                parts.push(toml::Spanned::new(span.clone(), part));
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        top: Option<String>,
        section: Option<Section>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        list: Option<Vec<u32>>,
        inner: Option<toml::Table>,
    }

    fn error(text: &str) -> String {
        TomlFile::new("p.toml", text)
            .parse::<Doc>()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let message = error("top = \"x\"\n[section]\nlsit = [1]\n");
        assert!(
            message.starts_with(
                "p.toml:3:1: key `section.lsit`: unknown key `lsit`; did you mean `list`?"
            ),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let message = error("[section]\nlist = [1, \"two\"]\n");
        assert!(
            message.starts_with(
                "p.toml:2:12: key `section.list[1]`: expected a whole number, 0 or more, found the string \"two\""
            ),
            "{message}"
        );
    }

    #[test]
    fn every_rejected_key_of_a_file_is_reported() {
        let message = error("top = 1\n[section]\nlsit = [1]\ninner = 3\n");
        insta::assert_snapshot!(message, @r#"
        p.toml:1:7: key `top`: expected a string, found the number 1
        p.toml:3:1: key `section.lsit`: unknown key `lsit`; did you mean `list`?
        p.toml:4:9: key `section.inner`: expected a table, found the number 3
        "#);
    }

    #[test]
    fn types_read_in_words() {
        assert_eq!(
            in_words("invalid type: string \"overlay\", expected a sequence"),
            (
                "expected a list, found the string \"overlay\"".to_owned(),
                Some("write it as a list: `[\"overlay\"]`".to_owned())
            )
        );
        assert_eq!(
            in_words("invalid type: integer `3`, expected a boolean").0,
            "expected true or false, found the number 3"
        );
        assert_eq!(
            in_words("invalid value: integer `-1`, expected u32").0,
            "expected a whole number, 0 or more, found the number -1"
        );
        assert_eq!(
            in_words("unknown variant `alwyas`, expected one of `missing`, `always`, `never`"),
            (
                "`alwyas` is not a value this key takes".to_owned(),
                Some("did you mean `always`? (one of `missing`, `always`, `never`)".to_owned())
            )
        );
    }

    #[test]
    fn syntax_error_has_a_position() {
        let message = error("[section\n");
        assert!(message.starts_with("p.toml:1:"), "{message}");
    }

    #[test]
    fn later_checks_can_place_an_error_at_a_key() {
        let source = TomlFile::new("p.toml", "[section.inner]\nmtu = \"x\"\n");
        let key = KeyPath::parse_dotted("section.inner.mtu");
        assert_eq!(
            source.error_at(&key, "must be a number").to_string(),
            "p.toml:2:1: key `section.inner.mtu`: must be a number"
        );
        assert!(!source.sets(&KeyPath::parse_dotted("section.list")));
    }

    #[test]
    fn merge_joins_tables_and_replaces_the_rest() {
        let mut base: toml::Table = toml::from_str("a = [1]\n[t]\nx = 1\ny = 2\n").unwrap();
        let overlay: toml::Table = toml::from_str("a = [2]\n[t]\ny = 3\n").unwrap();
        deep_merge(&mut base, overlay);
        assert_eq!(
            base,
            toml::from_str("a = [2]\n[t]\nx = 1\ny = 3\n").unwrap()
        );
    }

    #[test]
    fn the_closest_name_is_a_typo_away() {
        assert_eq!(
            closest("registry-mirror", ["registry-mirrors", "mtu"]),
            Some("registry-mirrors")
        );
        assert_eq!(closest("restrat", ["reload", "restart"]), Some("restart"));
        assert_eq!(closest("Privileged", ["privileged"]), Some("privileged"));
        assert_eq!(closest("concurent", ["concurrent"]), Some("concurrent"));
        assert_eq!(closest("bogus", ["bip"]), None);
        assert_eq!(
            closest("ab", ["xy"]),
            None,
            "two letters are not a typo of any other two"
        );
    }
}
