//! The body each kind of channel takes, and the webhook signature. Pure functions.
//!
//! - generic webhook: the [`Alert`] itself as JSON (`version` 1), signed when
//!   the channel has a secret: header `X-Guardian-Signature: sha256=<hex>` is
//!   the HMAC-SHA256 of the exact body bytes under the secret;
//! - Slack: `text` (the fallback line) and `blocks` (a header, the summary, a context line);
//! - Discord: `content` and one embed (`title`, `description`, `color`, `fields`, `timestamp`),
//!   within Discord's length limits;
//! - PagerDuty Events API v2: a `trigger` event whose `dedup_key` groups every alert of
//!   one policy (or one operational condition) into one incident; a landed
//!   action sends `resolve` with the same `dedup_key`, closing that incident.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Alert;
use crate::policy::model::Severity;

/// The header carrying a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "x-guardian-signature";

/// The generic webhook body.
pub fn webhook(alert: &Alert) -> Value {
    let mut v = serde_json::to_value(alert).unwrap_or_else(|_| json!({}));
    v["version"] = json!(1);
    v["source"] = json!("guardian");
    v
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", alloy::hex::encode(mac.finalize().into_bytes()))
}

fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    }
}

/// What an alert is about, in one short line: policy, network, block, decision.
fn context_line(alert: &Alert) -> String {
    let mut parts = vec![
        format!("severity {}", alert.severity.as_str()),
        format!("kind {}", alert.kind.as_str()),
    ];
    if let Some(p) = &alert.policy {
        parts.push(format!("policy {p}"));
    }
    if let Some(n) = &alert.network {
        parts.push(format!("network {n}"));
    }
    if let Some(b) = alert.block {
        parts.push(format!("block {b}"));
    }
    if let Some(d) = alert.decision_id {
        parts.push(format!("decision {d}"));
    }
    parts.join(" · ")
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A Slack incoming-webhook body.
pub fn slack(alert: &Alert) -> Value {
    let text = format!("{} guardian: {}", emoji(alert.severity), alert.title);
    json!({
        "text": truncate(&text, 3000),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": truncate(&format!("guardian {}: {}", alert.severity.as_str(), alert.kind.as_str()), 150) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": truncate(&format!("{} {}", emoji(alert.severity), alert.title), 3000) } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": truncate(&context_line(alert), 3000) } ] }
        ]
    })
}

/// A Discord webhook body.
pub fn discord(alert: &Alert) -> Value {
    let color = match alert.severity {
        Severity::Critical => 0xD7_26_1E,
        Severity::Warning => 0xF2_A9_00,
        Severity::Info => 0x3A_7B_D5,
    };
    let mut fields = Vec::new();
    let mut field = |name: &str, value: String| {
        fields.push(json!({ "name": name, "value": truncate(&value, 1024), "inline": true }));
    };
    field("severity", alert.severity.as_str().to_string());
    if let Some(p) = &alert.policy {
        field("policy", p.clone());
    }
    if let Some(n) = &alert.network {
        field("network", n.clone());
    }
    if let Some(b) = alert.block {
        field("block", b.to_string());
    }
    if let Some(d) = alert.decision_id {
        field("decision", d.to_string());
    }
    json!({
        "content": truncate(&format!("guardian {}: {}", alert.severity.as_str(), alert.title), 2000),
        "embeds": [{
            "title": truncate(&format!("guardian: {}", alert.kind.as_str()), 256),
            "description": truncate(&alert.title, 4096),
            "color": color,
            "fields": fields,
            "timestamp": iso8601(alert.time_ms),
        }],
        "allowed_mentions": { "parse": [] }
    })
}

/// A PagerDuty Events API v2 `trigger` event.
pub fn pagerduty(alert: &Alert, routing_key: &str) -> Value {
    let severity = match alert.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let mut payload = json!({
        "summary": truncate(&format!("guardian: {}", alert.title), 1024),
        "source": alert.network.as_deref().map_or("guardian".to_string(), |n| format!("guardian/{n}")),
        "severity": severity,
        "timestamp": iso8601(alert.time_ms),
        "class": alert.kind.as_str(),
        "custom_details": {
            "title": alert.title,
            "block": alert.block,
            "decision_id": alert.decision_id,
            "tx": alert.tx,
            "details": alert.details,
        },
    });
    if let Some(p) = &alert.policy {
        payload["component"] = json!(p);
    }
    if let Some(n) = &alert.network {
        payload["group"] = json!(n);
    }
    json!({
        "routing_key": routing_key,
        "event_action": if alert.resolves() { "resolve" } else { "trigger" },
        "dedup_key": alert.incident_key(),
        "payload": payload,
        "client": "guardian",
    })
}

