//! No module imports another that imports it back.
//!
//! Reads every file under `src/` (the library crate; `main.rs` is a crate of
//! its own) as text: the `use` trees and the `crate::`, `self::`, `super::`
//! paths in code (comments and string literals are blanked first), and the
//! `$crate::` paths in exported macros, which count for every module that
//! calls the macro. Each path is mapped to the deepest module that has a
//! file, giving an edge "module A names module B" with its file and line.
//!
//! A module naming its own ancestor is not an edge: the files of a folder take
//! the folder's shared types from its `mod.rs` (`super::`). A parent naming a
//! child is one, so a loop that leaves a folder's `mod.rs` and comes back
//! through one of its files is found.
//!
//! The test prints every loop it finds, with the places that make it, and
//! fails on a loop none of whose edges is in [`KNOWN`], or on an entry of
//! [`KNOWN`] that no longer closes a loop (remove it: the list only shrinks).
//!
//! The same graph, with every module replaced by its top module (the
//! crate's folders and single-file modules), must have no loop at all: a
//! folder's files may name each other, but no two folders name each other,
//! however many files apart.
//!
//! It also checks that the pipeline picture in the crate docs (src/lib.rs)
//! names only files that exist, and every stage file of `src/pipeline/`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[path = "common/rust_text.rs"]
mod rust_text;
use rust_text::blank_comments_and_literals;

/// Imports that close a loop known today and being fixed, as "from -> to"
/// (module paths without `crate::`). Each entry is the edge that goes against
/// the flow; a loop that none of these breaks fails the test.
const KNOWN: &[&str] = &[];

/// One module naming another, at a place in a file.
#[derive(Clone, Debug)]
struct Site {
    file: String,
    line: usize,
}

type Graph = BTreeMap<String, BTreeMap<String, Vec<Site>>>;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(
        graph.len() > 50 && edges > 100,
        "the reader found {} modules and {edges} edges",
        graph.len()
    );
    let known: BTreeSet<(String, String)> = KNOWN.iter().map(|e| parse_edge(e)).collect();
    let Judged {
        loops,
        new_loops,
        stale,
    } = judge(&graph, &known);
    eprint!("{}", describe_all(&loops, &graph, "loop: "));
    eprintln!("{} loop(s) between modules", loops.len());
    assert!(
        new_loops.is_empty(),
        "modules import each other in a loop (move the shared type below both):\n{}",
        describe_all(&new_loops, &graph, "")
    );
    assert!(
        stale.is_empty(),
        "these KNOWN imports no longer close a loop; remove them from the list: {stale:?}"
    );
}

