//! `guardian devnet`: a local chain to rehearse docs/deploy.md on, in minutes.
//!
//! `guardian devnet up` starts anvil (from `node_modules`), deploys a 2-of-3
//! Safe with local owner keys, the demo protocol (a token and an ERC-4626
//! vault whose pause role the Safe holds, and a price feed), writes a
//! configuration exactly as `guardian init --shape vault` does (with the
//! metric sources filled in), then sets the GuardianModule up through the
//! very batch `guardian setup plan` writes, executed the way the Safe app
//! executes a Transaction Builder file (one MultiSendCallOnly delegatecall,
//! two owners signing), and checks it with `setup verify`. It funds the bot
//! key and writes it to `bot.env` (a throwaway devnet key, never a real one),
//! deposits into the vault, mines a block a second and prints every alert
//! guardian sends to its webhook. It runs until Ctrl-C.
//!
//! `guardian devnet drain --dir <dir> --percent 40` withdraws that share of
//! the vault's assets in one transaction: the incident to practise on.
//!
//! Deployment code is shared with the scenarios ([`crate::scenario::chain`]);
//! the set-up with `guardian setup` ([`crate::setup`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use serde::{Deserialize, Serialize};

use crate::demo::DemoToken;
use crate::scenario::ScenarioError;
use crate::scenario::chain::{Accounts, Chain, Node, SafeStack, confirm, rpc_err as chain_err};
use crate::scenario::protocol::KeeperPriceFeed;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct DevnetArgs {
    #[command(subcommand)]
    pub command: DevnetCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Start anvil, deploy a Safe, a demo vault and the module (through the `setup plan` batch), write a ready configuration; runs until Ctrl-C.
    Up(DevnetUpArgs),
    /// Withdraw a share of the devnet vault's assets in one transaction: an incident to rehearse on.
    Drain(DevnetDrainArgs),
}

#[derive(Debug, Args)]
pub struct DevnetUpArgs {
    /// Folder to write guardian.toml, policies/, bot.env, devnet.json and guardian-setup.json into (files are replaced).
    #[arg(long, default_value = "guardian-devnet")]
    pub dir: PathBuf,
    /// The anvil binary (installed by `npm ci`).
    #[arg(
        long,
        default_value = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    )]
    pub anvil: PathBuf,
    /// The port anvil listens on (127.0.0.1).
    #[arg(long, default_value_t = 8545)]
    pub port: u16,
    /// The port the devnet receives guardian's alerts on (0: any free one).
    #[arg(long, default_value_t = 0)]
    pub alerts_port: u16,
}

#[derive(Debug, Args)]
pub struct DevnetDrainArgs {
    /// The folder `guardian devnet up` wrote.
    #[arg(long, default_value = "guardian-devnet")]
    pub dir: PathBuf,
    /// The share of the vault's assets to withdraw, 1 to 100.
    #[arg(long, default_value_t = 40)]
    pub percent: u64,
}

sol!(
    #[sol(rpc)]
    GuardedVault,
    "contracts/artifacts/GuardedVault.json"
);
sol!(
    #[sol(rpc)]
    MultiSendCallOnly,
    "contracts/artifacts/safe/MultiSendCallOnly.json"
);

/// Tokens the depositor puts in the vault (18 decimals).
const DEPOSIT: u64 = 1_000_000;
const EXP18: u64 = 1_000_000_000_000_000_000;

