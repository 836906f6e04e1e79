//! A TOML file with its name, and errors that point into it. Parsing goes through serde (typed,
//! `deny_unknown_fields`), and every error, from the parser, from serde or from a later check,
//! is reported as `file:line:column: key `a.b.c`: message`, so an operator can jump to it.

use std::fmt;

use serde::de::DeserializeOwned;

/// Where a TOML text came from (`/etc/berth/profiles/site.toml`, `dind (embedded)`) and the
/// text itself.
#[derive(Debug, Clone)]
pub(crate) struct TomlFile {
    pub name: String,
    pub text: String,
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
        f.write_str(&self.message)
    }
}

impl TomlFile {
    pub(crate) fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Parses the whole text as `T`; also returns it as a plain table for layering.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<(T, toml::Table), LocatedError> {
        let table: toml::Table =
            toml::from_str(&self.text).map_err(|error| self.located(&error))?;
        let typed = toml::from_str::<T>(&self.text).map_err(|error| self.located(&error))?;
        Ok((typed, table))
    }

    fn located(&self, error: &toml::de::Error) -> LocatedError {
        let offset = error.span().map(|span| span.start);
        LocatedError {
            file: self.name.clone(),
            position: offset.map(|offset| self.line_column(offset)),
            key: offset.and_then(|offset| self.key_path_at(offset)),
            message: error.message().trim().to_owned(),
        }
    }

    /// An error about `key`, placed where this file sets it (or at the file when it does not).
    pub(crate) fn error_at(&self, key: &KeyPath, message: impl Into<String>) -> LocatedError {
        LocatedError {
            file: self.name.clone(),
            position: self.position_of(key),
            key: Some(key.clone()),
            message: message.into(),
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

/// The edit distance (Levenshtein) between two names, by characters: what "did you mean"
/// suggestions are measured by.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// True when `written` is at most two edits from `known`: a typo of a known name.
pub(crate) fn is_typo_of(written: &str, known: &str) -> bool {
    edit_distance(written, known) <= 2
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
            .to_string()
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let message = error("top = \"x\"\n[section]\nlsit = [1]\n");
        assert!(
            message.starts_with("p.toml:3:1: key `section.lsit`: unknown field `lsit`"),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let message = error("[section]\nlist = [1, \"two\"]\n");
        assert!(
            message.starts_with("p.toml:2:12: key `section.list[1]`: invalid type"),
            "{message}"
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
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("registry-mirror", "registry-mirrors"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert!(is_typo_of("concurent", "concurrent"));
        assert!(!is_typo_of("bogus", "bip"));
    }
}
