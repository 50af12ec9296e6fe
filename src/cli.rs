//! The command line: `check`, `simulate`, `calibrate`, `explain`, `diff`, `watch`, `run`, `demo`,
//! `setup plan|verify`, `init`.
//!
//! Exit codes, for every command: 0 success; 1 the input is invalid (a policy,
//! a configuration, a trace row, a command-line argument or its value); 2 the
//! command could not run (a file that cannot be read, a chain that cannot be
//! reached). `main` maps clap's usage errors to 1.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::calibrate::{self, DetectorSpec, Request};
use crate::config::Config;
use crate::config::reader::Diagnostics;
pub use crate::devnet::{DevnetArgs, DevnetCommand, DevnetDrainArgs, DevnetUpArgs};
pub use crate::history::HistoryArgs;
pub use crate::init::InitArgs;
use crate::policy::model::{Direction, RateUnit};
use crate::policy::{Engine, PolicySet, load_policies};
use crate::replay;
pub use crate::setup::cmd::{SetupArgs, SetupCommand, SetupPlanArgs, SetupVerifyArgs};
use crate::source::trace::{TraceError, TraceReader};
use crate::units;

#[derive(Debug, Parser)]
#[command(
    name = "guardian",
    version,
    about = "An autonomous protocol guardian: watches a protocol's metrics and sends a guarded pause."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: human-readable lines, or one JSON object per line.
    /// The filter comes from GUARDIAN_LOG (default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration and its policies; print a summary.
    Check(CheckArgs),
    /// Watch the chain, evaluate the policies, and send guarded actions until stopped (SIGINT/SIGTERM).
    Run(RunArgs),
    /// The headline demo on a local anvil: a mempool-visible bridge drain paused ahead of itself.
    Demo(DemoArgs),
    /// Replay a recorded trace (`--trace`), or play a scenario file on anvil with and without the guardian.
    Simulate(SimulateArgs),
    /// Choose a detector threshold from a benign trace and a target false-alarm rate.
    Calibrate(CalibrateArgs),
    /// State each policy in plain language: what it watches, when it trips, what it does.
    Explain(ExplainArgs),
    /// State what changes between two versions of a policy set, in plain language.
    Diff(DiffArgs),
    /// Follow the configured chains live, print every trip (nothing is sent), optionally record a trace.
    Watch(WatchArgs),
    /// The GuardianModule set-up the protocol's Safe signs: plan its transactions, or verify it on chain.
    Setup(SetupArgs),
    /// Start a configuration: a commented guardian.toml, a starter policy and key settings (never a key).
    Init(InitArgs),
    /// Print the audit trail a `run` journal holds: trips, decisions, transactions.
    History(HistoryArgs),
    /// A local rehearsal chain: anvil, a Safe, a demo vault and the GuardianModule set up as the council would.
    Devnet(DevnetArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The guardian configuration: its networks and metric sources are watched.
    #[arg(long)]
    pub config: PathBuf,
    /// Watch only this network (default: every network some metric reads from).
    #[arg(long)]
    pub network: Option<String>,
    /// Policy files or folders (default: the configuration's `policies`; none: only record).
    #[arg(long = "policies")]
    pub policies: Vec<PathBuf>,
    /// Write every sample to this file in trace format v1 (replayable with `simulate`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Stop after this many blocks (default: until interrupted).
    #[arg(long)]
    pub blocks: Option<u64>,
    /// One JSON object per trip.
    #[arg(long)]
    pub json: bool,
}

/// Policy files or folders, given as arguments or with `--policies`.
#[derive(Debug, Args)]
pub struct PolicyPaths {
    /// Policy files or folders (default: the configuration's `policies`); also accepted as `--policies`.
    pub policies: Vec<PathBuf>,
    /// Policy files or folders, as every command takes them.
    #[arg(long = "policies", value_name = "PATH")]
    pub policies_flag: Vec<PathBuf>,
}

