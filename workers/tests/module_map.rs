//! The module map of ARCHITECTURE.md, checked: every `crate::` path in the workers' and the operator's sources
//! (tests excluded) is read, and
//! - in the workers, a module only uses modules of a lower layer, or of its own top-level module;
//! - in the operator, the graph of top-level modules has no cycle.
//!
//! And every Rust file of the repository (tests and benches too) stays under 500 lines.
//!
//! Paths are read from `use` trees (`use crate::{a::{b, c}, d}`) and from inline `crate::a::b` paths; `super::`
//! stays inside a module and is not an edge.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The workers' layers, top first; a module may use only a lower one, or its own top-level module.
const WORKER_LAYERS: &[(&str, u8)] = &[
    ("cli", 5),
    ("jobs", 4),
    ("x", 3),
    ("bus", 3),
    ("search", 3),
    ("google::bigquery", 3),
    ("google::dataproc", 3),
    ("lake", 2),
    ("google::auth", 2),
    ("transform", 2),
    ("tweet", 1),
    ("retry", 1),
];

/// Every `.rs` file under `dir`, with its module path (`a/b.rs` and `a/b/mod.rs` are `a::b`).
fn modules(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let entries = std::fs::read_dir(&next).unwrap_or_else(|e| panic!("read {}: {e}", next.display()));
        for entry in entries.map(|e| e.expect("directory entry").path()) {
            if entry.is_dir() {
                stack.push(entry);
                continue;
            }
            if entry.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = entry.strip_prefix(dir).expect("under dir").with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            out.push((parts.join("::"), entry));
        }
    }
    out.sort();
    out
}

/// The source without its `#[cfg(test)]` module and without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every full path after `crate::`, use trees expanded.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut chars = rest.chars().peekable();
        use_tree(&mut chars, String::new(), &mut paths);
    }
    paths
}

fn ident(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    name
}

fn skip_space(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

/// One use tree: `a::b`, `a::{tree, tree}`, `a::*`, `a as b`.
fn use_tree(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, prefix: String, out: &mut Vec<String>) {
    let mut path = prefix;
    loop {
        skip_space(chars);
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                skip_space(chars);
                if chars.peek() == Some(&'}') {
                    chars.next();
                    return;
                }
                use_tree(chars, path.clone(), out);
                skip_space(chars);
                match chars.next() {
                    Some(',') => continue,
                    _ => return,
                }
            }
        }
        let name = ident(chars);
        if name.is_empty() || name == "self" {
            out.push(path);
            return;
        }
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(&name);
        if chars.peek() == Some(&':') {
            chars.next();
            chars.next();
            continue;
        }
        out.push(path);
        // `as alias` or the end of the tree
        skip_space(chars);
        let mut look = chars.clone();
        if ident(&mut look) == "as" {
            skip_space(&mut look);
            ident(&mut look);
            *chars = look;
        }
        return;
    }
}

/// The longest known module path that `path` starts with.
fn owner<'a>(path: &str, known: &'a BTreeSet<String>) -> Option<&'a String> {
    known
        .iter()
        .filter(|m| path == m.as_str() || path.starts_with(&format!("{m}::")))
        .max_by_key(|m| m.len())
}

fn layer(module: &str) -> u8 {
    WORKER_LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module {module} has no layer: add it to WORKER_LAYERS and ARCHITECTURE.md"))
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// (from module, to module) for every `crate::` path of the crate at `src`.
fn edges(src: &Path) -> BTreeSet<(String, String)> {
    let files = modules(src);
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeSet::new();
    for (module, path) in &files {
        for used in crate_paths(&code(path)) {
            if let Some(target) = owner(&used, &known)
                && target != module
            {
                edges.insert((module.clone(), target.clone()));
            }
        }
    }
    edges
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_parser_reads_use_trees_and_inline_paths() {
    let code = "use crate::{a::{b, c::D}, e as f, g::*};\nfn x() { crate::h::i(); notcrate::j(); }";
    assert_eq!(crate_paths(code), ["a::b", "a::c::D", "e", "g", "h::i"]);
}

#[test]
fn worker_modules_use_only_lower_layers() {
    let edges = edges(&manifest_dir().join("src"));
    assert!(
        edges.len() > 30,
        "the map read too few edges to mean anything: {edges:?}"
    );
    let upward: Vec<String> = edges
        .iter()
        .filter(|(from, to)| top(from) != top(to) && layer(to) >= layer(from))
        .map(|(from, to)| format!("{from} (layer {}) uses {to} (layer {})", layer(from), layer(to)))
        .collect();
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

#[test]
fn operator_modules_have_no_cycle() {
    let edges = edges(&manifest_dir().join("../operator/src"));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in &edges {
        if top(from) != top(to) {
            graph
                .entry(top(from).to_owned())
                .or_default()
                .insert(top(to).to_owned());
        }
    }
    assert!(
        graph.len() > 5,
        "the map read too few modules to mean anything: {graph:?}"
    );
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("operator modules in a cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Issue 20's bound on a file's size, for every Rust file of the repository: sources, tests, benches, fuzz targets.
const MAX_LINES: usize = 500;

#[test]
fn every_rust_file_is_under_the_size_bound() {
    let root = manifest_dir().join("..");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for path in entries.map(|e| e.expect("directory entry").path()) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                // Build output and hidden directories (.git) hold no sources of ours.
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() > 100,
        "the walk found only {} Rust files under {}",
        files.len(),
        root.display()
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).ok()?.lines().count();
            (lines >= MAX_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "files of {MAX_LINES} lines or more: {long:?}");
}
