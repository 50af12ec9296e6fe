//! Operations sections of the configuration: `[observe]` (metrics and health
//! endpoint) and `[notify.<name>]` (alert channels).
//!
//! Secrets are never written here. A channel names the environment variables
//! that hold its URL (Slack and Discord webhook URLs are credentials), its HMAC
//! secret or its PagerDuty routing key; they are read when `guardian run` starts.

use std::net::SocketAddr;

use super::exec::duration;
use super::reader::{Reporter, TableReader, Value, as_bool, as_choice, as_u64};

/// Default for `[observe] stale_after`: a network whose last head is older is not ready.
pub const DEFAULT_STALE_AFTER_MS: u64 = 60_000;
/// Default for `[notify.<name>] cooldown`: the same alert is not re-sent to a channel within it.
pub const DEFAULT_NOTIFY_COOLDOWN_MS: u64 = 300_000;
/// Default for `[notify.<name>] retries`: delivery attempts after the first.
pub const DEFAULT_NOTIFY_RETRIES: u32 = 4;
/// Default for `[notify.<name>] timeout`: one delivery attempt.
pub const DEFAULT_NOTIFY_TIMEOUT_MS: u64 = 5_000;
/// The PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[observe]`: where `/metrics`, `/healthz` and `/readyz` are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveDef {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// `/readyz` fails when a watched network's last new head arrived longer ago than this,
    /// and a "data stale" alert is raised.
    pub stale_after_ms: u64,
}

crate::levels::named_enum! {
    /// The payload shape a channel takes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum NotifyKind {
        /// Generic JSON webhook, optionally signed (HMAC-SHA256 of the body).
        Webhook = "webhook",
        /// Slack incoming webhook (`text` + `blocks`).
        Slack = "slack",
        /// Discord webhook (`content` + `embeds`).
        Discord = "discord",
        /// PagerDuty Events API v2 (`trigger` events with a `dedup_key`).
        PagerDuty = "pagerduty",
    }
}

/// Where a channel's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the configuration (only for URLs that carry no credential).
    Inline(String),
    /// Read from this environment variable at start.
    Env(String),
}

/// `[notify.<name>]`: one alert channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyDef {
    pub name: String,
    pub kind: NotifyKind,
    pub url: UrlSource,
    /// Webhook: environment variable holding the HMAC-SHA256 secret.
    pub secret_env: Option<String>,
    /// PagerDuty: environment variable holding the integration's routing key.
    pub routing_key_env: Option<String>,
    /// The same alert (same dedupe key) is not sent again to this channel within this time.
    pub cooldown_ms: u64,
    /// Delivery attempts after the first, with exponential backoff.
    pub retries: u32,
    /// Time limit of one attempt.
    pub timeout_ms: u64,
    /// Whether operational alerts (stale data, failing reads, executor trouble, reloads) go here.
    pub operational: bool,
}

pub(super) fn parse_observe(value: &Value<'_>, r: &mut Reporter<'_>) -> Option<ObserveDef> {
    let mut t = TableReader::from_value(value, "[observe]", r)?;
    let listen =
        t.required_string("listen", r)
            .and_then(|(text, span)| match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.error(
                        &span,
                        format!("[observe] listen: `{text}` is not an address with a port"),
                        Some("write it as \"127.0.0.1:9464\" (port 0 picks a free port)".into()),
                    );
                    None
                }
            });
    let stale_after_ms = duration(&mut t, "stale_after", r).unwrap_or(DEFAULT_STALE_AFTER_MS);
    t.finish(r);
    Some(ObserveDef {
        listen: listen?,
        stale_after_ms,
    })
}

fn env_name(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    ctx: &str,
    r: &mut Reporter<'_>,
) -> Option<String> {
    let (name, span) = t.string(key, r)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        r.error(
            &span,
            format!("{ctx}: {key} must name an environment variable, not hold a value"),
            Some(
                "write the variable's name, e.g. \"GUARDIAN_SLACK_URL\", and export the value"
                    .into(),
            ),
        );
        return None;
    }
    Some(name.to_string())
}

