//! Typed units used by configuration and policies.
//!
//! Every quantity a policy author writes carries its unit in the text:
//! `"5 blocks"`, `"90s"`, `"15%"`, `"150bps"`. A bare number is only ever an
//! amount in the metric's own units. A percent is never confused with a
//! fraction: `"15%"` is fifteen percent, and `0.15` where a percent is
//! expected is an error, not fifteen percent.

use std::fmt;

/// How far back a window reaches: a number of blocks or a span of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last `n` blocks (the window of `"5 blocks"` at block 100 starts at block 95).
    Blocks(u64),
    /// A span of wall-clock time, in milliseconds.
    Millis(u64),
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Window::Blocks(1) => write!(f, "1 block"),
            Window::Blocks(n) => write!(f, "{n} blocks"),
            Window::Millis(ms) => write!(f, "{}", DisplayMillis(ms)),
        }
    }
}

/// Formats a duration in the largest unit that divides it exactly (`"90s"`, `"2h"`, `"1500ms"`).
#[derive(Debug, Clone, Copy)]
pub struct DisplayMillis(pub u64);

impl fmt::Display for DisplayMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        const UNITS: [(u64, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, suffix) in UNITS {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{suffix}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// A percentage, stored as percent (15% is `Percent(15.0)`), never as a fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A unit error, phrased for the person who wrote the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    pub message: String,
    pub hint: String,
}

fn unit_error(message: impl Into<String>, hint: impl Into<String>) -> UnitError {
    UnitError {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Splits `"5 blocks"` / `"90s"` into its number and unit word.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    Some((&text[..end], text[end..].trim()))
}

fn parse_decimal(number: &str) -> Option<f64> {
    let cleaned: String = number.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn duration_unit_millis(unit: &str) -> Option<u64> {
    Some(match unit {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    })
}

/// Parses a duration such as `"90s"`, `"10 minutes"`, `"1.5h"`, `"500ms"` into milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, UnitError> {
    let hint = "write a number and a unit: \"500ms\", \"90s\", \"10m\", \"2h\", \"1d\"";
    let (number, unit) = split_number(text)
        .ok_or_else(|| unit_error(format!("`{text}` is not a duration"), hint))?;
    let scale = duration_unit_millis(unit).ok_or_else(|| {
        if unit.is_empty() {
            unit_error(format!("`{text}` has no unit"), hint)
        } else {
            unit_error(format!("`{unit}` is not a unit of time"), hint)
        }
    })?;
    let value = parse_decimal(number)
        .ok_or_else(|| unit_error(format!("`{text}` is not a duration"), hint))?;
    let millis = value * scale as f64;
    if millis.fract() != 0.0 || millis > u64::MAX as f64 {
        return Err(unit_error(
            format!("`{text}` is not a whole number of milliseconds"),
            hint,
        ));
    }
    Ok(millis as u64)
}

/// Parses a window: `"5 blocks"`, `"1 block"` or a duration (`"90s"`, `"1h"`).
pub fn parse_window(text: &str) -> Result<Window, UnitError> {
    let hint = "write a block count (\"5 blocks\") or a duration (\"90s\", \"10m\", \"1h\")";
    let (number, unit) =
        split_number(text).ok_or_else(|| unit_error(format!("`{text}` is not a window"), hint))?;
    if unit == "block" || unit == "blocks" {
        let cleaned: String = number.chars().filter(|c| *c != '_').collect();
        let blocks = cleaned
            .parse::<u64>()
            .map_err(|_| unit_error(format!("`{text}` is not a whole number of blocks"), hint))?;
        return Ok(Window::Blocks(blocks));
    }
    if unit.is_empty() {
        return Err(unit_error(format!("`{text}` has no unit"), hint));
    }
    parse_duration(text)
        .map(Window::Millis)
        .map_err(|e| unit_error(e.message, hint))
}

/// How long a condition must hold before it counts (`for = "3 blocks"` or `"3 samples"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The condition must be true in `n` consecutive blocks in which it was evaluated.
    Blocks(u32),
    /// The condition must be true in `n` consecutive evaluations (samples).
    Samples(u32),
}

impl Hold {
    pub fn count(self) -> u32 {
        match self {
            Hold::Blocks(n) | Hold::Samples(n) => n,
        }
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Hold::Blocks(1) => write!(f, "1 block"),
            Hold::Blocks(n) => write!(f, "{n} consecutive blocks"),
            Hold::Samples(1) => write!(f, "1 sample"),
            Hold::Samples(n) => write!(f, "{n} consecutive samples"),
        }
    }
}

