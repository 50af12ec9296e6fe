//! Reading TOML with every problem located.
//!
//! Configuration and policy files are parsed into a span-carrying tree
//! (`toml::de::DeTable`), then walked by hand. The walk never stops at the first
//! problem: each one becomes a [`Diagnostic`] with file, line, column and a
//! hint, and loading fails only after the whole file has been read. Every key
//! a walker does not ask for is reported as unknown, with the closest known
//! key as a suggestion.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

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
        let (line, column) = self.file.location(span.start);
        self.found.0.push(Diagnostic {
            file: self.file.path.clone(),
            line,
            column,
            message: message.into(),
            hint,
        });
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
    let hint = match did_you_mean(text, names.iter().copied()) {
        Some(k) => format!("did you mean `{k}`? (one of: {})", names.join(", ")),
        None => format!("one of: {}", names.join(", ")),
    };
    r.error(
        &value.span(),
        format!("`{text}` is not a valid {what}"),
        Some(hint),
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

    #[test]
    fn syntax_errors_are_located() {
        let f = SourceFile::new("x.toml", "a = 1\nb = \n".into());
        let mut r = Reporter::new(&f);
        assert!(r.parse().is_none());
        assert!(!r.found.is_empty());
        assert_eq!(r.found.0[0].line, 2);
    }
}
