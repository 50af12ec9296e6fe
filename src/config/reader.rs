//! Reading TOML with every problem located.
//!
//! Configuration and policy files are parsed into a span-carrying tree
//! (`toml::de::DeTable`), then walked by hand. The walk never stops at the first
//! problem: each one becomes a [`Diagnostic`] with file, line, column and a
//! hint, and loading fails only after the whole file has been read. Every key
//! a walker does not ask for is reported as unknown, with the closest known
//! key as a suggestion.
//!
//! A diagnostic prints two ways. Its `Display` is one line per problem
//! (`path:line:col: message` and an indented `hint:`), for logs, alerts and
//! JSON. [`Diagnostics::render`] shows it the way rustc does, through
//! `annotate-snippets`: the source line with a caret under the offending span
//! and the hint as a `help:` note. The CLI prints the rendered form on stderr
//! (through `say::diagnostics`, which imports this module, never the reverse),
//! in colour only on a terminal without `NO_COLOR`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One located problem in a configuration or policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The source line the problem points into, when the text was at hand.
    pub excerpt: Option<Excerpt>,
}

/// One source line and the part of it a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The line, without its line ending.
    pub text: String,
    /// Byte range within `text` to underline; empty for a point (e.g. the end of the file).
    pub span: Range<usize>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// The problem as rustc shows one: `error:` with the message, ` --> path:line:col`,
    /// the source line with a caret under the span, and the hint as `help:`. Without
    /// a carried excerpt, the line is read from the file when it can be; without a
    /// location, only the path is shown.
    pub fn render(&self, colour: bool) -> String {
        let renderer = if colour {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let path = self.file.display().to_string();
        let title = Level::ERROR.primary_title(self.message.as_str());
        let excerpt = self.excerpt_or_file_line();
        let group = match excerpt.as_deref() {
            Some(e) => Group::with_title(title).element(
                Snippet::source(e.text.as_str())
                    .line_start(self.line)
                    .path(path.as_str())
                    .annotation(AnnotationKind::Primary.span(e.span.clone())),
            ),
            None if self.line > 0 => Group::with_title(title).element(
                Origin::path(path.as_str())
                    .line(self.line)
                    .char_column(self.column),
            ),
            None => Group::with_title(title).element(Origin::path(path.as_str())),
        };
        let group = match &self.hint {
            Some(hint) => {
                group.element(Level::HELP.message(annotate_snippets::normalize_untrusted_str(hint)))
            }
            None => group,
        };
        renderer.render(&[group])
    }

    /// The carried excerpt, or the located line read back from the file (underlined from
    /// the column to its end) for diagnostics built without the text at hand.
    fn excerpt_or_file_line(&self) -> Option<Cow<'_, Excerpt>> {
        if let Some(e) = &self.excerpt {
            return Some(Cow::Borrowed(e));
        }
        let text = std::fs::read_to_string(&self.file).ok()?;
        let line = text.lines().nth(self.line.checked_sub(1)?)?.to_string();
        let start = line
            .char_indices()
            .nth(self.column.saturating_sub(1))
            .map_or(line.len(), |(i, _)| i);
        let end = start.max(line.trim_end().len());
        Some(Cow::Owned(Excerpt {
            text: line,
            span: start..end,
        }))
    }
}

/// Every problem found while loading, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// Every diagnostic in its [rendered form](Diagnostic::render), a blank line between them.
    pub fn render(&self, colour: bool) -> String {
        let rendered: Vec<String> = self.0.iter().map(|d| d.render(colour)).collect();
        rendered.join("\n\n")
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// `Ok(value)` when nothing was reported, else every diagnostic.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// A file's text with a line index, for turning byte offsets into line:column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// Reads a file; the error names the path.
    pub fn read(path: &Path) -> Result<Self, Diagnostics> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => Err(Diagnostics(vec![Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the file: {e}"),
                hint: None,
                excerpt: None,
            }])),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn location(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }

    /// The line holding `span.start`, with the span cut to that line (a span
    /// over several lines, such as a whole table, is shown by its first line).
    pub fn excerpt(&self, span: &Range<usize>) -> Excerpt {
        let start = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= start) - 1;
        let line_start = self.line_starts[line];
        let rest = &self.text[line_start..];
        let text = rest.split('\n').next().unwrap_or_default();
        let text = text.strip_suffix('\r').unwrap_or(text);
        let end = span.end.clamp(start, line_start + text.len());
        Excerpt {
            text: text.to_string(),
            span: start - line_start..end - line_start,
        }
    }

    /// A diagnostic at `span` in this file, carrying its source line.
    pub fn diagnostic(
        &self,
        span: &Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = self.location(span.start);
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
            hint,
            excerpt: Some(self.excerpt(span)),
        }
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub struct Reporter<'f> {
    pub file: &'f SourceFile,
    pub found: Diagnostics,
}

