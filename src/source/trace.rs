//! Metric traces (format v1, `shared/spec/trace-format.md`): reading for
//! replay, writing for recording.
//!
//! The reader streams: it keeps one line in a reused buffer, so memory stays
//! flat however long the trace. It never skips a malformed row: every problem
//! is an error naming the file, line and column and what was expected.
//!
//! Besides each field, the reader checks the order of block numbers, which a
//! corrupted row breaks first (a row with a block far in the future, or back
//! in the past, silently restarts every window): see [`BlockRules`].

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use crate::metrics::is_valid_metric_name;

/// The header line every trace starts with (after comments).
pub const HEADER: &str = "block,time_ms,metric,value";

/// A problem reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: cannot read the trace: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Malformed {
        path: PathBuf,
        line: u64,
        column: usize,
        message: String,
    },
}

/// Default for [`BlockRules::max_jump`]: the largest step forward between two
/// rows' block numbers (about 3.3 hours of 12 s blocks).
pub const DEFAULT_MAX_BLOCK_JUMP: u64 = 1000;

/// The comment the recorder writes before the re-read blocks of a reorg
/// (`# reorg: blocks after N replaced: ...`); the reader lets the next rows go
/// back to block N + 1.
pub const REORG_COMMENT: &str = "reorg: blocks after ";

/// How block numbers may move from row to row.
///
/// The trace format orders rows by time; blocks follow the chain. A row's block
/// may be at most one below the highest block read so far (samples from pending
/// transactions carry the number of the block they are expected in, so the
/// next mined block's rows, or a watchdog row for the last mined block, may
/// follow them), and at most [`BlockRules::max_jump`] above it. A reorg comment
/// written by the recorder lowers the highest block to the common ancestor.
///
/// A recording of several networks interleaves their block numbers: give each
/// metric its network's group ([`BlockRules::groups`]) and blocks are checked
/// per group. A metric without a group is in group 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockRules {
    /// The largest step forward (default [`DEFAULT_MAX_BLOCK_JUMP`]).
    pub max_jump: u64,
    /// Metric name -> group (a network); absent metrics are in group 0.
    pub groups: HashMap<String, usize>,
}

impl BlockRules {
    /// The default rules: one group, [`DEFAULT_MAX_BLOCK_JUMP`].
    pub fn new() -> Self {
        Self {
            max_jump: DEFAULT_MAX_BLOCK_JUMP,
            groups: HashMap::new(),
        }
    }

    /// Blocks checked per network: each metric of `config` with a `network` in that network's group.
    pub fn per_network(mut self, config: &crate::config::Config) -> Self {
        let networks: Vec<&String> = config.networks.keys().collect();
        for m in &config.metrics {
            if let Some(i) = m
                .network
                .as_ref()
                .and_then(|n| networks.iter().position(|x| *x == n))
            {
                self.groups.insert(m.name.clone(), i + 1);
            }
        }
        self
    }

    fn group(&self, metric: &str) -> usize {
        if self.groups.is_empty() {
            return 0;
        }
        self.groups.get(metric).copied().unwrap_or(0)
    }
}

/// One row of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    pub block: u64,
    pub time_ms: u64,
    pub metric: &'a str,
    pub value: f64,
    /// 1-based line number in the file.
    pub line: u64,
}

/// Streams rows out of a trace.
#[derive(Debug)]
pub struct TraceReader<R> {
    input: R,
    path: PathBuf,
    line: u64,
    buf: Vec<u8>,
    header_seen: bool,
    last_time: u64,
    rules: BlockRules,
    /// The highest block read so far, per group of [`BlockRules`].
    high: Vec<Option<u64>>,
    /// The previous row's metric name and its group: traces repeat names, so a
    /// name equal to it is neither validated nor looked up again.
    last_metric: (String, usize),
    /// Length of the previous row's line when it was read in place from the
    /// input's buffer (consumed on the next call).
    in_place: usize,
}

impl TraceReader<io::BufReader<std::fs::File>> {
    /// Opens a trace file.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(io::BufReader::with_capacity(1 << 16, file), path))
    }
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

