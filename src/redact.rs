//! Error text made safe to log: endpoint URLs carry API keys, so anything that
//! looks like one is replaced before a message reaches a log, an alert or a
//! report. Below every stage that logs a node's error (source, executor,
//! alerts), so none of them imports another for it.

/// Replaces anything that looks like a URL in an error message (URLs carry API keys).
pub fn redact(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|w| {
            let t = w.trim_end();
            if ["http://", "https://", "ws://", "wss://"]
                .iter()
                .any(|s| t.trim_start_matches(['(', '"', '`', '\'']).starts_with(s))
            {
                format!("<url>{}", &w[t.len()..])
            } else {
                w.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_from_messages() {
        assert_eq!(
            redact("error sending request for url (https://eth.example/v2/SECRETKEY) after 3 s"),
            "error sending request for url <url> after 3 s"
        );
        assert_eq!(redact("ws://10.0.0.1:8546/key failed"), "<url> failed");
        assert_eq!(redact("no url here"), "no url here");
    }
}