impl PolicyPaths {
    /// Both lists, the arguments first.
    pub fn all(&self) -> Vec<PathBuf> {
        [self.policies.as_slice(), &self.policies_flag].concat()
    }
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The guardian configuration (adds the actions' targets and the global mode).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub policies: PolicyPaths,
    /// Also say how each policy behaved on this trace.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// One JSON object per policy: id, severity, origin, warm-up and the plain-language text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policies before the change (file or folder; default: the old configuration's `policies`).
    pub old: Option<PathBuf>,
    /// The policies after the change (file or folder; default: the new configuration's `policies`).
    pub new: Option<PathBuf>,
    /// Also compare two guardian.toml files: actions (targets, functions, bounds, cooldowns), guard limits, executors, mode.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub config: Vec<PathBuf>,
    /// Exit 0 even when a change loosens the guard or a policy, or removes one (the reviewer accepts it).
    #[arg(long)]
    pub accept_loosening: bool,
    /// One JSON object: the policy diff text, the configuration changes, and what needs acceptance.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The guardian configuration (networks, metrics, actions, executors).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub policies: PolicyPaths,
    /// One JSON object: the policies (with their warm-up) and the configuration summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The anvil binary (installed by `npm ci`).
    #[arg(
        long,
        default_value = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    )]
    pub anvil: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The guardian configuration.
    #[arg(long)]
    pub config: PathBuf,
    /// Policy files or folders (default: the configuration's `policies`).
    #[arg(long = "policies")]
    pub policies: Vec<PathBuf>,
    /// Record every sample to this trace file (trace format v1), for replay.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// The journal file (overrides `[journal] path`); required in enforce mode.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Reload the policies when their files change (as SIGHUP does; invalid ones are refused).
    #[arg(long)]
    pub watch_policies: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A scenario file (simulations/<name>.toml): deploy, attack, and compare with and without the guardian.
    #[arg(conflicts_with_all = ["trace", "config", "policies"])]
    pub scenario: Option<PathBuf>,
    /// A trace in trace format v1 to replay.
    #[arg(long, required_unless_present = "scenario")]
    pub trace: Option<PathBuf>,
    /// Scenario: run against this node (an anvil, e.g. a fork started with `--order fees`) instead of spawning one.
    #[arg(long, requires = "scenario")]
    pub rpc: Option<String>,
    /// Scenario: the node's WebSocket endpoint (default: the --rpc URL with ws://).
    #[arg(long, requires = "rpc")]
    pub ws: Option<String>,
    /// Scenario: run the guardian's executor in dry-run and report what it would have sent.
    #[arg(long, requires = "scenario")]
    pub dry_run: bool,
    /// Scenario: the anvil binary (installed by `npm ci`).
    #[arg(
        long,
        requires = "scenario",
        default_value = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    )]
    pub anvil: PathBuf,
    /// The guardian configuration; metric and action names in policies are checked against it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Policy files or folders (default: the configuration's `policies`).
    #[arg(long = "policies")]
    pub policies: Vec<PathBuf>,
    /// One JSON object per trip, then a summary line (a scenario: one JSON report).
    #[arg(long)]
    pub json: bool,
    /// Trace: the largest step forward between two rows' block numbers; a larger one is a malformed row.
    #[arg(long, default_value_t = crate::source::trace::DEFAULT_MAX_BLOCK_JUMP)]
    pub max_block_jump: u64,
    /// Trace: also write a self-contained HTML backtest page (charts of each tripped policy).
    #[arg(long, requires = "trace")]
    pub report: Option<PathBuf>,
    /// Trace: metrics (or patterns with one `*`) whose positive rows are losses, marked on the report.
    #[arg(long, requires = "report")]
    pub losses: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DetectorArg {
    Threshold,
    Change,
    Rate,
    Sum,
    Deviation,
    Stale,
    Ewma,
    Cusum,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Up,
    Down,
    Either,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// A benign trace: every trip on it counts as a false alarm. Repeat for several traces.
    #[arg(long, required = true)]
    pub trace: Vec<PathBuf>,
    /// The metric to calibrate on, as named in the traces.
    #[arg(long)]
    pub metric: String,
    #[arg(long, value_enum)]
    pub detector: DetectorArg,
    /// Target false-alarm rate, e.g. "1/30d".
    #[arg(long = "false-alarms")]
    pub false_alarms: String,
    /// Which way is alarming (threshold: up is `>`, down is `<`).
    #[arg(long, value_enum, default_value = "up")]
    pub direction: DirectionArg,
    /// Alarms closer together than this count once (the policy's cooldown).
    #[arg(long, default_value = "1h")]
    pub cooldown: String,
    /// The condition's `for` (e.g. "2 blocks"), honoured when counting trips.
    #[arg(long = "for")]
    pub hold: Option<String>,
    /// Added to the calibrated threshold, as a percent of it.
    #[arg(long, default_value = "10%")]
    pub margin: String,
    /// ewma: half-life of the baseline, in samples.
    #[arg(long, default_value_t = 50.0)]
    pub halflife: f64,
    /// ewma, cusum: samples used to learn the baseline before the detector may trip.
    #[arg(long, default_value_t = 100)]
    pub warmup: u32,
    /// cusum: allowed drift k, in standard deviations.
    #[arg(long, default_value_t = 0.5)]
    pub slack: f64,
    /// change, rate, sum: the window, e.g. "10 blocks" or "5m".
    #[arg(long, default_value = "10 blocks")]
    pub window: String,
    /// rate: per block or per second.
    #[arg(long, default_value = "block")]
    pub per: String,
    /// sum: the metric the sum is a percent of (the threshold is then a percent).
    #[arg(long)]
    pub relative_to: Option<String>,
    /// deviation: the reference metric.
    #[arg(long)]
    pub reference: Option<String>,
    /// deviation: the most the two samples may be apart.
    #[arg(long)]
    pub max_skew: Option<String>,
    /// A synthetic attack to inject into the benign traces (repeatable):
    /// drain:<pct>%:<blocks>, jump:<pct>%, drop:<pct>%, burst:<amount>.
    #[arg(long = "attack")]
    pub attacks: Vec<String>,
    /// Injections of each attack per trace.
    #[arg(long, default_value_t = 10)]
    pub injections: u32,
    /// Blocks after an attack ends within which a trip counts as detecting it.
    #[arg(long, default_value_t = 50)]
    pub horizon: u64,
    /// The action the generated policy requests.
    #[arg(long, default_value = "alert")]
    pub action: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML page with the trade-off curve.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::say::set_json(cli.log_format == LogFormat::Json);
    match cli.command {
        Command::Check(args) => check(args),
        Command::Run(args) => run_cmd(args),
        Command::Demo(args) => demo_cmd(args),
        Command::Simulate(args) => simulate(args),
        Command::Calibrate(args) => calibrate_cmd(args),
        Command::Explain(args) => explain(args),
        Command::Diff(args) => diff(args),
        Command::Watch(args) => watch(args),
        Command::Setup(args) => crate::setup::cmd::run(args),
        Command::Init(args) => crate::init::run(args),
        Command::History(args) => crate::history::command(args),
        Command::Devnet(args) => crate::devnet::command(args),
    }
}