impl<R: BufRead> TraceReader<R> {
    pub fn new(input: R, path: impl Into<PathBuf>) -> Self {
        Self {
            input,
            path: path.into(),
            line: 0,
            buf: Vec::with_capacity(256),
            header_seen: false,
            last_time: 0,
            rules: BlockRules::new(),
            high: Vec::new(),
            last_metric: (String::new(), 0),
            in_place: 0,
        }
    }

    /// Checks block order by `rules` instead of the defaults.
    pub fn with_block_rules(mut self, rules: BlockRules) -> Self {
        self.rules = rules;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn malformed(&self, column: usize, message: impl Into<String>) -> TraceError {
        malformed(&self.path, self.line, column, message.into())
    }

    /// The next row, `None` at the end of the trace.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, TraceError> {
        self.input.consume(std::mem::take(&mut self.in_place));
        if self.header_seen {
            // A whole row in the input's buffer is parsed where it is, not copied.
            let buffered = self.input.fill_buf().map_err(|source| TraceError::Io {
                path: self.path.clone(),
                source,
            })?;
            if let Some(quick) = quick_row(buffered, self.last_metric.0.as_bytes()) {
                self.line += 1;
                self.in_place = quick.len;
                return self.accept_quick(quick).map(Some);
            }
            if let Some(n) = memchr::memchr(b'\n', buffered)
                && buffered[0] != b'#'
            {
                let end = if n > 0 && buffered[n - 1] == b'\r' {
                    n - 1
                } else {
                    n
                };
                self.line += 1;
                self.in_place = n + 1;
                return self.parse_row(end, true).map(Some);
            }
        }
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| TraceError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                if !self.header_seen {
                    self.line += 1;
                    return Err(
                        self.malformed(1, format!("the trace ended before its header `{HEADER}`"))
                    );
                }
                return Ok(None);
            }
            self.line += 1;
            let mut end = self.buf.len();
            if self.buf[end - 1] == b'\n' {
                end -= 1;
            }
            if end > 0 && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if self.buf.first() == Some(&b'#') {
                self.on_comment(end);
                continue;
            }
            if !self.header_seen {
                if &self.buf[..end] != HEADER.as_bytes() {
                    return Err(self.malformed(
                        1,
                        format!(
                            "expected the header `{HEADER}`, found `{}`",
                            String::from_utf8_lossy(&self.buf[..end])
                        ),
                    ));
                }
                self.header_seen = true;
                continue;
            }
            return self.parse_row(end, false).map(Some);
        }
    }

    /// A recorder's reorg comment: the re-read blocks after the common ancestor follow.
    fn on_comment(&mut self, end: usize) {
        let text = String::from_utf8_lossy(&self.buf[1..end]);
        let Some(rest) = text.trim_start().strip_prefix(REORG_COMMENT) else {
            return;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(ancestor) = digits.parse::<u64>() {
            for h in self.high.iter_mut().flatten() {
                *h = (*h).min(ancestor.saturating_add(1));
            }
        }
    }

    /// Parses the row in the first `end` bytes of the input's buffer
    /// (`in_place`) or of the copied line, and checks its order.
    fn parse_row(&mut self, end: usize, in_place: bool) -> Result<Row<'_>, TraceError> {
        let (path, line_number) = (&self.path, self.line);
        let line: &[u8] = if in_place {
            // Already filled: the row was found in it and nothing was consumed since.
            self.input.fill_buf().map_err(|source| TraceError::Io {
                path: path.clone(),
                source,
            })?
        } else {
            &self.buf
        };
        let row = fields(&line[..end], self.last_metric.0.as_bytes())
            .map_err(|(column, message)| malformed(path, line_number, column, message))?;
        check_time(&mut self.last_time, row.time_ms)
            .map_err(|message| malformed(path, line_number, row.time_column, message))?;
        let (block, time_ms, value) = (row.block, row.time_ms, row.value);
        if let Some(metric) = row.metric {
            let group = self.rules.group(metric);
            self.last_metric.0.clear();
            self.last_metric.0.push_str(metric);
            self.last_metric.1 = group;
        }
        if let Err(message) = check_block(
            &mut self.high,
            self.rules.max_jump,
            block,
            self.last_metric.1,
        ) {
            return Err(malformed(path, line_number, 1, message));
        }
        Ok(Row {
            block,
            time_ms,
            // The name was just copied there, or is the previous row's.
            metric: &self.last_metric.0,
            value,
            line: line_number,
        })
    }
}

