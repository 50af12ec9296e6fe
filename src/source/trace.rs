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
    last_metric: (Vec<u8>, usize),
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
            last_metric: (Vec::new(), 0),
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
        TraceError::Malformed {
            path: self.path.clone(),
            line: self.line,
            column,
            message: message.into(),
        }
    }

    /// The next row, `None` at the end of the trace.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, TraceError> {
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
            return self.parse_row(end).map(Some);
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

    /// Checks `block` against the highest block of its metric's group, then raises it.
    fn check_block(&mut self, block: u64, group: usize) -> Result<(), TraceError> {
        if self.high.len() <= group {
            self.high.resize(group + 1, None);
        }
        let Some(high) = self.high[group] else {
            self.high[group] = Some(block);
            return Ok(());
        };
        if block.saturating_add(1) < high {
            return Err(self.malformed(
                1,
                format!(
                    "block {block} goes back from block {high} read before (a row may be at most one block below the highest, for pending-transaction samples; a reorg needs the recorder's `# {REORG_COMMENT}N replaced` comment first)"
                ),
            ));
        }
        if block > high.saturating_add(self.rules.max_jump) {
            return Err(self.malformed(
                1,
                format!(
                    "block {block} jumps {} blocks past block {high} read before (the most allowed is {}; raise it with --max-block-jump if the trace really skips blocks)",
                    block - high,
                    self.rules.max_jump
                ),
            ));
        }
        self.high[group] = Some(high.max(block));
        Ok(())
    }

    fn parse_row(&mut self, end: usize) -> Result<Row<'_>, TraceError> {
        let line = &self.buf[..end];
        if line.is_empty() {
            return Err(self.malformed(1, "empty line: expected block,time_ms,metric,value"));
        }
        let mut commas = [0usize; 3];
        let mut found = 0;
        for (i, pos) in memchr::memchr_iter(b',', line).enumerate() {
            if i >= 3 {
                return Err(self.malformed(
                    pos + 1,
                    "too many fields: expected block,time_ms,metric,value",
                ));
            }
            commas[i] = pos;
            found += 1;
        }
        if found < 3 {
            return Err(self.malformed(
                end + 1,
                format!(
                    "expected 4 fields (block,time_ms,metric,value), found {}",
                    found + 1
                ),
            ));
        }
        let block_f = &line[..commas[0]];
        let time_f = &line[commas[0] + 1..commas[1]];
        let metric_f = &line[commas[1] + 1..commas[2]];
        let value_f = &line[commas[2] + 1..];
        let Some(block) = parse_u64(block_f) else {
            return Err(self.malformed(
                1,
                format!(
                    "block `{}` is not an unsigned 64-bit integer",
                    String::from_utf8_lossy(block_f)
                ),
            ));
        };
        let Some(time_ms) = parse_u64(time_f) else {
            return Err(self.malformed(
                commas[0] + 2,
                format!(
                    "time_ms `{}` is not an unsigned integer of milliseconds",
                    String::from_utf8_lossy(time_f)
                ),
            ));
        };
        let known = !metric_f.is_empty() && metric_f == self.last_metric.0.as_slice();
        let metric = match std::str::from_utf8(metric_f) {
            Ok(m) if known || is_valid_metric_name(m) => m,
            _ => {
                return Err(self.malformed(
                    commas[1] + 2,
                    format!(
                        "metric `{}` is not a valid name ([A-Za-z0-9_.:-]+)",
                        String::from_utf8_lossy(metric_f)
                    ),
                ));
            }
        };
        let value = match std::str::from_utf8(value_f)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
        {
            Some(v) if v.is_finite() => v,
            _ => {
                return Err(TraceError::Malformed {
                    path: self.path.clone(),
                    line: self.line,
                    column: commas[2] + 2,
                    message: format!(
                        "value `{}` is not a finite decimal number",
                        String::from_utf8_lossy(value_f)
                    ),
                });
            }
        };
        if time_ms < self.last_time {
            return Err(TraceError::Malformed {
                path: self.path.clone(),
                line: self.line,
                column: commas[0] + 2,
                message: format!(
                    "rows out of time order: time_ms {time_ms} is earlier than the previous row's {}",
                    self.last_time
                ),
            });
        }
        self.last_time = time_ms;
        let group = if known {
            self.last_metric.1
        } else {
            let group = self.rules.group(metric);
            self.last_metric = (metric_f.to_vec(), group);
            group
        };
        self.check_block(block, group)?;
        let line = &self.buf[..end];
        let metric = std::str::from_utf8(&line[commas[1] + 1..commas[2]]).unwrap_or_default();
        Ok(Row {
            block,
            time_ms,
            metric,
            value,
            line: self.line,
        })
    }
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
        assert_eq!(
            error_of("b,t,m,v\n"),
            "t.csv:1:1: expected the header `block,time_ms,metric,value`, found `b,t,m,v`"
        );
        assert_eq!(
            error_of("# only\n"),
            "t.csv:2:1: the trace ended before its header `block,time_ms,metric,value`"
        );
        assert_eq!(
            error_of(&format!("{h}1,2,m\n")),
            "t.csv:2:6: expected 4 fields (block,time_ms,metric,value), found 3"
        );
        assert_eq!(
            error_of(&format!("{h}1,2,m,3,4\n")),
            "t.csv:2:8: too many fields: expected block,time_ms,metric,value"
        );
        assert_eq!(
            error_of(&format!("{h}-1,2,m,3\n")),
            "t.csv:2:1: block `-1` is not an unsigned 64-bit integer"
        );
        assert_eq!(
            error_of(&format!("{h}1,x,m,3\n")),
            "t.csv:2:3: time_ms `x` is not an unsigned integer of milliseconds"
        );
        assert_eq!(
            error_of(&format!("{h}1,2,m m,3\n")),
            "t.csv:2:5: metric `m m` is not a valid name ([A-Za-z0-9_.:-]+)"
        );
        assert_eq!(
            error_of(&format!("{h}1,2,m,NaN\n")),
            "t.csv:2:7: value `NaN` is not a finite decimal number"
        );
        assert_eq!(
            error_of(&format!("{h}1,2,m,inf\n")),
            "t.csv:2:7: value `inf` is not a finite decimal number"
        );
        assert_eq!(
            error_of(&format!("{h}1,2,m,\n")),
            "t.csv:2:7: value `` is not a finite decimal number"
        );
        assert_eq!(
            error_of(&format!("{h}1,5,m,1\n2,4,m,1\n")),
            "t.csv:3:3: rows out of time order: time_ms 4 is earlier than the previous row's 5"
        );
        assert_eq!(
            error_of(&format!("{h}1,5,m,1\n\n")),
            "t.csv:3:1: empty line: expected block,time_ms,metric,value"
        );
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