const INVALID: u8 = 1;
const CANNOT_RUN: u8 = 2;

fn cannot_run(message: impl std::fmt::Display) -> ExitCode {
    crate::say!("error: {message}");
    ExitCode::from(CANNOT_RUN)
}

fn invalid(diagnostics: &Diagnostics) -> ExitCode {
    crate::say::diagnostics(diagnostics);
    ExitCode::from(INVALID)
}

/// Loads the configuration (if any) and the policies, as `check` and `simulate` do.
fn load(config: Option<&Path>, policies: &[PathBuf]) -> Result<(Config, PolicySet), ExitCode> {
    for path in config
        .iter()
        .copied()
        .chain(policies.iter().map(PathBuf::as_path))
    {
        if !path.exists() {
            return Err(cannot_run(format!(
                "{}: no such file or folder",
                path.display()
            )));
        }
    }
    let config = match config {
        Some(path) => Config::load(path).map_err(|d| invalid(&d))?,
        None => Config::empty(),
    };
    let paths = if policies.is_empty() {
        config.policies.clone()
    } else {
        policies.to_vec()
    };
    if paths.is_empty() {
        return Err(cannot_run(
            "no policies: give a policy file or folder, or a --config whose [guardian] policies lists them",
        ));
    }
    let set = load_policies(&paths, &config).map_err(|d| invalid(&d))?;
    Ok((config, set))
}

fn check(args: CheckArgs) -> ExitCode {
    let policies = args.policies.all();
    let (config, set) = match load(args.config.as_deref(), &policies) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
    // A policy that could never trip live is an error, not a warning.
    if let Err(d) = crate::policy::warmup::blind_spots(&set, &config) {
        return invalid(&d);
    }
    // Templates without instances (no configuration) are listed as `id[*]`.
    let set = set.with_template_views();
    if args.json {
        return check_json(&config, &set);
    }
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "ok: {} policies over {} metrics",
        set.policies.len(),
        set.metric_names.len()
    );
    if config.is_declarative() {
        let _ = writeln!(
            out,
            "configuration {}: mode {}, {} networks, {} metric definitions, {} actions, {} executors",
            config.path.display(),
            config.mode,
            config.networks.len(),
            config.metrics.len(),
            config.actions.len(),
            config.executors.len()
        );
    } else {
        let _ = writeln!(
            out,
            "no configuration given: metric and action names were not cross-checked"
        );
    }
    for p in &set.policies {
        let _ = writeln!(
            out,
            "  {:<32} {:<8} {:<10} -> {:<20} cooldown {:<10} ({})",
            p.id,
            p.severity.as_str(),
            p.mode.most_cautious(config.mode),
            p.action,
            p.cooldown.to_string(),
            p.origin
        );
    }
    ExitCode::SUCCESS
}

/// `check --json`: one object with every policy (and its warm-up) and the configuration.
fn check_json(config: &Config, set: &PolicySet) -> ExitCode {
    let warmups = crate::policy::warmup::warmups(set);
    let policies: Vec<serde_json::Value> = set
        .policies
        .iter()
        .zip(&warmups)
        .map(|(p, w)| {
            serde_json::json!({
                "id": p.id, "severity": p.severity.as_str(),
                "mode": p.mode.most_cautious(config.mode).as_str(), "action": p.action,
                "cooldown": p.cooldown.to_string(), "origin": p.origin,
                "warm_up": { "blocks": w.blocks, "ms": w.millis },
            })
        })
        .collect();
    let configuration = config.is_declarative().then(|| {
        serde_json::json!({
            "path": config.path.display().to_string(), "mode": config.mode.as_str(),
            "networks": config.networks.len(), "metrics": config.metrics.len(),
            "actions": config.actions.len(), "executors": config.executors.len(),
        })
    });
    let v = serde_json::json!({
        "ok": true, "policies": policies, "metrics": set.metric_names, "configuration": configuration,
    });
    println!("{v}");
    ExitCode::SUCCESS
}

