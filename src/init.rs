//! `guardian init`: a starting configuration for a protocol team.
//!
//! Asks a few questions (or takes them as flags) and writes, into one folder:
//! - `guardian.toml`, commented: network, where the bot key lives, the module
//!   executor, the journal, guard limits, one metric per placeholder of the chosen starter
//!   pack (with the source to fill in), the pack's pause actions, and `[setup]`;
//! - `policies/<shape>.toml`, the starter pack for the protocol's shape;
//! - `keys.example`, every way to give guardian a key.
//!
//! It never writes a key, never generates one, and never overwrites a file.
//! Mode starts at `dry-run`: nothing is sent until the team switches it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alloy::primitives::{Address, B256};

use crate::cli::InitArgs;

const STARTER_BRIDGE: &str = include_str!("../policies/starter/bridge.toml");
const STARTER_LENDING: &str = include_str!("../policies/starter/lending.toml");
const STARTER_VAULT: &str = include_str!("../policies/starter/vault.toml");
const STARTER_AMM: &str = include_str!("../policies/starter/amm.toml");
const STARTER_AAVE_V3: &str = include_str!("../policies/starter/aave-v3.toml");

mod aave;
const KEYS_EXAMPLE: &str = include_str!("../keys.example");

/// A protocol shape: its starter pack, placeholder metrics and pause actions.
struct Shape {
    name: &'static str,
    pack: &'static str,
    /// (metric, unit, meaning, an example source to start from)
    metrics: &'static [(&'static str, &'static str, &'static str, &'static str)],
    /// (action, what it should do, note on the function)
    actions: &'static [(&'static str, &'static str, &'static str)],
}