/// Why the devnet cannot start or act.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error(transparent)]
    Chain(#[from] ScenarioError),
    #[error("cannot start anvil from {path}: {reason} (run `npm ci` first, or pass --anvil)")]
    Anvil { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the written configuration does not load: {0}")]
    Config(String),
    #[error("the module set-up: {0}")]
    Setup(String),
    #[error(
        "{}: no devnet there (start one with `guardian devnet up --dir {}`)",
        .0.display(), .0.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    NotStarted(PathBuf),
    #[error("the drain failed: {0}")]
    Drain(String),
}

/// What `up` deployed, for `drain` and for people (`devnet.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    pub rpc: String,
    pub chain_id: u64,
    pub safe: Address,
    pub module: Address,
    pub vault: Address,
    pub token: Address,
    pub feed: Address,
    pub bot: Address,
    /// The depositor's throwaway devnet key: `drain` withdraws with it.
    pub depositor_key: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |source| DevnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `guardian devnet up | drain`: exit 0, or 2 when the chain or a file cannot be used.
pub fn command(args: DevnetArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::say!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            DevnetCommand::Up(a) => up(a).await,
            DevnetCommand::Drain(a) => drain(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(DevnetError::Config(e)) => {
            crate::say!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            crate::say!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn up(args: DevnetUpArgs) -> Result<(), DevnetError> {
    let anvil = Anvil::at(&args.anvil)
        .port(args.port)
        .try_spawn()
        .map_err(|e| DevnetError::Anvil {
            path: args.anvil.clone(),
            reason: e.to_string(),
        })?;
    let (http, ws) = (anvil.endpoint(), anvil.ws_endpoint());
    let chain = Chain::connect(
        Node::Existing {
            http: &http,
            ws: &ws,
        },
        Accounts::random(1, 0, 1),
    )
    .await?;
    let (stack, deployed) = deploy(&chain).await?;
    let alerts = alert_listener(args.alerts_port).await?;
    write_files(&args.dir, &deployed, &chain, alerts)?;
    set_up_module(&args.dir, &chain, &stack).await?;
    deposit(&chain, &deployed).await?;
    chain.interval_mining(1).await?;
    print_ready(&args.dir, &deployed, alerts);
    serve(anvil).await;
    Ok(())
}

/// The Safe, the token, the vault (the Safe holds its roles) and a price feed.
async fn deploy(chain: &Chain) -> Result<(SafeStack, Deployed), DevnetError> {
    let p = &chain.provider;
    let deployer = chain.accounts.deployer.address();
    let safe = SafeStack::deploy_safe(chain).await?;
    let token = DemoToken::deploy(p, "Demo USD".into(), "dUSD".into(), deployer)
        .await
        .map_err(chain_err("deploy the demo token"))?;
    let cap = U256::from(10 * DEPOSIT) * U256::from(EXP18);
    let vault = GuardedVault::deploy(p, *token.address(), safe, cap)
        .await
        .map_err(chain_err("deploy the demo vault"))?;
    let feed = KeeperPriceFeed::deploy(
        p,
        deployer,
        8,
        "ETH / USD".into(),
        alloy::primitives::I256::try_from(200_000_000_000i64).unwrap_or_default(),
    )
    .await
    .map_err(chain_err("deploy the price feed"))?;
    let module = crate::setup::predicted_module(safe, alloy::primitives::B256::ZERO);
    let depositor = &chain.accounts.users[0];
    let deployed = Deployed {
        rpc: chain.http.clone(),
        chain_id: chain.chain_id,
        safe,
        module,
        vault: *vault.address(),
        token: *token.address(),
        feed: *feed.address(),
        bot: chain.accounts.bot.address(),
        depositor_key: format!("0x{}", alloy::hex::encode(depositor.to_bytes())),
    };
    Ok((SafeStack { safe, module }, deployed))
}

/// guardian.toml exactly as `guardian init --shape vault` writes it, with the
/// metric sources filled in, a webhook to this devnet, and `block_time`.
fn guardian_toml(d: &Deployed, alerts: std::net::SocketAddr) -> String {
    let answers = crate::init::Answers {
        shape: "vault".into(),
        network: "devnet".into(),
        chain_id: d.chain_id,
        rpc: d.rpc.clone(),
        safe: d.safe,
        target: d.vault,
        guardians: vec![d.bot],
        module: None,
        key_source: "env".into(),
    };
    let text = crate::init::guardian_toml(&answers)
        .replace("\n# source = ", "\nsource = ")
        .replace("0x<feed>", &d.feed.to_checksum(None))
        .replace(
            &format!("chain_id = {}\n", d.chain_id),
            &format!("chain_id = {}\nblock_time = \"1s\"\n", d.chain_id),
        );
    format!(
        "{text}\n# Written by `guardian devnet up`: alerts go to the devnet, which prints them.\n[notify.devnet]\nkind = \"webhook\"\nurl = \"http://{alerts}/alerts\"\n"
    )
}

fn write_files(
    dir: &Path,
    d: &Deployed,
    chain: &Chain,
    alerts: std::net::SocketAddr,
) -> Result<(), DevnetError> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).map_err(io(&policies))?;
    let files = [
        (dir.join("guardian.toml"), guardian_toml(d, alerts)),
        (
            policies.join("vault.toml"),
            include_str!("../policies/starter/vault.toml").to_string(),
        ),
        (
            dir.join("bot.env"),
            format!(
                "# The guardian bot's key on this devnet only: a throwaway key, funded by `guardian devnet up`.\nGUARDIAN_BOT_KEY=0x{}\n",
                alloy::hex::encode(chain.accounts.bot.to_bytes())
            ),
        ),
        (
            dir.join("devnet.json"),
            serde_json::to_string_pretty(d).unwrap_or_default() + "\n",
        ),
    ];
    for (path, text) in &files {
        write_private(path, text)?;
    }
    Ok(())
}

/// Writes `text` to `path`, readable by its owner only (keys and RPC URLs).
fn write_private(path: &Path, text: &str) -> Result<(), DevnetError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))
}