impl<'f> Reporter<'f> {
    pub fn new(file: &'f SourceFile) -> Self {
        Self {
            file,
            found: Diagnostics::default(),
        }
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let found = self.file.diagnostic(span, message, hint);
        self.found.0.push(found);
    }

    /// Parses the file's TOML, reporting syntax errors (all that the parser recovers from).
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'f>>> {
        let (table, errors) = DeTable::parse_recoverable(&self.file.text);
        let had_errors = !errors.is_empty();
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            self.error(
                &span,
                format!("TOML syntax: {}", e.message().trim()),
                Some("see https://toml.io for the syntax".into()),
            );
        }
        (!had_errors).then_some(table)
    }
}

/// The hint for a name that is not one of `names`: the closest, if any is
/// close, and every one.
pub fn one_of_hint(name: &str, names: &[&str]) -> String {
    match did_you_mean(name, names.iter().copied()) {
        Some(k) => format!("did you mean `{k}`? (one of: {})", names.join(", ")),
        None => format!("one of: {}", names.join(", ")),
    }
}

/// The closest name to `name` among `known`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A TOML value with its span.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// Walks one TOML table: hands out its keys and reports the ones nobody asked for.
#[derive(Debug)]
pub struct TableReader<'a, 'i> {
    table: &'a DeTable<'i>,
    pub span: Range<usize>,
    /// Where this table is, for messages: `policy "vault-drain".when`.
    pub context: String,
    asked: Vec<&'static str>,
}

impl<'a, 'i> TableReader<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, span: Range<usize>, context: impl Into<String>) -> Self {
        Self {
            table,
            span,
            context: context.into(),
            asked: Vec::new(),
        }
    }

    /// A value that is a table, as a reader; reports a type error otherwise.
    pub fn from_value(
        value: &'a Value<'i>,
        context: impl Into<String>,
        r: &mut Reporter<'_>,
    ) -> Option<Self> {
        let context = context.into();
        match value.get_ref() {
            DeValue::Table(t) => Some(Self::new(t, value.span(), context)),
            other => {
                r.error(
                    &value.span(),
                    format!("{context} must be a table, found {}", other.type_str()),
                    None,
                );
                None
            }
        }
    }

    /// The value under `key`, if present. Marks the key as known.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Value<'i>> {
        self.asked.push(key);
        self.table.get(key)
    }

    /// Whether `key` is present (marks it as known).
    pub fn has(&mut self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    /// The value under `key`, reporting its absence.
    pub fn require(&mut self, key: &'static str, r: &mut Reporter<'_>) -> Option<&'a Value<'i>> {
        let value = self.get(key);
        if value.is_none() {
            r.error(
                &self.span,
                format!("{} is missing `{key}`", self.context),
                None,
            );
        }
        value
    }

    pub fn string(
        &mut self,
        key: &'static str,
        r: &mut Reporter<'_>,
    ) -> Option<(&'a str, Range<usize>)> {
        let value = self.get(key)?;
        as_str(value, &format!("{}.{key}", self.context), r).map(|s| (s, value.span()))
    }

    /// The optional whole number under `key`; anything else is reported.
    pub fn u64(&mut self, key: &'static str, r: &mut Reporter<'_>) -> Option<u64> {
        let value = self.get(key)?;
        as_u64(value, key, r)
    }

    pub fn required_string(
        &mut self,
        key: &'static str,
        r: &mut Reporter<'_>,
    ) -> Option<(&'a str, Range<usize>)> {
        let value = self.require(key, r)?;
        as_str(value, &format!("{}.{key}", self.context), r).map(|s| (s, value.span()))
    }

    /// Reports every key in the table that no call asked for.
    pub fn finish(self, r: &mut Reporter<'_>) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if self.asked.contains(&name) {
                continue;
            }
            let hint = match did_you_mean(name, self.asked.iter().copied()) {
                Some(k) => format!("did you mean `{k}`?"),
                None => {
                    let mut known: Vec<_> = self.asked.clone();
                    known.sort_unstable();
                    known.dedup();
                    format!("known fields here: {}", known.join(", "))
                }
            };
            r.error(
                &key.span(),
                format!("unknown field `{name}` in {}", self.context),
                Some(hint),
            );
        }
    }

    /// The keys of this table in document order, with their values.
    pub fn entries(
        &self,
    ) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Value<'i>)> + use<'a, 'i> {
        self.table
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
    }
}