const SHAPES: [Shape; 5] = [
    Shape {
        name: "bridge",
        pack: STARTER_BRIDGE,
        metrics: &[
            (
                "bridge.withdrawals",
                "count",
                "messages processed / releases per block",
                r#"{ kind = "event_count", address = "{target}", event = "Process(bytes32 indexed messageHash, bool indexed success, bytes indexed returnData)" }"#,
            ),
            (
                "bridge.outflow.token",
                "token",
                "value of one token released per block (one pair per token: rename `token` to its symbol)",
                r#"{ kind = "event_sum", address = "{target}", event = "Withdraw(address indexed to, uint256 amount)", field = "amount", decimals = 18 }"#,
            ),
            (
                "bridge.liquidity.token",
                "token",
                "value of that token locked in the bridge",
                r#"{ kind = "erc20_balance", token = "0x<token>", holder = "{target}", decimals = 18 }"#,
            ),
        ],
        actions: &[(
            "pause-bridge",
            "Pause the bridge's message processing and releases",
            "",
        )],
    },
    Shape {
        name: "lending",
        pack: STARTER_LENDING,
        metrics: &[
            (
                "lending.price.asset",
                "USD",
                "price the market's own oracle gives the asset (one set of `.asset` metrics per asset: rename `asset` to its symbol)",
                r#"{ kind = "oracle_answer", feed = "0x<market's feed>", decimals = 8 }"#,
            ),
            (
                "lending.reference_price.asset",
                "USD",
                "an independent price for the same asset",
                r#"{ kind = "oracle_answer", feed = "0x<another feed>", decimals = 8 }"#,
            ),
            (
                "lending.oracle_age.asset",
                "seconds",
                "seconds since the market's oracle for the asset last updated",
                r#"{ kind = "oracle_age", feed = "0x<market's feed>" }"#,
            ),
            (
                "lending.utilization.asset",
                "percent points",
                "borrowed / supplied, 0 to 100",
                r#"{ kind = "call", to = "{target}", signature = "utilizationBps()(uint256)", decimals = 2 }"#,
            ),
            (
                "lending.new_borrows.asset",
                "borrowed token",
                "amount borrowed in the block (0 when none)",
                r#"{ kind = "event_sum", address = "{target}", event = "Borrow(address indexed account, uint256 amount)", field = "amount", decimals = 18 }"#,
            ),
            (
                "lending.available_liquidity.asset",
                "borrowed token",
                "amount that can still be borrowed or withdrawn",
                r#"{ kind = "erc20_balance", token = "0x<borrowed token>", holder = "{target}", decimals = 18 }"#,
            ),
            (
                "lending.borrowed_usd",
                "USD",
                "value borrowed in the block over all assets (0 when none)",
                r#"{ kind = "call", to = "0x<market's USD accounting>", signature = "<borrowed value in the block>()(uint256)", decimals = 18 }"#,
            ),
            (
                "lending.liquidity_usd",
                "USD",
                "value that can still be borrowed over all assets",
                r#"{ kind = "call", to = "0x<market's USD accounting>", signature = "<available liquidity value>()(uint256)", decimals = 18 }"#,
            ),
            (
                "lending.bad_debt",
                "USD",
                "debt not covered by its collateral, over all accounts",
                r#"{ kind = "call", to = "{target}", signature = "badDebt()(uint256)", decimals = 18 }"#,
            ),
            (
                "lending.collateral_ratio",
                "ratio",
                "total collateral value / total debt value (1.5 = 150%)",
                r#"{ kind = "ratio", numerator = "<collateral value metric>", denominator = "<debt value metric>" }"#,
            ),
        ],
        actions: &[
            (
                "pause-market",
                "Pause the whole market (supply, borrow, withdraw, liquidate)",
                "",
            ),
            (
                "pause-borrowing",
                "Pause new borrows only; repay and liquidation stay open",
                "# replace with your borrow-only pause function (e.g. \"pauseBorrowing()\") if the market has one\n",
            ),
        ],
    },
    Shape {
        name: "vault",
        pack: STARTER_VAULT,
        metrics: &[
            (
                "vault.total_assets",
                "underlying token",
                "totalAssets()",
                r#"{ kind = "call", to = "{target}", signature = "totalAssets()(uint256)", decimals = 18 }"#,
            ),
            (
                "vault.share_price",
                "underlying token",
                "assets per share",
                r#"{ kind = "call", to = "{target}", signature = "convertToAssets(uint256)(uint256)", args = ["1000000000000000000"], decimals = 18 }"#,
            ),
            (
                "vault.outflow",
                "underlying token",
                "assets withdrawn or redeemed in the block (0 when none)",
                r#"{ kind = "event_sum", address = "{target}", event = "Withdraw(address indexed sender, address indexed receiver, address indexed owner, uint256 assets, uint256 shares)", field = "assets", decimals = 18 }"#,
            ),
            (
                "vault.oracle_age",
                "seconds",
                "seconds since the price feed the vault relies on last updated",
                r#"{ kind = "oracle_age", feed = "0x<feed>" }"#,
            ),
        ],
        actions: &[(
            "pause-vault",
            "Pause deposits, withdrawals and strategy calls of the vault",
            "",
        )],
    },
    Shape {
        name: "amm",
        pack: STARTER_AMM,
        metrics: &[
            (
                "amm.reserve0",
                "token0",
                "the pool's reserve of token0",
                r#"{ kind = "call", to = "{target}", signature = "reserve0()(uint256)", decimals = 18 }"#,
            ),
            (
                "amm.reserve1",
                "token1",
                "the pool's reserve of token1",
                r#"{ kind = "call", to = "{target}", signature = "reserve1()(uint256)", decimals = 18 }"#,
            ),
            (
                "amm.spot_price",
                "token1 per token0",
                "reserve1 / reserve0 after the block",
                r#"{ kind = "ratio", numerator = "amm.reserve1", denominator = "amm.reserve0" }"#,
            ),
            (
                "amm.twap_price",
                "token1 per token0",
                "the pool's own TWAP (about 30 minutes)",
                r#"{ kind = "call", to = "{target}", signature = "twap()(uint256)", decimals = 18 }"#,
            ),
            (
                "amm.oracle_price",
                "token1 per token0",
                "an external price for the pair",
                r#"{ kind = "oracle_answer", feed = "0x<feed>", decimals = 8 }"#,
            ),
            (
                "amm.k_per_share",
                "number",
                "sqrt(reserve0 * reserve1) / LP supply",
                r#"{ kind = "call", to = "{target}", signature = "kPerShare()(uint256)", decimals = 18 }"#,
            ),
        ],
        actions: &[("pause-pool", "Pause swaps, mints and burns of the pool", "")],
    },
    aave::SHAPE,
];

