//! Rust source as text, for the tests that read `src/` (module loops,
//! function lengths): comments and literals blanked so that what is left is
//! code, with every line where it was.

use std::path::{Path, PathBuf};

/// Every `.rs` file below `src`, sorted.
pub fn rust_paths(src: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code with comments and the insides of string and char literals turned
/// to spaces; new lines are kept so line numbers stay true.
pub fn blank_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let end = match c[i] {
            '/' if next == Some('/') => (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len()),
            '/' if next == Some('*') => block_comment_end(&c, i),
            'r' | 'b' if is_raw_string_start(&c, i) => raw_string_end(&c, i),
            '"' => quoted_end(&c, i, '"'),
            '\'' if next == Some('\\') || c.get(i + 2) == Some(&'\'') => quoted_end(&c, i, '\''),
            _ => {
                i += 1;
                continue;
            }
        };
        blank(&mut out, i, end);
        i = end;
    }
    out.into_iter().collect()
}

fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut nest = 0;
    while i + 1 < c.len() {
        if c[i] == '/' && c[i + 1] == '*' {
            nest += 1;
            i += 2;
        } else if c[i] == '*' && c[i + 1] == '/' {
            nest -= 1;
            i += 2;
            if nest == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    c.len()
}

fn is_raw_string_start(c: &[char], i: usize) -> bool {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return false;
    }
    let j = if c[i] == 'b' && c.get(i + 1) == Some(&'r') {
        i + 2
    } else if c[i] == 'r' {
        i + 1
    } else {
        return false;
    };
    let k = (j..c.len()).find(|&k| c[k] != '#').unwrap_or(c.len());
    c.get(k) == Some(&'"')
}

fn raw_string_end(c: &[char], i: usize) -> usize {
    let open = (i..c.len()).find(|&k| c[k] == '"').unwrap();
    let hashes = c[i..open].iter().filter(|&&h| h == '#').count();
    (open + 1..c.len())
        .find(|&k| c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')))
        .map_or(c.len(), |k| k + 1 + hashes)
}

fn quoted_end(c: &[char], mut i: usize, quote: char) -> usize {
    i += 1;
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            q if q == quote => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}
