//! The module graph of `src/`, read from the source (issue 19): which module file names which
//! other. A file's modules are found as rustc finds them, from `lib.rs` through `mod NAME;` (and
//! `#[path]`); an edge is any path that names another module file: `crate::`, `super::`,
//! `self::` and a child module's bare name, in `use` trees (groups included) and in code, with
//! comments, strings and character literals left out.
//!
//! A module may name its ancestors' items without that counting: a child sees its parent, and a
//! folder's `mod.rs` declaring its files is not a dependency on them. The crate root is the
//! exception, so that `lib.rs`, which calls every command, stays nobody's utility module.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::Path,
};

/// One import: `from` names `to` (files relative to `src/`) first at `line` of `from`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub line: usize,
}

impl std::fmt::Display for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} (src/{}:{})",
            self.from, self.to, self.from, self.line
        )
    }
}

pub struct ModuleGraph {
    /// Every module file, relative to `src/`.
    pub files: BTreeSet<String>,
    /// By (from, to): one edge per pair, at its first line.
    pub edges: BTreeMap<(String, String), Edge>,
}

impl ModuleGraph {
    /// Reads the crate whose root is `src/lib.rs`.
    pub fn read(src: &Path) -> Self {
        let mut modules = BTreeMap::new();
        find_modules(
            src,
            Path::new("lib.rs"),
            &mut Vec::new(),
            true,
            &mut modules,
        );
        let mut edges = BTreeMap::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(src.join(file)).unwrap();
            for (path, line) in named_paths(&text, module, &modules) {
                let target = deepest_module(&path, &modules);
                let is_ancestor = !target.is_empty() && module.starts_with(&target);
                let to = &modules[&target];
                if to != file && !is_ancestor {
                    edges
                        .entry((file.clone(), to.clone()))
                        .or_insert_with(|| Edge {
                            from: file.clone(),
                            to: to.clone(),
                            line,
                        });
                }
            }
        }
        Self {
            files: modules.into_values().collect(),
            edges,
        }
    }

    /// The cycles left once `allowed` edges are taken out, one per strongly connected set of
    /// files, each as the edges that close it (the shortest way round from its first file).
    pub fn cycles(&self, allowed: &BTreeSet<(String, String)>) -> Vec<Vec<Edge>> {
        let next = self.adjacency(allowed);
        let mut in_a_reported_cycle = BTreeSet::new();
        let mut cycles = Vec::new();
        for start in &self.files {
            if in_a_reported_cycle.contains(start.as_str()) {
                continue;
            }
            // Breadth first from `start` until an edge leads back to it.
            let mut came_by: BTreeMap<&str, &Edge> = BTreeMap::new();
            let mut queue = VecDeque::from([start.as_str()]);
            let mut closing = None;
            'search: while let Some(file) = queue.pop_front() {
                for edge in next.get(file).into_iter().flatten() {
                    if edge.to == *start {
                        closing = Some(*edge);
                        break 'search;
                    }
                    if !came_by.contains_key(edge.to.as_str()) {
                        came_by.insert(&edge.to, edge);
                        queue.push_back(&edge.to);
                    }
                }
            }
            let Some(mut edge) = closing else { continue };
            let mut cycle = vec![edge.clone()];
            while edge.from != *start {
                edge = came_by[edge.from.as_str()];
                cycle.push(edge.clone());
            }
            cycle.reverse();
            // Every file `start` reaches and is reached from is in this cycle's set: one report.
            for file in &self.files {
                if reaches(&next, start, file) && reaches(&next, file, start) {
                    in_a_reported_cycle.insert(file.as_str());
                }
            }
            cycles.push(cycle);
        }
        cycles
    }

    /// True when `edge` lies on a cycle of the whole graph.
    pub fn closes_a_cycle(&self, from: &str, to: &str) -> bool {
        self.edges.contains_key(&(from.to_owned(), to.to_owned()))
            && reaches(&self.adjacency(&BTreeSet::new()), to, from)
    }

    fn adjacency(&self, allowed: &BTreeSet<(String, String)>) -> BTreeMap<&str, Vec<&Edge>> {
        let mut next: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
        for (pair, edge) in &self.edges {
            if !allowed.contains(pair) {
                next.entry(edge.from.as_str()).or_default().push(edge);
            }
        }
        next
    }
}

