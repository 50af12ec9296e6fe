//! Configuration text for a chain on this machine: the `[guardian]` table, one
//! `[networks.local]` and keys read from the environment. `guardian demo` and
//! `guardian simulate` write this head before their own metrics, executors and
//! actions, and the tests write theirs with it too.

use std::fmt;

use crate::levels::Mode;

/// `[guardian]` and `[networks.local]` of a configuration; written with
/// `Display`, each table ending in a newline.
#[derive(Debug, Clone)]
pub struct LocalNetwork {
    pub mode: Mode,
    /// `policies = [...]`, when given (absolute or relative paths, as written).
    pub policies: Option<Vec<String>>,
    pub chain_id: u64,
    /// Read endpoints; the `rpc` line is left out when there are none.
    pub rpc: Vec<String>,
    /// Subscription endpoints; the `ws` line is left out when there are none.
    pub ws: Vec<String>,
    /// `block_time`, e.g. "2s", when given.
    pub block_time: Option<String>,
}

impl LocalNetwork {
    /// Chain 31337 (anvil's) on these endpoints, without policies or block time.
    pub fn new(mode: Mode, rpc: &[&str], ws: &[&str]) -> Self {
        let owned = |urls: &[&str]| urls.iter().map(|u| u.to_string()).collect();
        Self {
            mode,
            policies: None,
            chain_id: 31337,
            rpc: owned(rpc),
            ws: owned(ws),
            block_time: None,
        }
    }
}

impl fmt::Display for LocalNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[guardian]\nmode = \"{}\"", self.mode)?;
        if let Some(policies) = &self.policies {
            let quoted: Vec<String> = policies
                .iter()
                .map(|p| toml::Value::String(p.clone()).to_string())
                .collect();
            writeln!(f, "policies = [{}]", quoted.join(", "))?;
        }
        writeln!(f, "\n[networks.local]\nchain_id = {}", self.chain_id)?;
        for (name, urls) in [("rpc", &self.rpc), ("ws", &self.ws)] {
            if !urls.is_empty() {
                let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
                writeln!(f, "{name} = [{}]", quoted.join(", "))?;
            }
        }
        if let Some(block_time) = &self.block_time {
            writeln!(f, "block_time = \"{block_time}\"")?;
        }
        Ok(())
    }
}

/// A `[keys.NAME]` table read from the environment variable `var`, after a
/// blank line.
pub fn env_key(name: &str, var: &str) -> String {
    format!("\n[keys.{name}]\nsource = \"env\"\nenv = \"{var}\"\n")
}

/// An `[actions.NAME]` pause calling `pause()` on `target` through
/// `executor`, after a blank line; it reads `paused()` back when `reads_back`.
pub fn pause_action(
    name: &str,
    description: &str,
    target: impl fmt::Display,
    executor: &str,
    reads_back: bool,
) -> String {
    let getter = if reads_back {
        "paused_getter = \"paused()\"\n"
    } else {
        ""
    };
    format!(
        "\n[actions.{name}]\nkind = \"pause\"\ndescription = \"{description}\"\ntarget = \"{target}\"\nfunction = \"pause()\"\n{getter}executor = \"{executor}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_lists_what_is_given_in_table_order() {
        let head = LocalNetwork {
            policies: Some(vec!["/p/a.toml".to_string()]),
            block_time: Some("2s".to_string()),
            ..LocalNetwork::new(Mode::Enforce, &["http://h"], &["ws://w"])
        };
        assert_eq!(
            format!("{head}{}", env_key("bot", "BOT")),
            "[guardian]\nmode = \"enforce\"\npolicies = [\"/p/a.toml\"]\n\n[networks.local]\nchain_id = 31337\nrpc = [\"http://h\"]\nws = [\"ws://w\"]\nblock_time = \"2s\"\n\n[keys.bot]\nsource = \"env\"\nenv = \"BOT\"\n"
        );
        assert_eq!(
            LocalNetwork::new(Mode::DryRun, &[], &["ws://a", "ws://b"]).to_string(),
            "[guardian]\nmode = \"dry-run\"\n\n[networks.local]\nchain_id = 31337\nws = [\"ws://a\", \"ws://b\"]\n"
        );
        assert_eq!(
            pause_action("p", "pause it", "0xaa", "module", true),
            "\n[actions.p]\nkind = \"pause\"\ndescription = \"pause it\"\ntarget = \"0xaa\"\nfunction = \"pause()\"\npaused_getter = \"paused()\"\nexecutor = \"module\"\n"
        );
    }
}