impl<R: BufRead> TraceReader<R> {
    /// Checks the order of a row [`quick_row`] parsed (its metric is the previous row's).
    fn accept_quick(&mut self, quick: QuickRow) -> Result<Row<'_>, TraceError> {
        let (path, line) = (&self.path, self.line);
        check_time(&mut self.last_time, quick.time_ms)
            .map_err(|message| malformed(path, line, quick.time_column, message))?;
        let group = self.last_metric.1;
        check_block(&mut self.high, self.rules.max_jump, quick.block, group)
            .map_err(|message| malformed(path, line, 1, message))?;
        Ok(Row {
            block: quick.block,
            time_ms: quick.time_ms,
            metric: &self.last_metric.0,
            value: quick.value,
            line,
        })
    }
}

/// Checks that `time_ms` is not earlier than the previous row's (`last`), then moves `last`.
fn check_time(last: &mut u64, time_ms: u64) -> Result<(), String> {
    if time_ms < *last {
        return Err(format!(
            "rows out of time order: time_ms {time_ms} is earlier than the previous row's {last}"
        ));
    }
    *last = time_ms;
    Ok(())
}

/// A row [`quick_row`] parsed: its fields and its length with the newline.
struct QuickRow {
    block: u64,
    time_ms: u64,
    time_column: usize,
    value: f64,
    len: usize,
}

/// The common row, parsed in one pass from the start of `buf`:
/// `digits,digits,<the previous row's metric>,[-]digits[.digits]` then a
/// newline (`\r\n` too), each number as [`parse_u64`] and
/// [`parse_plain_decimal`] read it (at most 19 digits here). Anything else,
/// or a row not wholly in `buf`, is `None`: [`fields`] then parses it, and
/// reports its errors, exactly as before.
fn quick_row(buf: &[u8], last_metric: &[u8]) -> Option<QuickRow> {
    let (block, after_block) = quick_u64(buf, 0)?;
    let (time_ms, after_time) = quick_u64(buf, after_block + 1)?;
    let metric_end = after_time + 1 + last_metric.len();
    if last_metric.is_empty()
        || buf.get(after_time + 1..metric_end)? != last_metric
        || *buf.get(metric_end)? != b','
    {
        return None;
    }
    let rest = &buf[metric_end + 1..];
    // A plain decimal has at most 19 digits, a point and a sign (then `\r\n`).
    let newline = rest.iter().take(24).position(|&b| b == b'\n')?;
    let value_field = match rest[..newline].split_last() {
        Some((b'\r', value)) => value,
        _ => &rest[..newline],
    };
    Some(QuickRow {
        block,
        time_ms,
        time_column: after_block + 2,
        value: parse_plain_decimal(value_field)?,
        len: metric_end + 1 + newline + 1,
    })
}

/// 1 to 19 digits from `buf[from..]` followed by a comma: the number and the comma's index.
fn quick_u64(buf: &[u8], from: usize) -> Option<(u64, usize)> {
    let field = buf.get(from..)?;
    let (mut v, mut i) = (0u64, 0usize);
    // Eight digits at a time while there are (16 at most, so 19 cannot overflow).
    while i < 16 {
        let Some(eight) = field.get(i..i + 8).and_then(eight_digits) else {
            break;
        };
        v = v * 100_000_000 + eight;
        i += 8;
    }
    while let Some(&b) = field.get(i) {
        match b {
            b'0'..=b'9' if i < 19 => v = v * 10 + u64::from(b - b'0'),
            b',' if i > 0 => return Some((v, from + i)),
            _ => return None,
        }
        i += 1;
    }
    None
}