/// The same at the level of the crate's top modules (`policy`, `source`,
/// `decision`, ...): a folder's files may name each other, but no folder
/// names another that names it back, through any of their files.
#[test]
fn no_folder_imports_one_that_imports_it_back() {
    let graph = module_graph(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let folders = by_top_module(&graph);
    let loops = all_loops(&folders);
    eprint!("{}", describe_all(&loops, &folders, "loop: "));
    eprintln!(
        "{} loop(s) between the {} top modules",
        loops.len(),
        folders.len()
    );
    assert!(
        loops.is_empty(),
        "top modules import each other in a loop (move the shared type below both):\n{}",
        describe_all(&loops, &folders, "")
    );
}

/// Each loop on its own lines, after `prefix`, with the places that make it.
fn describe_all(loops: &[Vec<String>], graph: &Graph, prefix: &str) -> String {
    let mut out = String::new();
    for cycle in loops {
        let _ = writeln!(out, "{prefix}{}", describe(cycle, graph));
    }
    out
}

/// The graph with every module replaced by its top module (`policy::eval` is
/// `policy`); names within one top module are left out.
fn by_top_module(graph: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    let mut out = Graph::new();
    for (from, targets) in graph {
        let entry = out.entry(top(from)).or_default();
        for (to, sites) in targets {
            if top(to) != top(from) {
                entry
                    .entry(top(to))
                    .or_default()
                    .extend(sites.iter().cloned());
            }
        }
    }
    out
}

/// The crate docs' pipeline picture (src/lib.rs) names the files a reader
/// opens for each stage: every path it names exists, and every stage file of
/// `src/pipeline/` is named.
#[test]
fn the_pipeline_picture_names_files_that_exist() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let picture: String = lib
        .lines()
        .map(|l| l.trim_start_matches("//!"))
        .skip_while(|l| !l.trim_start().starts_with("```text"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    let named: BTreeSet<String> = picture
        .split(|c: char| c.is_whitespace() || "(),;:".contains(c))
        .filter(|t| t.ends_with(".rs") || (t.ends_with('/') && t.len() > 1))
        .filter(|t| {
            t.chars()
                .all(|c| c.is_ascii_lowercase() || "_/.".contains(c))
        })
        .map(|t| t.trim_start_matches("src/").to_string())
        .collect();
    assert!(
        named.len() > 10,
        "the picture names too few files: {named:?}"
    );
    let missing: Vec<&String> = named.iter().filter(|p| !src.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "src/lib.rs's pipeline picture names files that do not exist: {missing:?}"
    );
    let stages = std::fs::read_dir(src.join("pipeline")).expect("src/pipeline/");
    let unnamed: Vec<String> = stages
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .map(|f| format!("pipeline/{f}"))
        .filter(|f| f != "pipeline/mod.rs" && !named.contains(f))
        .collect();
    assert!(
        unnamed.is_empty(),
        "src/lib.rs's pipeline picture does not name these stage files: {unnamed:?}"
    );
}

/// Every loop; the loops left when the known imports are set aside; the
/// known imports that close no loop.
struct Judged {
    loops: Vec<Vec<String>>,
    new_loops: Vec<Vec<String>>,
    stale: Vec<(String, String)>,
}

fn judge(graph: &Graph, known: &BTreeSet<(String, String)>) -> Judged {
    let loops = all_loops(graph);
    let mut without_known = graph.clone();
    for (from, to) in known {
        if let Some(out) = without_known.get_mut(from) {
            out.remove(to);
        }
    }
    let on_a_loop = |(from, to): &&(String, String)| {
        loops
            .iter()
            .any(|c| cycle_edges(c).any(|e| e == (from, to)))
    };
    Judged {
        new_loops: all_loops(&without_known),
        stale: known.iter().filter(|e| !on_a_loop(e)).cloned().collect(),
        loops,
    }
}

/// The judge on a small graph: a known loop, a new one, a stale entry.
#[test]
fn loops_are_found_and_known_imports_set_aside() {
    let site = || {
        vec![Site {
            file: "f.rs".into(),
            line: 1,
        }]
    };
    let mut graph = Graph::new();
    for (from, to) in [
        ("a", "b"),
        ("b", "a"),
        ("b", "c"),
        ("c", "d"),
        ("d", "b"),
        ("e", "a"),
    ] {
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), site());
    }
    let known: BTreeSet<(String, String)> =
        ["b -> a", "e -> a"].iter().map(|e| parse_edge(e)).collect();
    let j = judge(&graph, &known);
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        j.loops,
        vec![strings(&["a", "b"]), strings(&["b", "c", "d"])]
    );
    assert_eq!(j.new_loops, vec![strings(&["b", "c", "d"])]);
    assert_eq!(j.stale, vec![("e".to_string(), "a".to_string())]);
    assert!(describe(&j.loops[0], &graph).starts_with("a -> b -> a\n    a -> b: f.rs:1"));
}

/// The test's own reader, on small pieces of Rust it must get right.
#[test]
fn reader_resolves_use_trees_and_paths() {
    let modules: BTreeSet<String> = ["", "a", "a::b", "a::c", "d", "d::e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let src = r#"
        use crate::d::{self, e::{X, Y as Z}};
        use super::c::*; // crate::x::not_me
        use std::fmt;
        use inner::Thing;
        mod inner { use super::super::super::d::e::W; }
        fn f() -> &'static str { let _ = crate::d::e::g(); "crate::a::c::h" }
        fn g<'a>(c: char) -> bool { c == '"' || c == '\'' }
        macro_rules! m { () => { $crate::a::c::k() }; }
        fn h() { crate::m!(); m![]; }
    "#;
    let scan = scan_file(src, &["a".into(), "b".into()], &modules);
    let targets: Vec<(String, usize)> = scan
        .paths
        .iter()
        .map(|(p, l)| (owner(p, &modules), *l))
        .collect();
    assert_eq!(
        targets,
        vec![
            ("d".into(), 2),
            ("d::e".into(), 2),
            ("d::e".into(), 2),
            ("a::c".into(), 3),
            ("d::e".into(), 6),
            ("d::e".into(), 7),
        ]
    );
    assert_eq!(
        scan.calls,
        vec![("m".to_string(), 10), ("m".to_string(), 10)]
    );
    assert_eq!(
        scan.macros["m"],
        vec![vec!["a".to_string(), "c".into(), "k".into()]]
    );
}

/// Every file module under `src` with the modules it names.
fn module_graph(src: &Path) -> Graph {
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.join("::")).collect();
    let mut scans = Vec::new();
    let mut macros: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("read a source file");
        let scan = scan_file(&text, module, &modules);
        for (name, paths) in &scan.macros {
            macros
                .entry(name.clone())
                .or_default()
                .extend(paths.iter().cloned());
        }
        let shown = path.strip_prefix(src.parent().unwrap()).unwrap_or(path);
        scans.push((module.join("::"), shown.display().to_string(), scan));
    }
    let mut graph = Graph::new();
    for (from, file, scan) in scans {
        graph.entry(from.clone()).or_default();
        let calls = scan.calls.iter().flat_map(|(name, line)| {
            macros
                .get(name)
                .into_iter()
                .flatten()
                .map(move |p| (p.clone(), *line))
        });
        for (path, line) in scan.paths.iter().cloned().chain(calls) {
            let to = owner(&path, &modules);
            if to.is_empty() || within(&from, &to) {
                continue;
            }
            let site = Site {
                file: file.clone(),
                line,
            };
            let sites = graph
                .entry(from.clone())
                .or_default()
                .entry(to)
                .or_default();
            // One place per line, however many names a `use` line imports.
            if !sites
                .iter()
                .any(|s| s.file == site.file && s.line == site.line)
            {
                sites.push(site);
            }
        }
    }
    graph
}