fn simulate(args: SimulateArgs) -> ExitCode {
    if let Some(path) = &args.scenario {
        return scenario_cmd(path, &args);
    }
    let Some(trace) = args.trace.clone() else {
        return cannot_run("give a scenario file, or a trace with --trace");
    };
    let (config, mut set) = match load(args.config.as_deref(), &args.policies) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match replay::instantiate_from_trace(&mut set, &trace) {
        Ok(()) => {}
        Err(e @ TraceError::Malformed { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(INVALID);
        }
        Err(e) => return cannot_run(e),
    }
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
    let report_set = args.report.as_ref().map(|_| set.clone());
    let mut trip_blocks: Vec<(String, u64)> = Vec::new();
    let mut engine = Engine::new(set, config.mode);
    let rules = crate::source::trace::BlockRules {
        max_jump: args.max_block_jump,
        ..Default::default()
    }
    .per_network(&config);
    let mut reader = match TraceReader::open(&trace) {
        Ok(r) => r.with_block_rules(rules),
        Err(e) => return cannot_run(e),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if !args.json {
        let _ = writeln!(
            out,
            "replaying {} through {} policies",
            trace.display(),
            engine.policies().policies.len()
        );
    }
    let json = args.json;
    let keep_trips = args.report.is_some();
    let result = replay::replay(&mut reader, &mut engine, &mut |trip| {
        if keep_trips {
            trip_blocks.push((trip.policy.clone(), trip.block));
        }
        let line = if json {
            replay::trip_json(&trip)
        } else {
            replay::trip_line(&trip)
        };
        let _ = writeln!(out, "{line}");
    });
    let summary = match result {
        Ok(s) => s,
        Err(e @ TraceError::Malformed { .. }) => {
            let _ = out.flush();
            crate::say!("error: {e}");
            return ExitCode::from(INVALID);
        }
        Err(e) => {
            let _ = out.flush();
            return cannot_run(e);
        }
    };
    if json {
        let _ = writeln!(out, "{}", summary.to_json());
    } else {
        let _ = writeln!(
            out,
            "\n{} samples read ({} used by policies), blocks {}..{} ({} read), {} trips",
            summary.samples_read,
            summary.samples_used,
            summary.first_block.map_or("-".into(), |b| b.to_string()),
            summary.last_block.map_or("-".into(), |b| b.to_string()),
            summary.blocks_read,
            summary.trips_total()
        );
        for (id, n) in &summary.trips {
            let _ = writeln!(out, "  {id:<32} {n} trips");
        }
    }
    let _ = out.flush();
    if let (Some(path), Some(set)) = (&args.report, &report_set)
        && let Err(e) = write_backtest(path, &trace, set, &summary, &trip_blocks, &args.losses)
    {
        return cannot_run(e);
    }
    if !summary.metrics_never_seen.is_empty() {
        crate::say!(
            "warning: the trace has no samples of {} (read by the policies); conditions on them never held",
            summary.metrics_never_seen.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// Writes the HTML backtest page for a finished replay.
fn write_backtest(
    path: &Path,
    trace: &Path,
    set: &PolicySet,
    summary: &replay::ReplaySummary,
    trips: &[(String, u64)],
    losses: &[String],
) -> Result<(), String> {
    let tripped: Vec<(usize, Vec<u64>)> = set
        .policies
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let blocks: Vec<u64> = trips.iter().filter(|t| t.0 == p.id).map(|t| t.1).collect();
            (!blocks.is_empty()).then_some((i, blocks))
        })
        .collect();
    let range = (
        summary.first_block.unwrap_or(0),
        summary.last_block.unwrap_or(0),
    );
    let bt =
        crate::report::backtest(trace, set, &tripped, range, losses).map_err(|e| e.to_string())?;
    std::fs::write(path, crate::report::backtest_page(&bt))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `simulate <scenario.toml>`: 0 when the expect block holds, 1 when not (or
/// the file or its policies are invalid), 2 on error.
fn scenario_cmd(path: &Path, args: &SimulateArgs) -> ExitCode {
    if !path.is_file() {
        return cannot_run(format!("{}: no such file", path.display()));
    }
    let scenario = match crate::scenario::load(path) {
        Ok(s) => s,
        Err(d) => return invalid(&d),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cannot_run(format!("cannot start the async runtime: {e}")),
    };
    let options = crate::scenario::Options {
        anvil_bin: args.anvil.clone(),
        rpc: args.rpc.clone(),
        ws: args.ws.clone(),
        dry_run: args.dry_run,
    };
    match runtime.block_on(crate::scenario::run(&scenario, &options)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return cannot_run(e),
                }
            } else {
                print!("{}", crate::scenario::report::render(&report, &scenario));
            }
            if report.holds {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(INVALID)
            }
        }
        Err(crate::scenario::ScenarioError::Config(found)) => invalid(&found),
        Err(e) => cannot_run(e),
    }
}

fn calibrate_request(args: &CalibrateArgs) -> Result<Request, String> {
    let direction = match args.direction {
        DirectionArg::Up => Direction::Up,
        DirectionArg::Down => Direction::Down,
        DirectionArg::Either => Direction::Either,
    };
    let false_alarms = units::parse_alarm_rate(&args.false_alarms)
        .map_err(|e| format!("--false-alarms: {e}; {}", e.hint))?;
    let cooldown =
        units::parse_window(&args.cooldown).map_err(|e| format!("--cooldown: {e}; {}", e.hint))?;
    let hold = args
        .hold
        .as_deref()
        .map(units::parse_hold)
        .transpose()
        .map_err(|e| format!("--for: {e}; {}", e.hint))?;
    let margin_pct = units::parse_percent(&args.margin)
        .map_err(|e| format!("--margin: {e}; {}", e.hint))?
        .0;
    if margin_pct < 0.0 {
        return Err("--margin must be 0% or more".into());
    }
    let window =
        || units::parse_window(&args.window).map_err(|e| format!("--window: {e}; {}", e.hint));
    let needs = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| format!("--detector {:?} needs {flag}", args.detector).to_lowercase())
    };
    let detector = match args.detector {
        DetectorArg::Threshold => DetectorSpec::Threshold,
        DetectorArg::Stale => DetectorSpec::Stale,
        DetectorArg::Ewma => {
            if args.halflife <= 0.0 || args.warmup < 2 {
                return Err("--halflife must be > 0 and --warmup at least 2".into());
            }
            DetectorSpec::Ewma {
                halflife: args.halflife,
                warmup: args.warmup,
            }
        }
        DetectorArg::Cusum => {
            if direction == Direction::Either {
                return Err("cusum is one-sided: use --direction up or down".into());
            }
            if hold.is_some() {
                return Err("--for cannot be used with cusum (it restarts after a trip); raise the threshold instead".into());
            }
            if args.slack < 0.0 || args.warmup < 2 {
                return Err("--slack must be >= 0 and --warmup at least 2".into());
            }
            DetectorSpec::Cusum {
                warmup: args.warmup,
                slack: args.slack,
            }
        }
        DetectorArg::Change => DetectorSpec::Change { window: window()? },
        DetectorArg::Rate => {
            let per = match args.per.as_str() {
                "block" => RateUnit::PerBlock,
                "second" => RateUnit::PerSecond,
                other => return Err(format!("--per `{other}`: use block or second")),
            };
            DetectorSpec::Rate {
                window: window()?,
                per,
            }
        }
        DetectorArg::Sum => DetectorSpec::Sum {
            window: window()?,
            relative_to: args.relative_to.clone(),
        },
        DetectorArg::Deviation => DetectorSpec::Deviation {
            reference: needs(&args.reference, "--reference")?,
            max_skew: args
                .max_skew
                .as_deref()
                .map(units::parse_window)
                .transpose()
                .map_err(|e| format!("--max-skew: {e}; {}", e.hint))?,
        },
    };
    for name in [
        Some(&args.metric),
        args.reference.as_ref(),
        args.relative_to.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if !crate::metrics::is_valid_metric_name(name) {
            return Err(format!("`{name}` is not a valid metric name"));
        }
    }
    let attacks = args
        .attacks
        .iter()
        .map(|a| calibrate::Attack::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Request {
        metric: args.metric.clone(),
        detector,
        direction,
        false_alarms,
        cooldown,
        hold,
        margin_pct,
        action: args.action.clone(),
        attacks,
        injections: args.injections,
        horizon_blocks: args.horizon,
    })
}