/// Parses `"3 blocks"` or `"3 samples"`.
pub fn parse_hold(text: &str) -> Result<Hold, UnitError> {
    let hint = "write \"3 blocks\" (consecutive blocks) or \"3 samples\" (consecutive samples)";
    let (number, unit) =
        split_number(text).ok_or_else(|| unit_error(format!("`{text}` is not a count"), hint))?;
    let n = number
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| unit_error(format!("`{number}` is not a count of at least 1"), hint))?;
    match unit {
        "block" | "blocks" => Ok(Hold::Blocks(n)),
        "sample" | "samples" => Ok(Hold::Samples(n)),
        _ => Err(unit_error(
            format!("`{text}` must count blocks or samples"),
            hint,
        )),
    }
}

/// Parses a percent written as `"15%"`, `"0.5 %"` or in basis points `"150bps"` (= 1.5%).
pub fn parse_percent(text: &str) -> Result<Percent, UnitError> {
    let hint = "write a percent as \"15%\" or basis points as \"150bps\"";
    let trimmed = text.trim();
    let (number, unit) = split_number(trimmed.trim_start_matches('-'))
        .ok_or_else(|| unit_error(format!("`{text}` is not a percent"), hint))?;
    let negative = trimmed.starts_with('-');
    let value = parse_decimal(number)
        .ok_or_else(|| unit_error(format!("`{text}` is not a percent"), hint))?;
    let value = if negative { -value } else { value };
    match unit {
        "%" => Ok(Percent(value)),
        "bps" | "bp" => Ok(Percent(value / 100.0)),
        "" => Err(unit_error(format!("`{text}` has no % or bps"), hint)),
        other => Err(unit_error(format!("`{other}` is not % or bps"), hint)),
    }
}

/// A target false-alarm rate: at most `count` alarms per `per_ms` milliseconds (`"1/30d"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmRate {
    pub count: f64,
    pub per_ms: u64,
}

impl AlarmRate {
    /// How many alarms the rate allows over `span_ms` of data (fractional).
    pub fn allowed_over(&self, span_ms: u64) -> f64 {
        self.count * span_ms as f64 / self.per_ms as f64
    }
}

impl fmt::Display for AlarmRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, DisplayMillis(self.per_ms))
    }
}