/// `(module path, file)` for every `.rs` file of the library crate.
fn rust_files(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    for path in rust_text::rust_paths(src) {
        let rel = path.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            Some("main") if parts.len() == 1 => continue,
            Some("lib") if parts.len() == 1 => parts.clear(),
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        out.push((parts, path));
    }
    out.sort();
    out
}

/// Whether `inner` is `outer` or lies below it.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer || outer.is_empty() || inner.starts_with(&format!("{outer}::"))
}

/// The deepest module with a file that the absolute path lies in.
fn owner(path: &[String], modules: &BTreeSet<String>) -> String {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
        .unwrap_or_default()
}

/// What one file names: absolute paths with their lines, macro invocations,
/// and the `$crate::` paths of the macros it defines.
#[derive(Default)]
struct Scan {
    paths: Vec<(Vec<String>, usize)>,
    calls: Vec<(String, usize)>,
    macros: BTreeMap<String, Vec<Vec<String>>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Tok {
    text: String,
    line: usize,
}

fn scan_file(text: &str, module: &[String], modules: &BTreeSet<String>) -> Scan {
    let toks = tokens(&blank_comments_and_literals(text));
    let mut scan = Scan::default();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut macro_body: Option<(String, usize)> = None;
    let mut depth = 0usize;
    let mut i = 0;
    let at = |i: usize| toks.get(i).map_or("", |t: &Tok| t.text.as_str());
    while i < toks.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|m| m.0.clone()))
            .collect();
        match at(i) {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|m| m.1 > depth) {
                    inline.pop();
                }
                if macro_body.as_ref().is_some_and(|m| m.1 > depth) {
                    macro_body = None;
                }
            }
            "mod" if at(i + 2) == "{" => {
                inline.push((at(i + 1).to_string(), depth + 1));
                depth += 1;
                i += 3;
                continue;
            }
            "macro_rules" if at(i + 1) == "!" && at(i + 3) == "{" => {
                macro_body = Some((at(i + 2).to_string(), depth + 1));
                depth += 1;
                i += 4;
                continue;
            }
            "use" => {
                let mut leaves = Vec::new();
                i = use_tree(&toks, i + 1, Vec::new(), &mut leaves);
                for (segs, line) in leaves {
                    if let Some(abs) = absolute(&segs, &here, modules, true) {
                        scan.paths.push((abs, line));
                    }
                }
                continue;
            }
            word @ ("crate" | "$crate" | "self" | "super")
                if at(i + 1) == "::" && at(i.wrapping_sub(1)) != "::" =>
            {
                let line = toks[i].line;
                let (mut segs, j) = path_at(&toks, i);
                match &macro_body {
                    _ if at(j) == "!" => scan.calls.push((segs.pop().unwrap_or_default(), line)),
                    Some((name, _)) if word == "$crate" => {
                        scan.macros
                            .entry(name.clone())
                            .or_default()
                            .push(segs[1..].to_vec());
                    }
                    _ => {
                        if let Some(abs) = absolute(&segs, &here, modules, false) {
                            scan.paths.push((abs, line));
                        }
                    }
                }
                i = j;
                continue;
            }
            name if is_ident(name) && at(i + 1) == "!" && matches!(at(i + 2), "(" | "[" | "{") => {
                scan.calls.push((name.to_string(), toks[i].line));
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

/// The path starting at token `i` (`crate::a::b`), and the token after it.
fn path_at(toks: &[Tok], i: usize) -> (Vec<String>, usize) {
    let at = |i: usize| toks.get(i).map_or("", |t: &Tok| t.text.as_str());
    let mut segs = vec![at(i).trim_start_matches('$').to_string()];
    let mut j = i + 1;
    while at(j) == "::" && is_ident(at(j + 1)) {
        segs.push(at(j + 1).to_string());
        j += 2;
    }
    (segs, j)
}

/// Reads a `use` tree from `i` to its `;`, pushing each leaf path with its line.
fn use_tree(
    toks: &[Tok],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let at = |i: usize| toks.get(i).map_or("", |t: &Tok| t.text.as_str());
    if at(i) == "::" {
        i += 1;
    }
    loop {
        match at(i) {
            "{" => {
                i += 1;
                while !matches!(at(i), "}" | "") {
                    i = use_tree(toks, i, prefix.clone(), out);
                    if at(i) == "," {
                        i += 1;
                    }
                }
                return i + 1;
            }
            "*" => {
                out.push((prefix, toks[i].line));
                return i + 1;
            }
            word if is_ident(word) => {
                prefix.push(word.trim_start_matches('$').to_string());
                let line = toks[i].line;
                i += 1;
                if at(i) == "::" {
                    i += 1;
                    continue;
                }
                if at(i) == "as" {
                    i += 2;
                }
                if prefix.last().is_some_and(|s| s == "self") {
                    prefix.pop();
                }
                out.push((prefix, line));
                return if at(i) == ";" { i + 1 } else { i };
            }
            _ => return i + 1,
        }
    }
}

/// The path from the crate root, or `None` for another crate's path (or a
/// bare name that is not a child module, outside `use`).
fn absolute(
    segs: &[String],
    here: &[String],
    modules: &BTreeSet<String>,
    in_use: bool,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = segs;
    match segs.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &segs[1..];
        }
        Some("self") => rest = &segs[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) if in_use => {
            let child = here
                .iter()
                .chain(std::iter::once(&first.to_string()))
                .cloned()
                .collect::<Vec<_>>();
            if !modules.contains(&child.join("::")) {
                return None;
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_ident(s: &str) -> bool {
    let s = s.trim_start_matches('$');
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers (with `$`), `::`, and single punctuation, with their lines.
fn tokens(code: &str) -> Vec<Tok> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i + 1 < chars.len() && (chars[i + 1].is_alphanumeric() || chars[i + 1] == '_') {
                i += 1;
            }
            out.push(Tok {
                text: chars[start..=i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Tok {
                text: "::".into(),
                line,
            });
            i += 1;
        } else if !c.is_whitespace() {
            out.push(Tok {
                text: c.to_string(),
                line,
            });
        }
        i += 1;
    }
    out
}

/// One shortest loop through each edge that lies on a loop, without repeats.
fn all_loops(graph: &Graph) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for (from, outs) in graph {
        for to in outs.keys() {
            if let Some(mut path) = shortest_path(graph, to, from) {
                path.insert(0, from.clone());
                path.pop();
                let start = (0..path.len()).min_by_key(|&k| &path[k]).unwrap_or(0);
                path.rotate_left(start);
                found.insert(path);
            }
        }
    }
    found.into_iter().collect()
}

fn shortest_path(graph: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(m) = queue.pop_front() {
        if m == to {
            let mut path = vec![to.to_string()];
            let mut cur = to;
            while let Some(p) = prev.get(cur) {
                path.push(p.to_string());
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(m).into_iter().flat_map(|o| o.keys()) {
            if seen.insert(next) {
                prev.insert(next, m);
                queue.push_back(next);
            }
        }
    }
    None
}

fn cycle_edges(cycle: &[String]) -> impl Iterator<Item = (&String, &String)> {
    (0..cycle.len()).map(move |k| (&cycle[k], &cycle[(k + 1) % cycle.len()]))
}

/// `a -> b -> a`, then where each step is named (the first three places).
fn describe(cycle: &[String], graph: &Graph) -> String {
    let mut names: Vec<&str> = cycle.iter().map(String::as_str).collect();
    names.push(&cycle[0]);
    let mut out = names.join(" -> ");
    for (from, to) in cycle_edges(cycle) {
        let sites = &graph[from][to];
        let shown: Vec<String> = sites
            .iter()
            .take(3)
            .map(|s| format!("{}:{}", s.file, s.line))
            .collect();
        let more = if sites.len() > 3 {
            format!(" (+{} more)", sites.len() - 3)
        } else {
            String::new()
        };
        let _ = write!(out, "\n    {from} -> {to}: {}{more}", shown.join(", "));
    }
    out
}

fn parse_edge(entry: &str) -> (String, String) {
    let (from, to) = entry
        .split_once("->")
        .expect("a KNOWN entry reads \"from -> to\"");
    (from.trim().to_string(), to.trim().to_string())
}