fn calibrate_cmd(args: CalibrateArgs) -> ExitCode {
    let request = match calibrate_request(&args) {
        Ok(r) => r,
        // A bad argument value is invalid input (exit 1), like a bad file.
        Err(message) => {
            crate::say!("error: {message}");
            return ExitCode::from(INVALID);
        }
    };
    let c = match calibrate::calibrate(&args.trace, &request) {
        Ok(c) => c,
        Err(calibrate::CalibrateError::Trace(e @ TraceError::Malformed { .. })) => {
            crate::say!("error: {e}");
            return ExitCode::from(INVALID);
        }
        Err(e) => return cannot_run(e),
    };
    for w in &c.warnings {
        eprintln!("WARNING: {w}");
    }
    if let Some(path) = &args.report {
        let page = crate::report::calibration_page(&c, &request);
        if let Err(e) = std::fs::write(path, page) {
            return cannot_run(format!("cannot write {}: {e}", path.display()));
        }
    }
    // Written with `let _ =`: a closed pipe (`| head -1`) ends the output, not the process.
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if args.json {
        let v = serde_json::json!({
            "metric": request.metric, "unit": request.detector.unit(), "threshold": c.threshold,
            "benign_threshold": c.benign_threshold, "margin_pct": request.margin_pct,
            "trips": c.trips, "allowed": c.allowed, "span_ms": c.span_ms, "samples": c.samples,
            "max_statistic": c.max_statistic, "false_alarms": request.false_alarms.to_string(),
            "rate_supported": c.rate_supported, "supported_rate": c.supported,
            "warnings": c.warnings, "trade_off": c.candidates,
            "injected_at": c.injected_at.iter().map(|(p, b)| serde_json::json!({"trace": p.display().to_string(), "block": b})).collect::<Vec<_>>(),
            "policy": c.policy_toml,
        });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(out, "{}", calibrate::report_text(&c, &request));
        let _ = writeln!(out, "{}", c.policy_toml);
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn explain(args: ExplainArgs) -> ExitCode {
    let policies = args.policies.all();
    let (config, mut set) = match load(args.config.as_deref(), &policies) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Some(trace) = &args.trace {
        match replay::instantiate_from_trace(&mut set, trace) {
            Ok(()) => {}
            Err(e @ TraceError::Malformed { .. }) => {
                eprintln!("error: {e}");
                return ExitCode::from(INVALID);
            }
            Err(e) => return cannot_run(e),
        }
    }
    // Printed, never run: templates without instances appear as `id[*]`.
    let view = set.with_template_views();
    let mut behaviour: Vec<Option<crate::explain::TraceBehaviour>> = vec![None; set.policies.len()];
    if let Some(trace) = &args.trace {
        let mut engine = Engine::new(set.clone(), config.mode);
        let mut reader = match TraceReader::open(trace) {
            Ok(r) => r,
            Err(e) => return cannot_run(e),
        };
        let mut seen: Vec<crate::explain::TraceBehaviour> = set
            .policies
            .iter()
            .map(|_| crate::explain::TraceBehaviour {
                trace: trace.display().to_string(),
                ..Default::default()
            })
            .collect();
        let ids: Vec<String> = set.policies.iter().map(|p| p.id.clone()).collect();
        let result = replay::replay(&mut reader, &mut engine, &mut |trip| {
            if let Some(i) = ids.iter().position(|id| *id == trip.policy) {
                let b = &mut seen[i];
                b.trips += 1;
                b.first.get_or_insert((trip.block, trip.time_ms));
                b.last = Some((trip.block, trip.time_ms));
            }
        });
        match result {
            Ok(_) => behaviour = seen.into_iter().map(Some).collect(),
            Err(e @ TraceError::Malformed { .. }) => {
                crate::say!("error: {e}");
                return ExitCode::from(INVALID);
            }
            Err(e) => return cannot_run(e),
        }
    }
    let mut out = io::stdout().lock();
    behaviour.resize(view.policies.len(), None);
    let warmups = crate::policy::warmup::warmups(&view);
    for ((p, b), w) in view.policies.iter().zip(&behaviour).zip(&warmups) {
        let text = crate::explain::explain_policy(&view, p, &config, b.as_ref());
        if args.json {
            let v = serde_json::json!({
                "id": p.id, "severity": p.severity.as_str(), "origin": p.origin,
                "action": p.action, "mode": p.mode.most_cautious(config.mode).as_str(),
                "warm_up": { "blocks": w.blocks, "ms": w.millis, "text": w.describe() },
                "text": text,
            });
            let _ = writeln!(out, "{v}");
        } else {
            let _ = writeln!(out, "{text}");
        }
    }
    ExitCode::SUCCESS
}

/// `diff`: exit 0 when nothing loosens or removes (or `--accept-loosening`), 1 otherwise.
fn diff(args: DiffArgs) -> ExitCode {
    let (old_config, new_config) = (args.config.first(), args.config.get(1));
    let side = |config: Option<&PathBuf>, policies: &Option<PathBuf>| {
        let paths: Vec<PathBuf> = policies.iter().cloned().collect();
        if config.is_none() && paths.is_empty() {
            return Err(cannot_run(
                "give the old and new policies, or --config OLD NEW",
            ));
        }
        load(config.map(PathBuf::as_path), &paths)
    };
    let (old_cfg, old) = match side(old_config, &args.old) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let (new_cfg, new) = match side(new_config, &args.new) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let text = crate::explain::diff(&old, &new);
    let changes = if args.config.is_empty() {
        Vec::new()
    } else {
        crate::review::config_changes(&old_cfg, &new_cfg)
    };
    let mut to_accept = crate::review::policy_loosenings(&text);
    to_accept.extend(
        changes
            .iter()
            .filter(|c| c.needs_acceptance())
            .map(|c| c.what.clone()),
    );
    if args.json {
        let v = serde_json::json!({
            "policies": text,
            "configuration": changes,
            "needs_acceptance": to_accept,
        });
        println!("{v}");
    } else {
        if text.is_empty() {
            println!("no changes to any policy");
        } else {
            print!("{text}");
        }
        if !args.config.is_empty() {
            if changes.is_empty() {
                println!("no changes to the configuration's actions, limits, executors or mode");
            } else {
                println!(
                    "CONFIGURATION\n{}",
                    crate::review::describe(&changes).trim_end()
                );
            }
        }
    }
    if to_accept.is_empty() || args.accept_loosening {
        return ExitCode::SUCCESS;
    }
    crate::say!(
        "{} change(s) loosen or remove protection; review them, then pass --accept-loosening:",
        to_accept.len()
    );
    for c in &to_accept {
        crate::say!("  {c}");
    }
    ExitCode::from(INVALID)
}

fn run_cmd(args: RunArgs) -> ExitCode {
    let (mut config, set) = match load(Some(&args.config), &args.policies) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // Refuse to run blind: a policy whose metric is never read can never trip.
    if let Err(d) = crate::policy::warmup::blind_spots(&set, &config) {
        return invalid(&d);
    }
    if let Err(message) = crate::journal::require_for_run(&mut config, args.journal.as_deref()) {
        return cannot_run(message);
    }
    if let Err(code) = crate::setup::cmd::verify_before_run(&config) {
        return code;
    }
    // ops: a key that cannot be loaded is reported and alerted; guardian still watches.
    let (keys, key_errors) = crate::observe::service::load_keys(&config);
    for e in &key_errors {
        crate::say!(
            "error: {e}; guardian watches and alerts, but cannot act through the executors that need this key"
        );
    }
    if let Err(code) = crate::setup::cmd::key_is_a_guardian(&config, &keys) {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cannot_run(format!("cannot start the async runtime: {e}")),
    };
    let mut options = crate::pipeline::RunOptions {
        record: args.record.clone(),
        ..Default::default()
    };
    let policy_paths = if args.policies.is_empty() {
        config.policies.clone()
    } else {
        args.policies.clone()
    };
    let result = runtime.block_on(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        // ops: metrics server, alert channels, policy reloads (src/observe/service.rs).
        let service =
            match crate::observe::service::start(&config, &|var| std::env::var(var).ok()).await {
                Ok(s) => s,
                Err(e) => return Err(e.to_string()),
            };
        for e in &key_errors {
            service.probe.key_unavailable(e);
        }
        if let Some(addr) = service.listening {
            crate::say!("serving /metrics, /healthz and /readyz on http://{addr}");
        }
        let (reload_tx, reload_rx) = tokio::sync::watch::channel(set.clone());
        let reloader = crate::observe::service::spawn_reloader(
            config.clone(),
            policy_paths,
            service.probe.clone(),
            reload_tx,
            args.watch_policies,
            cancel.clone(),
        );
        options.probe = service.probe.clone();
        options.reload = Some(reload_rx);
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            wait_for_shutdown_signal().await;
            crate::say!("shutting down: finishing the action in flight, if any");
            on_signal.cancel();
        });
        let (report_tx, mut reports) = tokio::sync::mpsc::channel(256);
        let printer = tokio::spawn(async move {
            while let Some(report) = reports.recv().await {
                println!("{}", report_line(&report));
            }
        });
        crate::say!(
            "guardian starting: {} policies, mode {}, {} networks",
            set.policies.len(),
            config.mode,
            config.networks.len()
        );
        let result =
            crate::pipeline::run(config, set, keys, options, Some(report_tx), cancel.clone()).await;
        let _ = printer.await;
        cancel.cancel();
        let _ = reloader.await;
        // Errors may quote an endpoint's URL (it can carry an API key): never printed or sent.
        let result = result.map_err(|e| crate::source::chain::redact(&e.to_string()));
        if let Err(e) = &result {
            service.probe.stopped(e);
        }
        service.stop(std::time::Duration::from_secs(10)).await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cannot_run(e),
    }
}