/// The answers `init` needs.
#[derive(Debug, Clone)]
pub struct Answers {
    pub shape: String,
    pub network: String,
    pub chain_id: u64,
    pub rpc: String,
    pub safe: Address,
    pub target: Address,
    pub guardians: Vec<Address>,
    /// `None`: the address `setup plan` deploys the module at.
    pub module: Option<Address>,
    pub key_source: String,
}

/// Why `init` cannot write its files.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Answer(String),
    #[error("{}: already exists; guardian init never overwrites a file (choose another --dir)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn address(what: &str, s: &str) -> Result<Address, InitError> {
    s.trim().parse::<Address>().map_err(|_| {
        InitError::Answer(format!(
            "{what}: `{s}` is not an address (0x followed by 40 hex digits)"
        ))
    })
}

/// Asks one question, with an optional default; returns the answer.
type Ask<'a> = &'a mut dyn FnMut(&str, Option<&str>) -> String;

/// Collects the answers from the flags, asking for the missing ones when
/// `ask` is given (a terminal), failing with every missing flag otherwise.
fn answers(args: &InitArgs, mut ask: Option<Ask<'_>>) -> Result<Answers, InitError> {
    let mut missing = Vec::new();
    let mut get = |flag: &str, question: &str, given: Option<String>, default: Option<&str>| {
        if let Some(v) = given {
            return Some(v);
        }
        match ask.as_mut() {
            Some(ask) => Some(ask(question, default)),
            None => match default {
                Some(d) => Some(d.to_string()),
                None => {
                    missing.push(flag.to_string());
                    None
                }
            },
        }
    };
    let shape = get(
        "--shape",
        "Protocol shape (bridge, lending, vault, amm, aave-v3)",
        args.shape.clone(),
        None,
    );
    let network = get(
        "--network",
        "Network name",
        args.network.clone(),
        Some("mainnet"),
    );
    let chain_id = get(
        "--chain-id",
        "Chain id",
        args.chain_id.map(|c| c.to_string()),
        Some("1"),
    );
    let rpc = get(
        "--rpc",
        "HTTP(S) RPC endpoint (one without an API key in the URL, if you can)",
        args.rpc.clone(),
        None,
    );
    let safe = get(
        "--safe",
        "The protocol's Safe address (it holds the pause role)",
        args.safe.clone(),
        None,
    );
    let target = get(
        "--target",
        "The contract to pause",
        args.target.clone(),
        None,
    );
    let guardians = get(
        "--guardian",
        "Guardian bot address(es), comma-separated (addresses only, never keys)",
        (!args.guardians.is_empty()).then(|| args.guardians.join(",")),
        None,
    );
    let module = get(
        "--module",
        "An already deployed GuardianModule (empty: setup plan deploys one)",
        args.module.clone(),
        Some(""),
    );
    let key_source = get(
        "--key-source",
        "Where the bot key lives (keystore, env)",
        args.key_source.clone(),
        Some("keystore"),
    );
    if !missing.is_empty() {
        return Err(InitError::Answer(format!(
            "missing {} (no terminal to ask on; give them as flags)",
            missing.join(", ")
        )));
    }
    let (
        Some(shape),
        Some(network),
        Some(chain_id),
        Some(rpc),
        Some(safe),
        Some(target),
        Some(guardians),
        Some(module),
        Some(key_source),
    ) = (
        shape, network, chain_id, rpc, safe, target, guardians, module, key_source,
    )
    else {
        return Err(InitError::Answer("an answer is missing".into()));
    };
    let shape = shape.trim().to_string();
    if !SHAPES.iter().any(|s| s.name == shape) {
        return Err(InitError::Answer(format!(
            "shape `{shape}`: one of bridge, lending, vault, amm, aave-v3"
        )));
    }
    let network = network.trim().to_string();
    if network.is_empty()
        || !network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(InitError::Answer(format!(
            "network `{network}`: use letters, digits, - and _"
        )));
    }
    let chain_id = chain_id
        .trim()
        .parse::<u64>()
        .map_err(|_| InitError::Answer(format!("chain id `{chain_id}` is not a number")))?;
    let rpc = rpc.trim().to_string();
    if !(rpc.starts_with("http://") || rpc.starts_with("https://")) {
        return Err(InitError::Answer(
            "the RPC endpoint must start with http:// or https://".into(),
        ));
    }
    let guardians = guardians
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| address("guardian", s))
        .collect::<Result<Vec<_>, _>>()?;
    if guardians.is_empty() {
        return Err(InitError::Answer("at least one guardian address".into()));
    }
    let module = match module.trim() {
        "" => None,
        m => Some(address("module", m)?),
    };
    let key_source = key_source.trim().to_string();
    if key_source != "env" && key_source != "keystore" {
        return Err(InitError::Answer(format!(
            "key source `{key_source}`: env or keystore"
        )));
    }
    Ok(Answers {
        shape,
        network,
        chain_id,
        rpc,
        safe: address("safe", &safe)?,
        target: address("target", &target)?,
        guardians,
        module,
        key_source,
    })
}