pub fn as_str<'a>(value: &'a Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<&'a str> {
    match value.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        other => {
            r.error(
                &value.span(),
                format!("{what} must be a string, found {}", other.type_str()),
                None,
            );
            None
        }
    }
}

/// A number (integer or float) as f64; reports strings and other types.
pub fn as_number(value: &Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<f64> {
    let parsed = match value.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|v| v as f64)
            .or_else(|| {
                u128::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .map(|v| v as f64)
            }),
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        other => {
            r.error(
                &value.span(),
                format!("{what} must be a number, found {}", other.type_str()),
                None,
            );
            return None;
        }
    };
    match parsed {
        Some(v) if v.is_finite() => Some(v),
        _ => {
            r.error(
                &value.span(),
                format!("{what} must be a finite number"),
                None,
            );
            None
        }
    }
}

/// A non-negative whole number.
pub fn as_u64(value: &Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<u64> {
    match value.get_ref() {
        DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(v) => Some(v),
            Err(_) => {
                r.error(
                    &value.span(),
                    format!("{what} must be a whole number of at least 0"),
                    None,
                );
                None
            }
        },
        other => {
            r.error(
                &value.span(),
                format!("{what} must be a whole number, found {}", other.type_str()),
                None,
            );
            None
        }
    }
}

pub fn as_bool(value: &Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<bool> {
    match value.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        other => {
            r.error(
                &value.span(),
                format!("{what} must be true or false, found {}", other.type_str()),
                None,
            );
            None
        }
    }
}

/// An array's items; reports other types.
pub fn as_array<'a, 'i>(
    value: &'a Value<'i>,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<&'a [Value<'i>]> {
    match value.get_ref() {
        DeValue::Array(a) => Some(a),
        other => {
            r.error(
                &value.span(),
                format!("{what} must be an array, found {}", other.type_str()),
                None,
            );
            None
        }
    }
}

