//! `guardian init`: placeholder until written.
pub fn run(_args: crate::cli::InitArgs) -> std::process::ExitCode {
    std::process::ExitCode::from(2)
}