async fn wait_for_shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn report_line(report: &crate::pipeline::Report) -> String {
    use crate::pipeline::Report;
    match report {
        Report::Trip {
            trip,
            pending: None,
        } => replay::trip_line(trip),
        Report::Trip {
            trip,
            pending: Some(p),
        } => format!(
            "{}\n    on pending tx {} from {} (max fee {}, tip {})",
            replay::trip_line(trip),
            p.hash,
            p.from,
            units::DisplayGwei(p.max_fee_per_gas),
            p.max_priority_fee_per_gas
                .map_or("none".to_string(), |t| units::DisplayGwei(t).to_string())
        ),
        Report::ReorgedOut {
            policy,
            action,
            block,
        } => {
            format!(
                "REORG: the trip of {policy} (action {action}) at block {block} was decided on a block a reorg replaced"
            )
        }
        Report::Decision {
            decision_id,
            policy,
            action,
            block,
            outcome,
            ..
        } => {
            format!("decision {decision_id}: {policy} -> {action} at block {block}: {outcome}")
        }
        Report::Executed {
            decision_id,
            execution,
        } => format!(
            "decision {decision_id}: executed: {}",
            crate::pipeline::describe_execution(execution)
        ),
        Report::ExecutionFailed { decision_id, error } => {
            format!("decision {decision_id}: FAILED: {error}")
        }
    }
}

