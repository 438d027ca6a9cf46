use std::process::ExitCode;

use clap::Parser;
use dnslb::cli::{Cli, Command};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => dnslb::daemon::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dnslb: {error:#}");
            ExitCode::FAILURE
        }
    }
}