/// Eight ASCII digits as their number (first digit most significant), in a
/// few word operations; `None` unless all eight are digits.
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    let digits = word.wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' sets its top bit in `digits` (or borrows, setting its
    // own); a byte above '9' sets it in `word + 0x46` (or in `digits`, past 0xB0).
    if (word.wrapping_add(0x4646_4646_4646_4646) | digits) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let pairs = (digits * 10 + (digits >> 8)) & 0x00FF_00FF_00FF_00FF;
    let quads = (pairs * 100 + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((quads * 10_000 + (quads >> 32)) & 0xFFFF_FFFF)
}

fn malformed(path: &Path, line: u64, column: usize, message: String) -> TraceError {
    TraceError::Malformed {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// A row's fields as parsed from its line.
struct Fields<'a> {
    block: u64,
    time_ms: u64,
    /// 1-based column of `time_ms` (for the time-order error).
    time_column: usize,
    /// The metric, `None` when it is the previous row's (not validated again).
    metric: Option<&'a str>,
    value: f64,
}

/// Splits and parses one row's line; an error is its 1-based column and message.
fn fields<'a>(line: &'a [u8], last_metric: &[u8]) -> Result<Fields<'a>, (usize, String)> {
    if line.is_empty() {
        return Err((1, "empty line: expected block,time_ms,metric,value".into()));
    }
    let mut commas = [0usize; 3];
    let mut found = 0;
    for (i, pos) in memchr::memchr_iter(b',', line).enumerate() {
        if i >= 3 {
            let message = "too many fields: expected block,time_ms,metric,value";
            return Err((pos + 1, message.into()));
        }
        commas[i] = pos;
        found += 1;
    }
    if found < 3 {
        let message = format!(
            "expected 4 fields (block,time_ms,metric,value), found {}",
            found + 1
        );
        return Err((line.len() + 1, message));
    }
    let lossy = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    let block_f = &line[..commas[0]];
    let time_f = &line[commas[0] + 1..commas[1]];
    let metric_f = &line[commas[1] + 1..commas[2]];
    let value_f = &line[commas[2] + 1..];
    let Some(block) = parse_u64(block_f) else {
        let message = format!(
            "block `{}` is not an unsigned 64-bit integer",
            lossy(block_f)
        );
        return Err((1, message));
    };
    let Some(time_ms) = parse_u64(time_f) else {
        let message = format!(
            "time_ms `{}` is not an unsigned integer of milliseconds",
            lossy(time_f)
        );
        return Err((commas[0] + 2, message));
    };
    let metric = if !metric_f.is_empty() && metric_f == last_metric {
        None
    } else {
        match std::str::from_utf8(metric_f) {
            Ok(m) if is_valid_metric_name(m) => Some(m),
            _ => {
                let message = format!(
                    "metric `{}` is not a valid name ([A-Za-z0-9_.:-]+)",
                    lossy(metric_f)
                );
                return Err((commas[1] + 2, message));
            }
        }
    };
    let parsed = parse_plain_decimal(value_f)
        .or_else(|| std::str::from_utf8(value_f).ok()?.parse::<f64>().ok());
    let Some(value) = parsed.filter(|v| v.is_finite()) else {
        let message = format!("value `{}` is not a finite decimal number", lossy(value_f));
        return Err((commas[2] + 2, message));
    };
    Ok(Fields {
        block,
        time_ms,
        time_column: commas[0] + 2,
        metric,
        value,
    })
}

/// Powers of ten an `f64` holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `[-]digits[.digits]` whose digits, as an integer, are at most 2^53 with at
/// most 22 after the point: that integer and the power of ten are exact, so
/// one division rounds once, to the nearest `f64` of the decimal, which is
/// what `str::parse::<f64>` returns (Clinger's fast path). Values traces carry
/// are mostly of this form; for anything else (exponents, `+`, more digits),
/// `None`, and the caller parses the text.
fn parse_plain_decimal(field: &[u8]) -> Option<f64> {
    let (negative, text) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    let (mut mantissa, mut digits, mut decimals, mut point) = (0u64, 0u32, 0usize, false);
    for &b in text {
        match b {
            b'0'..=b'9' if digits < 19 => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
                decimals += usize::from(point);
            }
            b'.' if !point => point = true,
            _ => return None,
        }
    }
    if digits == 0 || mantissa > 1 << 53 || decimals >= EXACT_POWERS_OF_TEN.len() {
        return None;
    }
    let v = mantissa as f64 / EXACT_POWERS_OF_TEN[decimals];
    Some(if negative { -v } else { v })
}