fn demo_cmd(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cannot_run(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(crate::demo::run(&args.anvil)) {
        Ok(story) => {
            print!("{story}");
            ExitCode::SUCCESS
        }
        Err(e) => cannot_run(e),
    }
}

fn watch(args: WatchArgs) -> ExitCode {
    let setup = match WatchSetup::open(&args) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cannot_run(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(setup.follow(args.json, args.blocks)) {
        Some(message) => cannot_run(message),
        None => ExitCode::SUCCESS,
    }
}

/// What `guardian watch` follows: the watchers, the engine (when there are
/// policies) and the recorder (with `--record`).
struct WatchSetup {
    watchers: Vec<crate::source::chain::Watcher>,
    engine: Option<Engine>,
    recorder: Option<crate::source::chain::record::Recorder<io::BufWriter<std::fs::File>>>,
}

impl WatchSetup {
    /// Loads the configuration and policies and opens the watchers and the trace.
    fn open(args: &WatchArgs) -> Result<Self, ExitCode> {
        if !args.config.exists() {
            return Err(cannot_run(format!(
                "{}: no such file",
                args.config.display()
            )));
        }
        let config = Config::load(&args.config).map_err(|d| invalid(&d))?;
        let policy_paths = if args.policies.is_empty() {
            &config.policies
        } else {
            &args.policies
        };
        let engine = match policy_paths.is_empty() {
            true => None,
            false => {
                let set = load_policies(policy_paths, &config).map_err(|d| invalid(&d))?;
                Some(Engine::new(set, config.mode))
            }
        };
        let networks = watched_networks(&config, args.network.as_ref());
        if networks.is_empty() {
            return Err(cannot_run(
                "no metric of the configuration reads from a network: nothing to watch",
            ));
        }
        let watchers = networks
            .iter()
            .map(|n| crate::source::chain::Watcher::new(&config, n, Default::default()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(cannot_run)?;
        let recorder = match &args.record {
            Some(path) => Some(open_recording(path, &args.config, &networks).map_err(cannot_run)?),
            None => None,
        };
        Ok(Self {
            watchers,
            engine,
            recorder,
        })
    }

    /// Runs the watchers until interrupted, `blocks` blocks, or a failure
    /// (returned, to be said): records every event, prints every trip.
    async fn follow(self, json: bool, blocks: Option<u64>) -> Option<String> {
        use crate::source::chain::record::TimeOrder;
        use crate::source::chain::{WatchEvent, redact};

        let Self {
            watchers,
            mut engine,
            mut recorder,
        } = self;
        let cancel = tokio_util::sync::CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let mut tasks = tokio::task::JoinSet::new();
        for w in watchers {
            tasks.spawn(w.run(tx.clone(), cancel.clone()));
        }
        drop(tx);
        let mut trips = PrintedTrips::new(json);
        let mut seen_blocks = 0u64;
        let mut failure = None;
        // The same time order the recorder applies, so a replay of the recording matches.
        let mut order = TimeOrder::default();
        loop {
            let event = tokio::select! {
                Ok(()) = tokio::signal::ctrl_c() => break,
                e = rx.recv() => e,
                Some(done) = tasks.join_next() => {
                    // A watcher stopped on its own: the guardian is no longer watching.
                    failure = Some(match done {
                        Ok(Ok(())) => "a watcher stopped".to_string(),
                        Ok(Err(e)) => redact(&e.to_string()),
                        Err(e) => format!("a watcher panicked: {e}"),
                    });
                    break;
                }
            };
            let Some(event) = event else { break };
            if let Some(r) = recorder.as_mut()
                && let Err(e) = r.record(&event)
            {
                failure = Some(format!("cannot write the trace: {e}"));
                break;
            }
            if let WatchEvent::Reorg(reorg) = &event {
                trips.say_reorg(reorg);
            }
            if let Some(engine) = engine.as_mut() {
                trips.judge(engine, &event, &mut order);
            }
            if matches!(event, WatchEvent::Block(_)) {
                seen_blocks += 1;
                if blocks.is_some_and(|n| seen_blocks >= n) {
                    break;
                }
            }
        }
        cancel.cancel();
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done
                && failure.is_none()
            {
                failure = Some(redact(&e.to_string()));
            }
        }
        if let Some(r) = recorder.as_mut()
            && let Err(e) = r.flush()
        {
            failure.get_or_insert(format!("cannot write the trace: {e}"));
        }
        failure
    }
}

/// `--network`, or every network some metric reads from.
fn watched_networks(config: &Config, only: Option<&String>) -> Vec<String> {
    if let Some(n) = only {
        return vec![n.clone()];
    }
    let read_from = |n: &&String| {
        config
            .metrics
            .iter()
            .any(|m| m.network.as_deref() == Some(n.as_str()) && m.source.is_some())
    };
    config.networks.keys().filter(read_from).cloned().collect()
}

/// A new trace file for `guardian watch --record`, its header naming the source.
fn open_recording(
    path: &Path,
    config: &Path,
    networks: &[String],
) -> Result<crate::source::chain::record::Recorder<io::BufWriter<std::fs::File>>, String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("{}: cannot create the trace: {e}", path.display()))?;
    let source = format!(
        "recorded live by `guardian watch` from {} (networks: {})",
        config.display(),
        networks.join(", ")
    );
    crate::source::chain::record::Recorder::new(io::BufWriter::new(file), &source)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The trips `guardian watch` prints, and the recent ones by block, to name
/// those a reorg invalidates.
struct PrintedTrips {
    json: bool,
    recent: std::collections::VecDeque<(u64, String)>,
}

impl PrintedTrips {
    /// Trips remembered for reorgs.
    const REMEMBERED: usize = 1024;

    fn new(json: bool) -> Self {
        Self {
            json,
            recent: std::collections::VecDeque::new(),
        }
    }

    fn say_reorg(&self, reorg: &crate::source::chain::Reorg) {
        crate::say!(
            "reorg: blocks after {} replaced ({} deep)",
            reorg.common_ancestor,
            reorg.replaced.len()
        );
        for (block, policy) in self.recent.iter().filter(|(b, _)| reorg.replaces(*b)) {
            crate::say!(
                "  the trip of `{policy}` at block {block} was decided on a reorged-out block"
            );
        }
    }

    /// Feeds the event's samples to the engine and prints each trip.
    fn judge(
        &mut self,
        engine: &mut Engine,
        event: &crate::source::chain::WatchEvent,
        order: &mut crate::source::chain::record::TimeOrder,
    ) {
        use crate::source::chain::WatchEvent;
        let pending = match event {
            WatchEvent::Pending(p) => Some(p),
            _ => None,
        };
        let mut out = io::stdout().lock();
        for (block, time_ms, metric, value) in event.samples() {
            let time_ms = order.next(time_ms);
            let mut on_trip = |trip: crate::decision::Trip| {
                let _ = writeln!(out, "{}", trip_text(&trip, pending, self.json));
                self.recent.push_back((trip.block, trip.policy.clone()));
                if self.recent.len() > Self::REMEMBERED {
                    self.recent.pop_front();
                }
            };
            match engine.metric_id(metric) {
                Some(metric) => {
                    let sample = crate::metrics::Sample {
                        block,
                        time_ms,
                        metric,
                        value,
                    };
                    engine.on_sample(sample, &mut on_trip)
                }
                None => engine.on_tick(block, time_ms, &mut on_trip),
            }
        }
        let _ = out.flush();
    }
}

/// A trip as `guardian watch` prints it. A trip on a pending effect carries
/// the transaction it anticipates, with the fees a response must outbid to be
/// ordered ahead of it.
fn trip_text(
    trip: &crate::decision::Trip,
    pending: Option<&crate::source::chain::PendingEffect>,
    json: bool,
) -> String {
    match (json, pending) {
        (true, Some(p)) => {
            let mut v = serde_json::to_value(trip).unwrap_or_default();
            v["pending_tx"] = serde_json::json!({
                "hash": p.tx.hash, "from": p.tx.from, "to": p.tx.to, "nonce": p.tx.nonce,
                "max_fee_per_gas": p.tx.max_fee_per_gas.to_string(),
                "max_priority_fee_per_gas": p.tx.max_priority_fee_per_gas.map(|f| f.to_string()),
            });
            v.to_string()
        }
        (true, None) => replay::trip_json(trip),
        (false, Some(p)) => format!(
            "{}\n    anticipates pending tx {} from {} (max fee {} wei, tip {} wei)",
            replay::trip_line(trip),
            p.tx.hash,
            p.tx.from,
            p.tx.max_fee_per_gas,
            p.tx.max_priority_fee_per_gas
                .map_or("-".to_string(), |f| f.to_string())
        ),
        (false, None) => replay::trip_line(trip),
    }
}
