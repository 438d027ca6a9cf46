use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
};

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
            writeln!(std::io::stdout(), "{summary}: no problems").map_err(Into::into)
        }
        Command::Detach { pin } => match dnslb::dataplane::remove_pinned(&pin) {
            Ok(true) => writeln!(
                std::io::stdout(),
                "detached the XDP program pinned in {} and removed its maps",
                pin.display()
            )
            .map_err(Into::into),
            Ok(false) => writeln!(
                std::io::stdout(),
                "no XDP link was pinned in {}; removed what was there",
                pin.display()
            )
            .map_err(Into::into),
            Err(error) => Err(error.into()),
        },
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a write that fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "dnslb", &mut script);
            std::io::stdout().write_all(&script).map_err(Into::into)
        }
        command => control(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`dnslb ... | head`): the output ends there.
        Err(error) if reader_gone(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dnslb: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `error` is a write to a pipe whose reader has closed it.
fn reader_gone(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