/// Checks `block` against the highest block read in `group` (`high`), then raises it.
fn check_block(
    high: &mut Vec<Option<u64>>,
    max_jump: u64,
    block: u64,
    group: usize,
) -> Result<(), String> {
    if high.len() <= group {
        high.resize(group + 1, None);
    }
    let Some(highest) = high[group] else {
        high[group] = Some(block);
        return Ok(());
    };
    if block.saturating_add(1) < highest {
        return Err(format!(
            "block {block} goes back from block {highest} read before (a row may be at most one block below the highest, for pending-transaction samples; a reorg needs the recorder's `# {REORG_COMMENT}N replaced` comment first)"
        ));
    }
    if block > highest.saturating_add(max_jump) {
        return Err(format!(
            "block {block} jumps {} blocks past block {highest} read before (the most allowed is {max_jump}; raise it with --max-block-jump if the trace really skips blocks)",
            block - highest
        ));
    }
    high[group] = Some(highest.max(block));
    Ok(())
}

/// Writes samples as a trace, refusing anything a reader would reject.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    last_time: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Starts a trace: each line of `comment` becomes a `#` comment, then the header.
    pub fn new(mut out: W, comment: &str) -> io::Result<Self> {
        for line in comment.lines() {
            writeln!(out, "# {line}")?;
        }
        writeln!(out, "{HEADER}")?;
        Ok(Self { out, last_time: 0 })
    }

    /// Appends one sample. Values are written in Rust's shortest round-trip form,
    /// so replaying the file reproduces every value bit for bit.
    pub fn write(&mut self, block: u64, time_ms: u64, metric: &str, value: f64) -> io::Result<()> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if !is_valid_metric_name(metric) {
            return Err(invalid(format!(
                "metric `{metric}` is not a valid trace metric name"
            )));
        }
        if !value.is_finite() {
            return Err(invalid(format!(
                "metric `{metric}`: value {value} is not finite"
            )));
        }
        if time_ms < self.last_time {
            return Err(invalid(format!(
                "metric `{metric}`: time_ms {time_ms} is earlier than the previous sample's {}",
                self.last_time
            )));
        }
        self.last_time = time_ms;
        writeln!(self.out, "{block},{time_ms},{metric},{value:?}")
    }

    /// Writes `text` as `#` comment lines (readers ignore them).
    pub fn comment(&mut self, text: &str) -> io::Result<()> {
        for line in text.lines() {
            writeln!(self.out, "# {line}")?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Vec<(u64, u64, String, f64)>, TraceError> {
        let mut r = TraceReader::new(text.as_bytes(), "t.csv");
        let mut out = Vec::new();
        while let Some(row) = r.next_row()? {
            out.push((row.block, row.time_ms, row.metric.to_string(), row.value));
        }
        Ok(out)
    }

    #[test]
    fn reads_the_spec_example() {
        let rows = read_all(
            "# comment\nblock,time_ms,metric,value\n17000000,1690200000000,vault.tvl,1250000.5\n17000000,1690200000000,oracle.eth_usd,1835.2\r\n17000001,1690200012000,vault.tvl,1e21\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].2, "oracle.eth_usd");
        assert_eq!(rows[2].3, 1e21);
    }

    fn error_of(text: &str) -> String {
        read_all(text).unwrap_err().to_string()
    }

    #[test]
    fn every_malformation_is_located() {
        let h = "block,time_ms,metric,value\n";
        for (text, want) in [
            (
                "b,t,m,v\n".to_string(),
                "t.csv:1:1: expected the header `block,time_ms,metric,value`, found `b,t,m,v`",
            ),
            (
                "# only\n".to_string(),
                "t.csv:2:1: the trace ended before its header `block,time_ms,metric,value`",
            ),
            (
                format!("{h}1,2,m\n"),
                "t.csv:2:6: expected 4 fields (block,time_ms,metric,value), found 3",
            ),
            (
                format!("{h}1,2,m,3,4\n"),
                "t.csv:2:8: too many fields: expected block,time_ms,metric,value",
            ),
            (
                format!("{h}-1,2,m,3\n"),
                "t.csv:2:1: block `-1` is not an unsigned 64-bit integer",
            ),
            (
                format!("{h}1,x,m,3\n"),
                "t.csv:2:3: time_ms `x` is not an unsigned integer of milliseconds",
            ),
            (
                format!("{h}1,2,m m,3\n"),
                "t.csv:2:5: metric `m m` is not a valid name ([A-Za-z0-9_.:-]+)",
            ),
            (
                format!("{h}1,2,m,NaN\n"),
                "t.csv:2:7: value `NaN` is not a finite decimal number",
            ),
            (
                format!("{h}1,2,m,inf\n"),
                "t.csv:2:7: value `inf` is not a finite decimal number",
            ),
            (
                format!("{h}1,2,m,\n"),
                "t.csv:2:7: value `` is not a finite decimal number",
            ),
            (
                format!("{h}1,5,m,1\n2,4,m,1\n"),
                "t.csv:3:3: rows out of time order: time_ms 4 is earlier than the previous row's 5",
            ),
            (
                format!("{h}1,5,m,1\n\n"),
                "t.csv:3:1: empty line: expected block,time_ms,metric,value",
            ),
        ] {
            assert_eq!(error_of(&text), want);
        }
    }

    #[test]
    fn block_numbers_may_not_go_back_or_jump() {
        let h = "block,time_ms,metric,value\n";
        assert_eq!(
            error_of(&format!("{h}10,1,m,1\n11,2,m,1\n8,3,m,1\n")),
            "t.csv:4:1: block 8 goes back from block 11 read before (a row may be at most one block below the highest, for pending-transaction samples; a reorg needs the recorder's `# reorg: blocks after N replaced` comment first)"
        );
        assert_eq!(
            error_of(&format!("{h}10,1,m,1\n1000000000010,2,m,1\n")),
            "t.csv:3:1: block 1000000000010 jumps 1000000000000 blocks past block 10 read before (the most allowed is 1000; raise it with --max-block-jump if the trace really skips blocks)"
        );
        // A pending sample for the next block, then the last mined block's watchdog row.
        assert!(read_all(&format!("{h}10,1,m,1\n11,2,p,1\n10,3,age,1\n11,4,m,1\n")).is_ok());
        // The recorder's reorg comment lets the re-read blocks follow.
        let reorged = format!(
            "{h}10,1,m,1\n11,2,m,1\n12,3,m,1\n13,4,m,1\n# reorg: blocks after 10 replaced: 13 (0xcc), 12 (0xaa), 11 (0xbb)\n11,5,m,2\n12,6,m,2\n"
        );
        assert_eq!(read_all(&reorged).unwrap().len(), 6);
        assert!(read_all(&reorged.replace("# reorg", "# note")).is_err());
        // Per network: two chains' blocks interleave.
        let two = format!("{h}100,1,a,1\n5000000,2,b,1\n101,3,a,1\n5000001,4,b,1\n");
        assert!(read_all(&two).is_err());
        let rules = BlockRules {
            max_jump: 10,
            groups: [("a".to_string(), 1), ("b".to_string(), 2)].into(),
        };
        let mut r = TraceReader::new(two.as_bytes(), "t.csv").with_block_rules(rules);
        let mut n = 0;
        while r.next_row().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn eight_digits_are_read_as_parse_u64_reads_them() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bytes = *format!("{:08}", x % 100_000_000)
                .as_bytes()
                .first_chunk::<8>()
                .unwrap();
            if x >> 62 == 0 {
                bytes[(x >> 40) as usize % 8] = (x >> 48) as u8;
            }
            assert_eq!(eight_digits(&bytes), parse_u64(&bytes), "{bytes:?}");
        }
        for byte in 0..=255u8 {
            let bytes = [b'1', b'2', b'3', byte, b'5', b'6', b'7', b'8'];
            assert_eq!(eight_digits(&bytes), parse_u64(&bytes), "{byte}");
        }
    }

    #[test]
    fn quick_rows_parse_as_the_general_path_does() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let alphabet = b"0123456789,.-\r\nm.xe+# ";
        let base = b"17000000,1700000000000,m.x,66.5313981\n".to_vec();
        let (mut quick, mut total) = (0, 0);
        for _ in 0..200_000 {
            let mut line = base.clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for k in 0..(x % 4) {
                let at = (x >> (8 + 12 * k)) as usize % line.len();
                let byte = alphabet[(x >> (14 + 12 * k)) as usize % alphabet.len()];
                match (x >> (20 + 12 * k)) % 3 {
                    0 => line[at] = byte,
                    1 => line.insert(at, byte),
                    _ => drop(line.remove(at)),
                }
            }
            if total % 1000 == 0 {
                // Long numbers: 19 digits are read quickly, 20 are left to `fields`.
                let digits = ["1234567890123456789", "12345678901234567890"][total / 1000 % 2];
                line = format!("{digits},{digits},m.x,-0.5\r\n").into_bytes();
            }
            total += 1;
            let Some(row) = quick_row(&line, b"m.x") else {
                continue;
            };
            quick += 1;
            let end = memchr::memchr(b'\n', &line).unwrap();
            assert_eq!(row.len, end + 1);
            let text = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
            let general = fields(text, b"m.x").unwrap_or_else(|e| panic!("{e:?}"));
            assert!(general.metric.is_none());
            assert_eq!(
                (row.block, row.time_ms, row.time_column, row.value.to_bits()),
                (
                    general.block,
                    general.time_ms,
                    general.time_column,
                    general.value.to_bits()
                ),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
        // Both kinds of line were tried.
        assert!(quick > total / 10 && quick < total, "{quick} of {total}");
    }

    #[test]
    fn plain_decimals_parse_as_std_parses_them() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1.",
            ".5",
            "-.5",
            ".",
            "-",
            "",
            "007",
            "1.2.3",
            "1e5",
            "+1",
            "9007199254740992",
            "9007199254740993",
            "0.1",
            "66.5313981",
            "1234567890123456789",
            "12345678901234567890",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 10_u64.pow((x >> 60) as u32 % 19 + 1)).to_string();
            let point = (x >> 40) as usize % (digits.len() + 1);
            let sign = if x & 1 == 1 { "-" } else { "" };
            texts.push(format!("{sign}{}.{}", &digits[..point], &digits[point..]));
        }
        // The form traces carry takes the fast path.
        assert_eq!(parse_plain_decimal(b"66.5313981"), Some(66.531_398_1));
        for t in texts {
            let std = t.parse::<f64>().ok();
            if let Some(v) = parse_plain_decimal(t.as_bytes()) {
                assert_eq!(Some(v.to_bits()), std.map(f64::to_bits), "{t}");
            }
        }
    }

    #[test]
    fn written_traces_read_back_bit_for_bit() {
        let values = [
            0.1,
            1e21,
            -12.5,
            1.0 / 3.0,
            f64::MIN_POSITIVE,
            1e300,
            123_456_789.123_456_79,
        ];
        let mut w = TraceWriter::new(Vec::new(), "recorded by a test").unwrap();
        for (i, v) in values.iter().enumerate() {
            w.write(i as u64, 1000 + i as u64, "m.x", *v).unwrap();
        }
        assert!(w.write(9, 0, "m.x", 1.0).is_err());
        assert!(w.write(9, 2000, "m x", 1.0).is_err());
        assert!(w.write(9, 2000, "m.x", f64::NAN).is_err());
        let text = String::from_utf8(w.into_inner()).unwrap();
        let rows = read_all(&text).unwrap();
        let back: Vec<f64> = rows.iter().map(|r| r.3).collect();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