/// True when a path of edges leads from `from` to `to`.
fn reaches(next: &BTreeMap<&str, Vec<&Edge>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from]);
    let mut stack = vec![from];
    while let Some(file) = stack.pop() {
        for edge in next.get(file).into_iter().flatten() {
            if edge.to == to {
                return true;
            }
            if seen.insert(edge.to.as_str()) {
                stack.push(&edge.to);
            }
        }
    }
    false
}

/// Follows `mod NAME;` from `file` (relative to `src`), as rustc does.
fn find_modules(
    src: &Path,
    file: &Path,
    module: &mut Vec<String>,
    owns_directory: bool,
    found: &mut BTreeMap<Vec<String>, String>,
) {
    found.insert(module.clone(), file.to_string_lossy().into_owned());
    let text = blank_out(&std::fs::read_to_string(src.join(file)).unwrap());
    let raw = std::fs::read_to_string(src.join(file)).unwrap();
    let directory = file.parent().unwrap_or(Path::new(""));
    let tokens = tokens(&text);
    for (index, (token, _)) in tokens.iter().enumerate() {
        let (Some((name, _)), Some((";", _))) = (tokens.get(index + 1), tokens.get(index + 2))
        else {
            continue;
        };
        if *token != "mod" {
            continue;
        }
        // `#[path = "x.rs"]` right before the declaration (the string is blanked in `text`).
        let before = &raw[..tokens[index].1];
        let attribute = before
            .trim_end()
            .strip_suffix("\"]")
            .and_then(|rest| rest.rsplit_once("#[path = \""))
            .map(|(_, path)| path.to_owned());
        let base = if owns_directory {
            directory.to_path_buf()
        } else {
            directory.join(file.file_stem().unwrap())
        };
        let child = match attribute {
            Some(path) => directory.join(path),
            None if src.join(base.join(format!("{name}.rs"))).exists() => {
                base.join(format!("{name}.rs"))
            }
            None => base.join(name).join("mod.rs"),
        };
        module.push((*name).to_owned());
        let owns = child.file_name().unwrap() == "mod.rs";
        find_modules(src, &child, module, owns, found);
        module.pop();
    }
}

/// Every path in `text` (of `module`) that starts at a module: as absolute module paths (the
/// item at the end included), each with its line.
fn named_paths(
    text: &str,
    module: &[String],
    modules: &BTreeMap<Vec<String>, String>,
) -> Vec<(Vec<String>, usize)> {
    let blank = blank_out(text);
    let tokens = tokens(&blank);
    let words: Vec<&str> = tokens.iter().map(|(token, _)| *token).collect();
    let mut found = Vec::new();
    // Inline modules (`mod tests { .. }`) open at a brace depth: `super` inside one is the file.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    for (index, (token, offset)) in tokens.iter().enumerate() {
        match *token {
            "{" => {
                depth += 1;
                if index >= 2 && words[index - 2] == "mod" {
                    inline.push((words[index - 1].to_owned(), depth));
                }
                continue;
            }
            "}" => {
                if inline.last().is_some_and(|(_, opened)| *opened == depth) {
                    inline.pop();
                }
                depth -= 1;
                continue;
            }
            _ => {}
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        let starts_a_path = words.get(index + 1) == Some(&"::")
            && (index == 0 || words[index - 1] != "::")
            && (matches!(*token, "crate" | "super" | "self")
                || modules.contains_key(&[here.as_slice(), &[(*token).to_owned()]].concat()));
        if !starts_a_path {
            continue;
        }
        let line = text[..*offset].matches('\n').count() + 1;
        let mut position = index;
        for path in use_tree(&words, &mut position, Vec::new()) {
            let mut absolute = match path[0].as_str() {
                "crate" => Vec::new(),
                _ => here.clone(),
            };
            for segment in &path {
                match segment.as_str() {
                    "crate" | "self" => {}
                    "super" => {
                        absolute.pop();
                    }
                    _ => absolute.push(segment.clone()),
                }
            }
            found.push((absolute, line));
        }
    }
    found
}

