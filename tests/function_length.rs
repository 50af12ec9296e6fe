//! No function under `src/` is longer than [`LIMIT`] lines.
//!
//! Reads every file under `src/` as text with comments and literals blanked,
//! finds each `fn` with a body and measures it from the line of `fn` to the
//! line of its closing brace. Test code is left out: files named `tests.rs`
//! and the items after a `#[cfg(test)]`. A function that stays long must be
//! in [`KNOWN`] with its length; the test fails on a new long function, on
//! one that grew, and on a [`KNOWN`] entry that is now short (remove it: the
//! list only shrinks).

use std::path::{Path, PathBuf};

#[path = "common/rust_text.rs"]
mod rust_text;
use rust_text::blank_comments_and_literals;

/// The longest a function may be, in lines.
const LIMIT: usize = 200;

/// Functions longer than [`LIMIT`] today, being split: "file::name" and the
/// lines it has now.
const KNOWN: &[(&str, usize)] = &[];

#[test]
fn no_function_is_longer_than_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    for path in rust_files(&src) {
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let rel = path.strip_prefix(&src).unwrap().display().to_string();
        for f in functions(&text) {
            all.push((format!("{rel}::{}", f.name), f.line, f.lines));
        }
    }
    all.sort_by_key(|f| std::cmp::Reverse(f.2));
    for (name, line, lines) in all.iter().take(10) {
        eprintln!("{lines:>5} lines  {name} (line {line})");
    }
    let mut problems = Vec::new();
    for (name, line, lines) in all.iter().filter(|f| f.2 > LIMIT) {
        match KNOWN.iter().find(|(k, _)| k == name) {
            None => problems.push(format!("{name} (line {line}) has {lines} lines; split it")),
            Some((_, known)) if lines > known => problems.push(format!(
                "{name} (line {line}) grew from {known} to {lines} lines"
            )),
            Some(_) => {}
        }
    }
    for (name, _) in KNOWN {
        if !all.iter().any(|f| &f.0 == name && f.2 > LIMIT) {
            problems.push(format!(
                "{name} is in KNOWN but no longer too long; remove it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The reader on a small piece of Rust it must get right.
#[test]
fn reader_measures_bodies_and_skips_tests_and_declarations() {
    let text = r#"
trait T { fn declared(&self); }
pub(crate) async fn outer() -> Result<(), String> {
    let s = "fn not_a_function() {";
    let c = '{';
    // fn commented() {
    inner();
    fn inner() {}
    Ok(())
}
#[cfg(test)]
mod tests {
    fn hidden() {
    }
}
fn after() { }
"#;
    let found: Vec<(String, usize, usize)> = functions(text)
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    assert_eq!(
        found,
        vec![
            ("outer".to_string(), 3, 8),
            ("inner".to_string(), 8, 1),
            ("after".to_string(), 16, 1),
        ]
    );
}

/// A function found in a file: its name, the line of `fn`, its length.
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// Every function with a body in `text`, outside `#[cfg(test)]` items.
fn functions(text: &str) -> Vec<Function> {
    let code: Vec<char> = blank_comments_and_literals(text).chars().collect();
    let line_at = |i: usize| code[..i].iter().filter(|&&c| c == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if word_at(&code, i, "#[cfg(test)]") {
            i = item_end(&code, i + "#[cfg(test)]".len());
        } else if word_at(&code, i, "fn") {
            let name: String = code[i + 2..]
                .iter()
                .skip_while(|c| c.is_whitespace())
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect();
            if let Some((open, close)) = body(&code, i).filter(|_| !name.is_empty()) {
                out.push(Function {
                    name,
                    line: line_at(i),
                    lines: line_at(close) - line_at(i) + 1,
                });
                i = open + 1;
                continue;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `word` starts at `i` and is not part of a longer identifier.
fn word_at(code: &[char], i: usize, word: &str) -> bool {
    let ident = |c: &char| c.is_alphanumeric() || *c == '_';
    let w: Vec<char> = word.chars().collect();
    code.get(i..i + w.len()) == Some(&w[..])
        && (i == 0 || !ident(&code[i - 1]))
        && code.get(i + w.len()).is_none_or(|c| !ident(c))
}

/// The braces of the body of the `fn` at `at`, or `None` for a declaration
/// (a `;` before any `{`).
fn body(code: &[char], at: usize) -> Option<(usize, usize)> {
    let open = (at..code.len()).find(|&j| code[j] == '{' || code[j] == ';')?;
    (code[open] == '{').then(|| (open, matching(code, open)))
}

/// The end of the item that starts after `from`: its closing brace, or its
/// `;` when it has no body.
fn item_end(code: &[char], from: usize) -> usize {
    match (from..code.len()).find(|&j| code[j] == '{' || code[j] == ';') {
        Some(j) if code[j] == '{' => matching(code, j) + 1,
        Some(j) => j + 1,
        None => code.len(),
    }
}

/// The brace that closes the one at `open`.
fn matching(code: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

/// Every `.rs` file under `src`, but files named `tests.rs`.
fn rust_files(src: &Path) -> Vec<PathBuf> {
    rust_text::rust_paths(src)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .collect()
}
