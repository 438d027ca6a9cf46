use std::{io::IsTerminal, process::ExitCode};

use clap::{CommandFactory, Parser};
use dnslb::cli::{Cli, Command, LogFormat, check, control};
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); the `log`
/// records of the libraries (aya) come through too.
fn start_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let started = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(error) = started {
        eprintln!("dnslb: logging: {error}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    start_logging(match &cli.command {
        Command::Run(args) => args.log_format,
        _ => LogFormat::Text,
    });
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
        Command::Detach { pin } => match dnslb::dataplane::remove_pinned(&pin) {
            Ok(true) => {
                println!(
                    "detached the XDP program pinned in {} and removed its maps",
                    pin.display()
                );
                Ok(())
            }
            Ok(false) => {
                println!(
                    "no XDP link was pinned in {}; removed what was there",
                    pin.display()
                );
                Ok(())
            }
            Err(error) => Err(error.into()),
        },
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