pub(super) fn parse_notify(
    name: &str,
    value: &Value<'_>,
    r: &mut Reporter<'_>,
) -> Option<NotifyDef> {
    let ctx = format!("notify channel `{name}`");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let kind = t
        .require("kind", r)
        .and_then(|v| as_choice(v, "notify kind", &NotifyKind::CHOICES, r));
    let inline = t.string("url", r);
    let url_env = env_name(&mut t, "url_env", &ctx, r);
    let secret_env = env_name(&mut t, "secret_env", &ctx, r);
    let routing_key_env = env_name(&mut t, "routing_key_env", &ctx, r);
    for key in ["secret", "routing_key", "token"] {
        if let Some(v) = t.get(key) {
            r.error(
                &v.span(),
                format!("{ctx}: secrets are never written in the configuration"),
                Some(format!(
                    "use `{key}_env` with the name of an environment variable"
                )),
            );
        }
    }
    let url = match (kind, inline, url_env) {
        (_, Some(_), Some(_)) => {
            r.error(
                &t.span,
                format!("{ctx}: give either `url` or `url_env`, not both"),
                None,
            );
            None
        }
        (Some(NotifyKind::Slack | NotifyKind::Discord), Some((_, span)), None) => {
            r.error(
                &span,
                format!("{ctx}: a Slack or Discord webhook URL is a credential and is never written in the configuration"),
                Some("use `url_env` with the name of the environment variable that holds it".into()),
            );
            None
        }
        (_, Some((u, span)), None) => {
            if u.starts_with("http://") || u.starts_with("https://") {
                Some(UrlSource::Inline(u.to_string()))
            } else {
                r.error(
                    &span,
                    format!("{ctx}: url must start with http:// or https://"),
                    None,
                );
                None
            }
        }
        (_, None, Some(var)) => Some(UrlSource::Env(var)),
        (Some(NotifyKind::PagerDuty), None, None) => {
            Some(UrlSource::Inline(PAGERDUTY_EVENTS_URL.to_string()))
        }
        (Some(_), None, None) => {
            r.error(
                &t.span,
                format!("{ctx} needs `url_env` (or, for a URL without credentials, `url`)"),
                None,
            );
            None
        }
        (None, None, None) => None,
    };
    if kind == Some(NotifyKind::PagerDuty) && routing_key_env.is_none() {
        r.error(
            &t.span,
            format!("{ctx}: a pagerduty channel needs `routing_key_env`"),
            Some(
                "name the environment variable that holds the Events API v2 integration key".into(),
            ),
        );
    }
    if kind.is_some_and(|k| k != NotifyKind::PagerDuty) && routing_key_env.is_some() {
        r.error(
            &t.span,
            format!("{ctx}: `routing_key_env` is for pagerduty channels"),
            None,
        );
    }
    if kind.is_some_and(|k| k != NotifyKind::Webhook) && secret_env.is_some() {
        r.error(
            &t.span,
            format!("{ctx}: `secret_env` (HMAC signature) is for webhook channels"),
            None,
        );
    }
    let cooldown_ms = duration(&mut t, "cooldown", r).unwrap_or(DEFAULT_NOTIFY_COOLDOWN_MS);
    let timeout_ms = duration(&mut t, "timeout", r).unwrap_or(DEFAULT_NOTIFY_TIMEOUT_MS);
    let retries = match t.get("retries") {
        Some(v) => match as_u64(v, "retries", r) {
            Some(n) if n <= 20 => n as u32,
            Some(_) => {
                r.error(
                    &v.span(),
                    format!("{ctx}: retries must be at most 20"),
                    None,
                );
                DEFAULT_NOTIFY_RETRIES
            }
            None => DEFAULT_NOTIFY_RETRIES,
        },
        None => DEFAULT_NOTIFY_RETRIES,
    };
    let operational = match t.get("operational") {
        Some(v) => as_bool(v, "operational", r).unwrap_or(true),
        None => true,
    };
    t.finish(r);
    Some(NotifyDef {
        name: name.to_string(),
        kind: kind?,
        url: url?,
        secret_env,
        routing_key_env,
        cooldown_ms,
        retries,
        timeout_ms,
        operational,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::reader::Diagnostics;
    use super::*;

    fn load(text: &str) -> Result<Config, Diagnostics> {
        let text = format!("[guardian]\nmode = \"enforce\"\n{text}");
        Config::from_text("guardian.toml", text)
    }

    #[test]
    fn observe_and_notify_sections_load() {
        let c = load(
            r#"
[observe]
listen = "127.0.0.1:9464"
stale_after = "30s"

[notify.ops]
kind = "webhook"
url = "https://alerts.example/hook"
secret_env = "GUARDIAN_HOOK_SECRET"
cooldown = "10m"
retries = 2
timeout = "3s"

[notify.chat]
kind = "slack"
url_env = "GUARDIAN_SLACK_URL"
operational = false

[notify.pager]
kind = "pagerduty"
routing_key_env = "GUARDIAN_PD_KEY"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let o = c.observe.unwrap();
        assert_eq!(o.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(o.stale_after_ms, 30_000);
        let ops = &c.notify["ops"];
        assert_eq!(ops.kind, NotifyKind::Webhook);
        assert_eq!(
            ops.url,
            UrlSource::Inline("https://alerts.example/hook".into())
        );
        assert_eq!(ops.secret_env.as_deref(), Some("GUARDIAN_HOOK_SECRET"));
        assert_eq!(
            (ops.cooldown_ms, ops.retries, ops.timeout_ms),
            (600_000, 2, 3_000)
        );
        assert!(ops.operational);
        let chat = &c.notify["chat"];
        assert_eq!(chat.url, UrlSource::Env("GUARDIAN_SLACK_URL".into()));
        assert!(!chat.operational);
        assert_eq!(chat.cooldown_ms, DEFAULT_NOTIFY_COOLDOWN_MS);
        let pager = &c.notify["pager"];
        assert_eq!(pager.url, UrlSource::Inline(PAGERDUTY_EVENTS_URL.into()));
        assert_eq!(pager.routing_key_env.as_deref(), Some("GUARDIAN_PD_KEY"));
    }

    #[test]
    fn notify_mistakes_are_located_and_secrets_refused() {
        let err = load(
            r#"
[observe]
listen = "localhost"

[notify.chat]
kind = "slack"
url = "https://hooks.slack.com/services/T0/B0/SECRET"

[notify.pager]
kind = "pagerduty"
routing_key = "R0UTINGKEY"

[notify.hook]
kind = "webhok"
url_env = "https://not-a-variable"
retries = 100
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "guardian.toml:5:10: [observe] listen: `localhost` is not an address with a port",
            "guardian.toml:9:7: notify channel `chat`: a Slack or Discord webhook URL is a credential",
            "guardian.toml:13:15: notify channel `pager`: secrets are never written in the configuration",
            "notify channel `pager`: a pagerduty channel needs `routing_key_env`",
            "`webhok` is not a valid notify kind",
            "notify channel `hook`: url_env must name an environment variable, not hold a value",
            "notify channel `hook`: retries must be at most 20",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(
            !text.contains("SECRET") && !text.contains("R0UTINGKEY"),
            "{text}"
        );
    }
}