/// `guardian setup plan`'s batch, executed as the Safe app executes it, then `setup verify`.
async fn set_up_module(dir: &Path, chain: &Chain, stack: &SafeStack) -> Result<(), DevnetError> {
    use crate::setup::{Desired, plan::plan, verify};
    let path = dir.join("guardian.toml");
    let config =
        crate::config::Config::load(&path).map_err(|d| DevnetError::Config(d.to_string()))?;
    let setup_err = |e: crate::setup::SetupError| DevnetError::Setup(e.to_string());
    let want = Desired::from_config(&config).map_err(setup_err)?;
    let provider = verify::connect(&config, &want).await.map_err(setup_err)?;
    let actual = verify::read_actual(&provider, &want)
        .await
        .map_err(setup_err)?;
    let planned = plan(&want, &actual, true).map_err(setup_err)?;
    let file = crate::setup::txbuilder::batch_file(
        want.chain_id,
        want.safe,
        "guardian: GuardianModule set-up",
        "Generated by `guardian devnet up`, as `guardian setup plan` generates it.",
        0,
        &planned.txs,
    );
    let batch = dir.join("guardian-setup.json");
    write_private(
        &batch,
        &(serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"),
    )?;
    let calls =
        crate::setup::txbuilder::calls(&file).map_err(|e| DevnetError::Setup(e.to_string()))?;
    let multisend = MultiSendCallOnly::deploy(&chain.provider)
        .await
        .map_err(|e| DevnetError::Setup(format!("deploy MultiSendCallOnly: {e}")))?;
    let data = multisend_calldata(&calls);
    // Operation 1: the Safe delegatecalls MultiSendCallOnly.
    stack.exec_as(chain, *multisend.address(), data, 1).await?;
    let (_, differences) = verify::verify(&config).await.map_err(setup_err)?;
    if !differences.is_empty() {
        return Err(DevnetError::Setup(verify::report(&want, &differences)));
    }
    Ok(())
}

/// What the Safe app sends for a batch: `multiSend` calldata for
/// MultiSendCallOnly carrying every call (operation, to, value, data length,
/// data, packed), to be delegatecalled by the Safe so they run all or none.
pub fn multisend_calldata(calls: &[crate::setup::txbuilder::BatchCall]) -> Vec<u8> {
    let mut packed = Vec::new();
    for c in calls {
        packed.push(0u8); // operation: call
        packed.extend_from_slice(c.to.as_slice());
        packed.extend_from_slice(&c.value.to_be_bytes::<32>());
        packed.extend_from_slice(&U256::from(c.data.len()).to_be_bytes::<32>());
        packed.extend_from_slice(&c.data);
    }
    MultiSendCallOnly::multiSendCall {
        transactions: packed.into(),
    }
    .abi_encode()
}

/// The depositor mints and deposits [`DEPOSIT`] tokens.
async fn deposit(chain: &Chain, d: &Deployed) -> Result<(), DevnetError> {
    let user = chain.accounts.users[0].address();
    let amount = U256::from(DEPOSIT) * U256::from(EXP18);
    let token = DemoToken::new(d.token, &chain.provider);
    let vault = GuardedVault::new(d.vault, &chain.provider);
    confirm(
        token
            .mint(user, amount)
            .from(chain.accounts.deployer.address())
            .send()
            .await,
        "mint the deposit",
    )
    .await?;
    confirm(
        token.approve(d.vault, amount).from(user).send().await,
        "approve the deposit",
    )
    .await?;
    confirm(
        vault.deposit(amount, user).from(user).send().await,
        "deposit into the vault",
    )
    .await?;
    Ok(())
}

/// A webhook receiver that prints every alert guardian sends, one line each.
async fn alert_listener(port: u16) -> Result<std::net::SocketAddr, DevnetError> {
    async fn receive(body: axum::body::Bytes) -> axum::http::StatusCode {
        let alert: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let field = |k: &str| match &alert[k] {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        println!(
            "alert: {} {} (policy {}, network {}, block {}, decision {}): {}",
            field("severity"),
            field("kind"),
            field("policy"),
            field("network"),
            field("block"),
            field("decision_id"),
            field("title")
        );
        let _ = std::io::stdout().flush();
        axum::http::StatusCode::OK
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(io(Path::new("the devnet's alert listener")))?;
    let bound = listener
        .local_addr()
        .map_err(io(Path::new("the devnet's alert listener")))?;
    let app = axum::Router::new().route("/alerts", axum::routing::post(receive));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

fn print_ready(dir: &Path, d: &Deployed, alerts: std::net::SocketAddr) {
    let config = dir.join("guardian.toml");
    let c = config.display();
    println!(
        "devnet: anvil at {rpc} (chain {chain}), a block a second\n  Safe {safe} (2 of 3 local owners), GuardianModule {module} (set up by the `setup plan` batch {dir}/guardian-setup.json)\n  vault {vault} holding {DEPOSIT} dUSD, token {token}, price feed {feed}\n  bot {bot}, funded; its devnet key is in {dir}/bot.env\n  alerts from guardian are printed here (webhook http://{alerts}/alerts)\n\nnext, in another terminal (docs/deploy.md, \"Rehearse on a local chain\"):\n  guardian check --config {c}\n  guardian setup verify --config {c}\n  set -a; . {dir}/bot.env; set +a; guardian run --config {c}     # dry-run\n  guardian devnet drain --dir {dir} --percent 40\n  guardian history --config {c}\n  then set mode = \"enforce\" in {c}, run again, drain again: the pause lands\n\ndevnet ready (Ctrl-C stops it)",
        rpc = d.rpc,
        chain = d.chain_id,
        safe = d.safe,
        module = d.module,
        dir = dir.display(),
        vault = d.vault,
        token = d.token,
        feed = d.feed,
        bot = d.bot,
    );
    let _ = std::io::stdout().flush();
}

/// Keeps anvil running until SIGINT or SIGTERM.
async fn serve(anvil: AnvilInstance) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    println!("devnet: stopping anvil");
    drop(anvil);
}

/// Withdraws `percent` of the vault's assets, as the depositor, in one transaction.
async fn drain(args: DevnetDrainArgs) -> Result<(), DevnetError> {
    let path = args.dir.join("devnet.json");
    let text = std::fs::read_to_string(&path).map_err(|_| DevnetError::NotStarted(path.clone()))?;
    let d: Deployed = serde_json::from_str(&text)
        .map_err(|e| DevnetError::Drain(format!("{}: {e}", path.display())))?;
    if !(1..=100).contains(&args.percent) {
        return Err(DevnetError::Drain(format!(
            "--percent {} is not between 1 and 100",
            args.percent
        )));
    }
    let signer: PrivateKeySigner = d
        .depositor_key
        .parse()
        .map_err(|e| DevnetError::Drain(format!("the depositor key in {}: {e}", path.display())))?;
    let me = signer.address();
    let url = d
        .rpc
        .parse()
        .map_err(|_| DevnetError::Drain("the devnet RPC is not a URL".into()))?;
    let provider = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(signer))
        .connect_http(url)
        .erased();
    let vault = GuardedVault::new(d.vault, &provider);
    let drain_err = |e: alloy::contract::Error| {
        DevnetError::Drain(crate::source::chain::redact(&e.to_string()))
    };
    let assets = vault.totalAssets().call().await.map_err(drain_err)?;
    let amount = assets * U256::from(args.percent) / U256::from(100u64);
    let receipt = vault
        .withdraw(amount, me, me)
        .send()
        .await
        .map_err(drain_err)?
        .get_receipt()
        .await
        .map_err(|e| DevnetError::Drain(e.to_string()))?;
    if !receipt.status() {
        return Err(DevnetError::Drain(format!(
            "the withdrawal {} reverted (is the vault paused?)",
            receipt.transaction_hash
        )));
    }
    let _ = provider.get_block_number().await;
    println!(
        "drained {}% of the vault ({} of {} dUSD) in block {} (tx {})",
        args.percent,
        amount / U256::from(EXP18),
        assets / U256::from(EXP18),
        receipt.block_number.unwrap_or_default(),
        receipt.transaction_hash
    );
    Ok(())
}
