//! The `guardian` binary: parse the command line, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors are invalid input: exit 1 (README, "Command line"); help and version exit 0.
    let cli = match guardian::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Colour only on a terminal: redirected logs stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUARDIAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    match cli.log_format {
        guardian::cli::LogFormat::Human => logs.init(),
        // One object per line; a decision's lines carry its span (decision_id, policy, block) under `span`.
        guardian::cli::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    guardian::cli::run(cli)
}
