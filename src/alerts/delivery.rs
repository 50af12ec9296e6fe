//! Getting an alert to a channel: dedupe with a cooldown, retries with
//! exponential backoff, and the HTTP POST itself (reqwest, rustls).
//!
//! [`Dedupe`] and [`backoff`] are pure, so their rules are unit-tested; the
//! POST is tested against a real local HTTP server (tests/ops.rs).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Alert;
use super::payload;
use crate::config::NotifyKind;

/// First wait before a retry; each later wait doubles, up to [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The wait before retry number `retry` (0 for the first retry): `base * 2^retry`, at most `max`.
pub fn backoff(retry: u32, base: Duration, max: Duration) -> Duration {
    base.checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// Per channel: an alert whose dedupe key was sent less than `cooldown` ago is
/// suppressed, so a condition that stays true does not page every block.
#[derive(Debug)]
pub struct Dedupe {
    cooldown: Duration,
    last_sent: HashMap<String, Instant>,
}

impl Dedupe {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            last_sent: HashMap::new(),
        }
    }

    /// Whether an alert with `key` goes out at `now`; if it does, the cooldown restarts.
    pub fn admit(&mut self, key: &str, now: Instant) -> bool {
        if let Some(last) = self.last_sent.get(key)
            && now.saturating_duration_since(*last) < self.cooldown
        {
            return false;
        }
        // Bounded memory: forget keys whose cooldown is over.
        if self.last_sent.len() >= 4096 {
            let cooldown = self.cooldown;
            self.last_sent
                .retain(|_, t| now.saturating_duration_since(*t) < cooldown);
        }
        self.last_sent.insert(key.to_string(), now);
        true
    }
}

/// A channel ready to send: its kind, URL and secrets, resolved from the environment.
/// `Debug` never shows the URL or the secrets.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub kind: NotifyKind,
    pub url: String,
    pub secret: Option<Vec<u8>>,
    pub routing_key: Option<String>,
    pub retries: u32,
    pub timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

/// Why a delivery gave up.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the channel refused the alert with http status {0} (not retried)")]
    Refused(u16),
    #[error("gave up after {attempts} attempts; last: {last}")]
    Exhausted { attempts: u32, last: String },
}

impl Endpoint {
    /// The request body and headers for `alert`.
    pub fn body(&self, alert: &Alert) -> (Vec<u8>, Vec<(&'static str, String)>) {
        let value = match self.kind {
            NotifyKind::Webhook => payload::webhook(alert),
            NotifyKind::Slack => payload::slack(alert),
            NotifyKind::Discord => payload::discord(alert),
            NotifyKind::PagerDuty => {
                payload::pagerduty(alert, self.routing_key.as_deref().unwrap_or_default())
            }
        };
        let body = serde_json::to_vec(&value).unwrap_or_default();
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(secret) = &self.secret {
            headers.push((payload::SIGNATURE_HEADER, payload::sign(secret, &body)));
        }
        (body, headers)
    }

    /// POSTs `alert`, retrying transport errors, timeouts, 408, 429 and 5xx with backoff.
    /// Returns the number of attempts made.
    pub async fn deliver(
        &self,
        client: &reqwest::Client,
        alert: &Alert,
        base: Duration,
    ) -> Result<u32, DeliveryError> {
        let (body, headers) = self.body(alert);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1, base, BACKOFF_MAX)).await;
            }
            let mut request = client
                .post(&self.url)
                .timeout(self.timeout)
                .body(body.clone());
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(attempt + 1),
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status != 408 && status != 429 && status < 500 {
                        return Err(DeliveryError::Refused(status));
                    }
                    last = format!("http status {status}");
                }
                Err(e) => last = describe(e),
            }
            tracing::debug!(target: "guardian::alerts", channel = %self.name, attempt = attempt + 1, error = %last, "alert delivery failed; retrying");
        }
        Err(DeliveryError::Exhausted {
            attempts: self.retries + 1,
            last,
        })
    }
}

/// A request error with its causes, without the URL (it may carry a token).
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timeout {
        text.push_str(" (timed out)");
    }
    crate::redact::redact(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        let waits: Vec<u64> = (0..9)
            .map(|n| backoff(n, base, max).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // No overflow however many retries.
        assert_eq!(backoff(40, base, max), max);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }

    #[test]
    fn dedupe_suppresses_within_the_cooldown_per_key() {
        let mut d = Dedupe::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(d.admit("trip:a", t0));
        // The same condition, every block for a minute: one alert.
        for s in 1..60 {
            assert!(
                !d.admit("trip:a", t0 + Duration::from_secs(s)),
                "second {s}"
            );
        }
        // Another key is independent.
        assert!(d.admit("trip:b", t0 + Duration::from_secs(1)));
        // After the cooldown it goes out again, and the cooldown restarts.
        assert!(d.admit("trip:a", t0 + Duration::from_secs(60)));
        assert!(!d.admit("trip:a", t0 + Duration::from_secs(119)));
        assert!(d.admit("trip:a", t0 + Duration::from_secs(120)));
    }

    #[test]
    fn dedupe_memory_stays_bounded() {
        let mut d = Dedupe::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            assert!(d.admit(&format!("k{i}"), t0 + Duration::from_millis(i * 10)));
        }
        assert!(d.last_sent.len() <= 4096);
    }

    #[test]
    fn a_zero_cooldown_sends_everything() {
        let mut d = Dedupe::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!(d.admit("k", t0));
        assert!(d.admit("k", t0));
    }

    #[test]
    fn debug_never_shows_the_url_or_secret() {
        let e = Endpoint {
            name: "slack".into(),
            kind: NotifyKind::Slack,
            url: "https://hooks.slack.com/services/T000/B000/SECRET".into(),
            secret: Some(b"hunter2".to_vec()),
            routing_key: None,
            retries: 1,
            timeout: Duration::from_secs(1),
        };
        let text = format!("{e:?}");
        assert!(
            !text.contains("SECRET") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
