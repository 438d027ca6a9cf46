use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use dnslb::cli::{Cli, Command, check, control};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => dnslb::daemon::run(*args),
        Command::Check(args) => {
            let (problems, summary) = check(&args);
            for problem in &problems {
                eprintln!("{problem}");
            }
            if !problems.is_empty() {
                return ExitCode::FAILURE;
            }
            println!("{summary}: no problems");
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dnslb", &mut std::io::stdout());
            Ok(())
        }
        command => control(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dnslb: {error:#}");
            ExitCode::FAILURE
        }
    }
}