/// The paths of a use tree (or a plain path) starting at `words[*position]`, groups expanded.
fn use_tree(words: &[&str], position: &mut usize, prefix: Vec<String>) -> Vec<Vec<String>> {
    let mut path = prefix;
    let mut paths = Vec::new();
    while let Some(word) = words.get(*position) {
        if *word == "{" {
            *position += 1;
            while words.get(*position).is_some_and(|word| *word != "}") {
                paths.extend(use_tree(words, position, path.clone()));
                if words.get(*position) == Some(&",") {
                    *position += 1;
                }
            }
            *position += 1;
            return paths;
        }
        if word.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            path.push((*word).to_owned());
            *position += 1;
            if words.get(*position) == Some(&"::") {
                *position += 1;
                continue;
            }
        }
        break;
    }
    if !path.is_empty() {
        paths.push(path);
    }
    paths
}

/// The longest start of `path` that is a module file.
fn deepest_module(path: &[String], modules: &BTreeMap<Vec<String>, String>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|length| path[..length].to_vec())
        .find(|start| modules.contains_key(start))
        .unwrap_or_default()
}

/// Words, `::` and single punctuation, each with its byte offset.
pub fn tokens(text: &str) -> Vec<(&str, usize)> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_alphanumeric() || byte == b'_' {
            let start = index;
            while index < bytes.len()
                && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
            {
                index += 1;
            }
            tokens.push((&text[start..index], start));
        } else if text[index..].starts_with("::") {
            tokens.push(("::", index));
            index += 2;
        } else if byte.is_ascii_whitespace() || !byte.is_ascii() {
            index += 1;
        } else {
            tokens.push((&text[index..=index], index));
            index += 1;
        }
    }
    tokens
}

/// `text` with comments, string and character literals replaced by spaces (newlines kept), so
/// that a path in a doc comment or a message is not an import.
pub fn blank_out(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = text.as_bytes().to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to.min(bytes.len())] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let mut index = 0;
    while index < bytes.len() {
        let rest = &text[index..];
        let after_word =
            index > 0 && (bytes[index - 1].is_ascii_alphanumeric() || bytes[index - 1] == b'_');
        let end = if rest.starts_with("//") {
            rest.find('\n').map_or(bytes.len(), |end| index + end)
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            let mut at = index;
            loop {
                if text[at..].starts_with("/*") {
                    depth += 1;
                    at += 2;
                } else if text[at..].starts_with("*/") {
                    depth -= 1;
                    at += 2;
                    if depth == 0 {
                        break at;
                    }
                } else if at >= bytes.len() {
                    break at;
                } else {
                    at += 1;
                }
            }
        } else if let Some(end) = (!after_word).then(|| raw_string_end(rest)).flatten() {
            index + end
        } else if bytes[index] == b'"' {
            let mut at = index + 1;
            while bytes[at] != b'"' {
                at += if bytes[at] == b'\\' { 2 } else { 1 };
            }
            at + 1
        } else if bytes[index] == b'\'' {
            // A character literal ('x', '\n', '\u{1b}'), not a lifetime ('a).
            let literal = match rest[1..].chars().next() {
                Some('\\') => rest
                    .get(3..)
                    .and_then(|tail| tail.find('\''))
                    .map(|at| at + 4),
                Some(c) => rest[1 + c.len_utf8()..]
                    .starts_with('\'')
                    .then(|| 2 + c.len_utf8()),
                None => None,
            };
            match literal {
                Some(length) => index + length,
                None => {
                    index += 1;
                    continue;
                }
            }
        } else {
            index += 1;
            continue;
        };
        blank(&mut out, index, end);
        index = end;
    }
    String::from_utf8(out).unwrap()
}

/// The length of the raw string (`r"…"`, `r#"…"#`, `br"…"`) `rest` starts with, if it starts with one.
fn raw_string_end(rest: &str) -> Option<usize> {
    let after_r = rest.strip_prefix('b').unwrap_or(rest).strip_prefix('r')?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let closing = format!("\"{}", "#".repeat(hashes));
    let opening = rest.len() - body.len();
    Some(opening + body.find(&closing)? + closing.len())
}