/// Unix milliseconds as RFC 3339 (what Discord and PagerDuty take).
pub fn iso8601(time_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(time_ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;

    fn trip() -> Alert {
        Alert {
            kind: AlertKind::Trip,
            severity: Severity::Critical,
            policy: Some("vault-drain".into()),
            network: Some("mainnet".into()),
            block: Some(19_000_000),
            decision_id: None,
            tx: None,
            title: "policy vault-drain tripped at block 19000000: assets fell 50%".into(),
            details: json!({ "action": "pause-vault", "evidence": { "change_pct": -50.0 } }),
            dedupe_key: "trip:vault-drain".into(),
            time_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn the_webhook_body_is_the_alert_with_a_version() {
        let v = webhook(&trip());
        assert_eq!(v["version"], 1);
        assert_eq!(v["kind"], "trip");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["policy"], "vault-drain");
        assert_eq!(v["block"], 19_000_000);
        assert_eq!(v["details"]["evidence"]["change_pct"], -50.0);
        assert_eq!(v["dedupe_key"], "trip:vault-drain");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_takes_text_and_blocks() {
        let v = slack(&trip());
        assert!(v["text"].as_str().unwrap().contains("vault-drain tripped"));
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[1]["type"], "section");
        assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
        assert_eq!(blocks[2]["type"], "context");
        let context = blocks[2]["elements"][0]["text"].as_str().unwrap();
        assert!(
            context.contains("policy vault-drain") && context.contains("block 19000000"),
            "{context}"
        );
    }

    #[test]
    fn discord_takes_content_and_an_embed_within_limits() {
        let mut a = trip();
        a.title = "x".repeat(5000);
        let v = discord(&a);
        assert!(v["content"].as_str().unwrap().chars().count() <= 2000);
        let embed = &v["embeds"][0];
        assert!(embed["title"].as_str().unwrap().chars().count() <= 256);
        assert!(embed["description"].as_str().unwrap().chars().count() <= 4096);
        assert_eq!(embed["color"], 0xD7261E);
        assert_eq!(embed["timestamp"], "2023-11-14T22:13:20.123Z");
        let fields = embed["fields"].as_array().unwrap();
        assert!(
            fields
                .iter()
                .any(|f| f["name"] == "policy" && f["value"] == "vault-drain")
        );
        assert_eq!(v["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn pagerduty_events_v2_trigger_has_the_required_fields() {
        let v = pagerduty(&trip(), "R0UT1NGKEY");
        assert_eq!(v["routing_key"], "R0UT1NGKEY");
        assert_eq!(v["event_action"], "trigger");
        // Every alert of one policy lands in one incident.
        assert_eq!(v["dedup_key"], "guardian:policy:vault-drain");
        let p = &v["payload"];
        assert!(
            p["summary"]
                .as_str()
                .unwrap()
                .starts_with("guardian: policy vault-drain tripped")
        );
        assert_eq!(p["source"], "guardian/mainnet");
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(p["component"], "vault-drain");
        assert_eq!(p["group"], "mainnet");
        assert_eq!(p["class"], "trip");
        assert_eq!(p["custom_details"]["details"]["action"], "pause-vault");
        let mut info = trip();
        info.severity = Severity::Info;
        info.policy = None;
        info.dedupe_key = "stale:mainnet".into();
        let v = pagerduty(&info, "k");
        assert_eq!(v["payload"]["severity"], "info");
        assert_eq!(v["dedup_key"], "guardian:stale:mainnet");
    }

    #[test]
    fn a_landed_action_resolves_its_policys_incident() {
        let mut landed = trip();
        landed.kind = AlertKind::Executed;
        landed.severity = Severity::Info;
        landed.details = json!({ "outcome": "landed", "tx": "0xabc" });
        let v = pagerduty(&landed, "k");
        assert_eq!(v["event_action"], "resolve");
        assert_eq!(v["dedup_key"], pagerduty(&trip(), "k")["dedup_key"]);
        landed.details = json!({ "outcome": "dry-run" });
        assert_eq!(pagerduty(&landed, "k")["event_action"], "trigger");
    }
}