/// The commented `guardian.toml` for `a`.
pub fn guardian_toml(a: &Answers) -> String {
    let shape = SHAPES
        .iter()
        .find(|s| s.name == a.shape)
        .unwrap_or(&SHAPES[0]);
    let target = a.target.to_checksum(None);
    let (module, module_note) = match a.module {
        Some(m) => (
            m,
            "# The GuardianModule already deployed for the Safe; `guardian setup verify` checks its code.",
        ),
        None => (
            crate::setup::predicted_module(a.safe, B256::ZERO),
            "# The address `guardian setup plan` deploys the GuardianModule at (CREATE2 through the\n# deterministic deployment proxy, salt 0, for this Safe). Replace it if you deploy it otherwise.",
        ),
    };
    let mut s = String::new();
    s.push_str(&format!(
        r#"# guardian.toml for a {shape} protocol, written by `guardian init`.
#
# Next steps (docs/deploy.md walks through each):
#   1. fill in every metric's `source` below and check:  guardian check --config guardian.toml
#   2. calibrate the policy thresholds on your own history (policies/{shape}.toml)
#   3. plan the module set-up for the council:            guardian setup plan --config guardian.toml
#   4. after the Safe executed it:                        guardian setup verify --config guardian.toml
#   5. run in dry-run, then switch `mode` to "enforce".

[guardian]
# dry-run: evaluate policies and decide, never send. "enforce" sends guarded actions;
# "alert-only" only reports. A policy's own mode can only make it more cautious.
mode = "dry-run"
policies = ["policies/{shape}.toml"]

[networks.{network}]
chain_id = {chain_id}
# HTTP(S) endpoints in order of preference. A URL with an API key in it is a secret:
# keep this file readable only by the guardian's user (chmod 600). It is never logged.
rpc = ["{rpc}"]
# WebSocket endpoints let the guardian see attacks in the mempool and act in the same block:
# ws = ["wss://..."]

# Where the guardian bot key lives: never the key itself (see keys.example for every option).
"#,
        shape = shape.name,
        network = a.network,
        chain_id = a.chain_id,
        rpc = a.rpc,
    ));
    if a.key_source == "env" {
        s.push_str(
            r#"[keys.guardian-bot]
source = "env"
env = "GUARDIAN_BOT_KEY"             # 0x + 64 hex digits, exported from your secret manager
"#,
        );
    } else {
        s.push_str(
            r#"[keys.guardian-bot]
source = "keystore"
path = "/etc/guardian/bot.json"                  # chmod 600, owned by the guardian's user
passphrase_file = "/etc/guardian/bot.passphrase" # chmod 600 as well
"#,
        );
    }
    s.push_str(&format!(
        r#"
# The guardian bot calls the GuardianModule, which acts through the Safe within the
# permissions [setup] grants it: pause only (never unpause), bounded parameters.
[executors.module]
kind = "module"
{module_note}
module = "{module}"
key = "guardian-bot"
network = "{network}"
max_fee_gwei = 500          # fee cap when outbidding an attack transaction
deadline = "60s"            # give up and alert when not included by then

# Where `guardian run` keeps its state: the last processed block, every trip,
# decision and transaction. "enforce" refuses to run without it (a restart must
# never send an action twice). `guardian history` reads it.
[journal]
path = "guardian.db"        # relative to this file; keep it on a local disk
# replica = 0               # with 2-3 replicas of this configuration: 0, 1, 2

# Metrics and health for Prometheus, and alert channels (docs/deploy.md,
# "Monitoring and alerts"). Secrets come from environment variables only.
# [observe]
# listen = "127.0.0.1:9464"
# [notify.pager]
# kind = "pagerduty"
# routing_key_env = "GUARDIAN_PD_ROUTING_KEY"

# Off-chain limits the guard applies before anything is signed.
[guard]
target_cooldown = "10m"     # least time between two actions on one contract
rate_limit = "5/1d"         # at most five actions a day over all contracts
target_rate_limit = "3/1d"  # at most three a day per contract

# Metrics the starter policies read (their placeholder names, so no [bind] is needed).
# Each needs a `source` to run live: the commented line is a starting point to adapt.
# Sample every metric in every block.
"#,
        network = a.network,
    ));
    for (name, unit, meaning, source) in shape.metrics {
        s.push_str(&format!(
            "\n[metrics.\"{name}\"]\ndescription = \"{meaning}\"\nunit = \"{unit}\"\nnetwork = \"{network}\"\n# source = {source}\n",
            network = a.network,
            source = source.replace("{target}", &target),
        ));
    }
    s.push_str(
        "\n# The actions the policies request. The module may only call what [setup] grants.\n",
    );
    for (name, description, note) in shape.actions {
        s.push_str(&format!(
            r#"
[actions.{name}]
kind = "pause"
description = "{description}"
target = "{target}"
{note}function = "pause()"
paused_getter = "paused()"   # read before (never pause twice) and after (proof it paused)
executor = "module"
"#
        ));
    }
    if shape.name == aave::NAME {
        s.push_str(&aave::extra_actions(&target));
    }
    let guardians: Vec<String> = a
        .guardians
        .iter()
        .map(|g| format!("\"{}\"", g.to_checksum(None)))
        .collect();
    s.push_str(&format!(
        r#"
# The module set-up the Safe's owners sign: `guardian setup plan` turns this section and
# the module executor's actions into a Transaction Builder batch; `guardian setup verify`
# checks the chain against it.
[setup]
safe = "{safe}"
executor = "module"
# Addresses of the guardian bot keys (the module accepts calls from these only).
guardians = [{guardians}]
# The module's own per-contract limits (from [guard] unless set here):
# target_cooldown = "10m"
# target_rate_limit = "3/1d"
# Block the module was deployed at: where verify starts reading its events.
# from_block = 0
# `guardian run` verifies the set-up first and refuses to start on a difference.
verify_before_run = true
"#,
        safe = a.safe.to_checksum(None),
        guardians = guardians.join(", "),
    ));
    if shape.name == aave::NAME {
        s.push_str(aave::SETUP_LINES);
    }
    s
}