/// Parses `"1/30d"` (one alarm per thirty days) or `"2/1h"`.
pub fn parse_alarm_rate(text: &str) -> Result<AlarmRate, UnitError> {
    let hint = "write alarms per duration, for example \"1/30d\" or \"1/7d\"";
    let (count, per) = text
        .split_once('/')
        .ok_or_else(|| unit_error(format!("`{text}` is not a rate"), hint))?;
    let count = parse_decimal(count.trim())
        .filter(|c| *c >= 0.0)
        .ok_or_else(|| unit_error(format!("`{count}` is not a count of alarms"), hint))?;
    let per = per.trim();
    // "1/d" means one per day.
    let per_text = if per.starts_with(|c: char| c.is_ascii_digit()) {
        per.to_string()
    } else {
        format!("1{per}")
    };
    let per_ms = parse_duration(&per_text).map_err(|e| unit_error(e.message, hint))?;
    if per_ms == 0 {
        return Err(unit_error("the rate's period is zero", hint));
    }
    Ok(AlarmRate { count, per_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_blocks_and_durations() {
        assert_eq!(parse_window("5 blocks"), Ok(Window::Blocks(5)));
        assert_eq!(parse_window("1 block"), Ok(Window::Blocks(1)));
        assert_eq!(parse_window("90s"), Ok(Window::Millis(90_000)));
        assert_eq!(parse_window("10 minutes"), Ok(Window::Millis(600_000)));
        assert_eq!(parse_window("1.5h"), Ok(Window::Millis(5_400_000)));
        assert_eq!(parse_window("500ms"), Ok(Window::Millis(500)));
        assert!(parse_window("5").is_err());
        assert!(parse_window("5 parsecs").is_err());
        assert!(parse_window("2.5 blocks").is_err());
        assert!(parse_window("blocks").is_err());
    }

    #[test]
    fn windows_display_round_trip() {
        for text in ["5 blocks", "1 block", "90s", "10m", "2h", "1d", "1500ms"] {
            let w = parse_window(text).unwrap();
            assert_eq!(parse_window(&w.to_string()).unwrap(), w, "{text}");
        }
    }

    #[test]
    fn percents_need_a_unit_and_never_mean_fractions() {
        assert_eq!(parse_percent("15%"), Ok(Percent(15.0)));
        assert_eq!(parse_percent("150bps"), Ok(Percent(1.5)));
        assert_eq!(parse_percent("0.5 %"), Ok(Percent(0.5)));
        assert_eq!(parse_percent("-5%"), Ok(Percent(-5.0)));
        assert!(parse_percent("0.15").is_err());
        assert!(parse_percent("15 percent").is_err());
    }

    #[test]
    fn holds_count_blocks_or_samples() {
        assert_eq!(parse_hold("3 blocks"), Ok(Hold::Blocks(3)));
        assert_eq!(parse_hold("1 sample"), Ok(Hold::Samples(1)));
        assert!(parse_hold("0 blocks").is_err());
        assert!(parse_hold("3").is_err());
        assert!(parse_hold("3s").is_err());
    }

    #[test]
    fn alarm_rates() {
        let r = parse_alarm_rate("1/30d").unwrap();
        assert_eq!(r.count, 1.0);
        assert_eq!(r.per_ms, 30 * 86_400_000);
        assert!((r.allowed_over(60 * 86_400_000) - 2.0).abs() < 1e-12);
        assert_eq!(parse_alarm_rate("2/h").unwrap().per_ms, 3_600_000);
        assert!(parse_alarm_rate("1 per day").is_err());
        assert!(parse_alarm_rate("1/0s").is_err());
    }
}

/// A wei amount in gwei as people read it: `"3.375 gwei"`, `"50 gwei"`,
/// `"0.000000001 gwei"` (exact to the wei, trailing zeros dropped).
#[derive(Debug, Clone, Copy)]
pub struct DisplayGwei(pub u128);

impl fmt::Display for DisplayGwei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        if frac == 0 {
            return write!(f, "{whole} gwei");
        }
        let digits = format!("{frac:09}");
        write!(f, "{whole}.{} gwei", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod gwei_tests {
    use super::DisplayGwei;

    #[test]
    fn gwei_print_exactly() {
        assert_eq!(DisplayGwei(3_375_000_000).to_string(), "3.375 gwei");
        assert_eq!(DisplayGwei(50_000_000_000).to_string(), "50 gwei");
        assert_eq!(DisplayGwei(1).to_string(), "0.000000001 gwei");
    }
}

/// Unix milliseconds as a UTC time people read: `2026-12-01 01:52:35Z`.
#[derive(Debug, Clone, Copy)]
pub struct DisplayUnixMs(pub u64);

impl fmt::Display for DisplayUnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp_millis(i64::try_from(self.0).unwrap_or(i64::MAX)) {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M:%SZ")),
            None => write!(f, "{} ms", self.0),
        }
    }
}
