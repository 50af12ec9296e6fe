//! Every ```toml block in docs/policies.md is a complete policy file that compiles:
//! the reference cannot drift from the language.

use guardian::config::Config;
use guardian::policy::compile_str;

#[test]
fn every_policy_example_in_the_reference_compiles() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policies.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_end() == "```toml" => current = Some((i + 1, String::new())),
            Some((start, body)) if line.trim_end() == "```" => {
                blocks.push((*start, std::mem::take(body)));
                current = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(blocks.len() >= 10, "found only {} examples", blocks.len());
    for (line, body) in blocks {
        if let Err(e) = compile_str(&format!("docs/policies.md:{line}"), &body, &Config::empty()) {
            panic!("the example at docs/policies.md:{line} does not compile:\n{e}\n{body}");
        }
    }
}