/// A string that must be one of `choices`; reports the choices otherwise.
pub fn as_choice<T: Copy>(
    value: &Value<'_>,
    what: &str,
    choices: &[(&'static str, T)],
    r: &mut Reporter<'_>,
) -> Option<T> {
    let text = as_str(value, what, r)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    r.error(
        &value.span(),
        format!("`{text}` is not a valid {what}"),
        Some(one_of_hint(text, &names)),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_lines_and_columns() {
        let f = SourceFile::new("x.toml", "a = 1\nbc = 2\n".into());
        assert_eq!(f.location(0), (1, 1));
        assert_eq!(f.location(6), (2, 1));
        assert_eq!(f.location(9), (2, 4));
    }

    #[test]
    fn unknown_keys_are_reported_with_a_suggestion() {
        let f = SourceFile::new("x.toml", "severity = 'critical'\nsevrity = 'x'\n".into());
        let mut r = Reporter::new(&f);
        let doc = r.parse().unwrap();
        let mut t = TableReader::new(doc.get_ref(), doc.span(), "policy");
        t.get("severity");
        t.get("description");
        t.finish(&mut r);
        assert_eq!(r.found.len(), 1);
        let d = &r.found.0[0];
        assert_eq!((d.line, d.column), (2, 1));
        assert!(d.message.contains("unknown field `sevrity`"));
        assert_eq!(d.hint.as_deref(), Some("did you mean `severity`?"));
    }

    /// One diagnostic from `file` at `span`, rendered without colour.
    fn rendered(file: &SourceFile, span: Range<usize>, hint: Option<&str>) -> String {
        let d = file.diagnostic(&span, "the problem", hint.map(String::from));
        d.render(false)
    }

    #[test]
    fn rendering_puts_the_caret_under_a_span_after_multi_byte_characters() {
        // `é` is two bytes and one column; `日本` is six bytes, two characters and four columns.
        let f = SourceFile::new("x.toml", "a = 1\nclé = \"日本\" bad = 2\n".into());
        let start = f.text.find("bad").unwrap();
        let d = f.diagnostic(&(start..start + 3), "the problem", None);
        assert_eq!((d.line, d.column), (2, 12));
        assert_eq!(
            d.excerpt,
            Some(Excerpt {
                text: "clé = \"日本\" bad = 2".into(),
                span: 16..19,
            })
        );
        let out = rendered(&f, start..start + 3, Some("remove it"));
        let expected = "\
error: the problem
 --> x.toml:2:12
  |
2 | clé = \"日本\" bad = 2
  |              ^^^
  |
  = help: remove it";
        assert_eq!(out, expected);
        // The one-line form is unchanged by the excerpt.
        assert_eq!(
            d.to_string(),
            "x.toml:2:12: the problem",
            "Display stays one line"
        );
    }

    #[test]
    fn rendering_points_at_the_end_of_the_file() {
        let f = SourceFile::new("x.toml", "a = 1\nb = 2\n".into());
        let end = f.text.len();
        let out = rendered(&f, end..end, None);
        let expected = "\
error: the problem
 --> x.toml:3:1
  |
3 |
  | ^";
        assert_eq!(out, expected);
        // A string left open at the end of the file, as the parser reports it.
        let f = SourceFile::new("x.toml", "a = 1\nname = \"é".into());
        let mut r = Reporter::new(&f);
        assert!(r.parse().is_none());
        let out = r.found.render(false);
        assert!(out.contains(" --> x.toml:2:10\n"), "{out}");
        assert!(out.contains("2 | name = \"é\n  |          ^"), "{out}");
        assert!(out.contains("= help: see https://toml.io"), "{out}");
    }

    #[test]
    fn rendering_a_span_over_several_lines_shows_its_first_line() {
        let f = SourceFile::new("x.toml", "[guardian]\nmode = 1\n".into());
        let out = rendered(&f, 0..f.text.len(), None);
        assert!(out.ends_with("1 | [guardian]\n  | ^^^^^^^^^^"), "{out}");
    }

    #[test]
    fn rendering_without_a_location_names_the_file() {
        let d = SourceFile::read(Path::new("no/such/guardian.toml")).unwrap_err();
        let out = d.render(false);
        assert!(
            out.starts_with("error: cannot read the file: ")
                && out.ends_with("\n--> no/such/guardian.toml"),
            "{out}"
        );
    }

    #[test]
    fn rendering_reads_the_line_back_when_no_excerpt_was_carried() {
        // A pinned fixture (it never changes): line 5 is `id = "vault-drain"`.
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/v1/every-condition.toml"
        );
        let d = Diagnostic {
            file: file.into(),
            line: 5,
            column: 6,
            message: "the problem".into(),
            hint: None,
            excerpt: None,
        };
        let out = d.render(false);
        assert!(out.contains(&format!(" --> {file}:5:6\n")), "{out}");
        assert!(
            out.ends_with("5 | id = \"vault-drain\"\n  |      ^^^^^^^^^^^^^"),
            "{out}"
        );
    }

    #[test]
    fn several_diagnostics_render_apart_and_in_colour_only_when_asked() {
        let f = SourceFile::new("x.toml", "a = 1\nb = 2\n".into());
        let found = Diagnostics(vec![
            f.diagnostic(&(0..1), "first", None),
            f.diagnostic(&(6..7), "second", Some("fix it".into())),
        ]);
        let plain = found.render(false);
        assert_eq!(plain.matches("error: ").count(), 2);
        assert!(plain.contains("\n\nerror: second\n"), "{plain}");
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(found.render(true).contains('\x1b'));
    }

    #[test]
    fn syntax_errors_are_located() {
        let f = SourceFile::new("x.toml", "a = 1\nb = \n".into());
        let mut r = Reporter::new(&f);
        assert!(r.parse().is_none());
        assert!(!r.found.is_empty());
        assert_eq!(r.found.0[0].line, 2);
    }
}