/// Writes the three files into `dir`; refuses to overwrite any of them.
pub fn write(dir: &Path, a: &Answers) -> Result<Vec<PathBuf>, InitError> {
    let shape = SHAPES
        .iter()
        .find(|s| s.name == a.shape)
        .unwrap_or(&SHAPES[0]);
    let files = [
        (dir.join("guardian.toml"), guardian_toml(a)),
        (
            dir.join("policies").join(format!("{}.toml", shape.name)),
            shape.pack.to_string(),
        ),
        (dir.join("keys.example"), KEYS_EXAMPLE.to_string()),
    ];
    for (path, _) in &files {
        if path.exists() {
            return Err(InitError::Exists(path.clone()));
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io(path))?;
        f.write_all(text.as_bytes()).map_err(io(path))?;
    }
    // The configuration may carry an RPC URL with an API key: owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = &files[0].0;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

pub fn run(args: InitArgs) -> ExitCode {
    let interactive = !args.no_input && std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut ask = |question: &str, default: Option<&str>| -> String {
        match default {
            Some(d) if !d.is_empty() => eprint!("{question} [{d}]: "),
            _ => eprint!("{question}: "),
        }
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let _ = stdin.lock().read_line(&mut line);
        let line = line.trim().to_string();
        match default {
            Some(d) if line.is_empty() => d.to_string(),
            _ => line,
        }
    };
    let answers = match answers(
        &args,
        if interactive {
            Some(&mut ask as Ask<'_>)
        } else {
            None
        },
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match write(&args.dir, &answers) {
        Ok(files) => {
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!(
                "\nnext: fill in the metric sources, then `guardian check --config {}`; docs/deploy.md has every step",
                files[0].display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
