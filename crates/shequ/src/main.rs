//! The `shequ` command. Thin on purpose: everything it does is in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use shequ::{Cli, Command, Outcome};

/// mimalloc rather than the system's malloc: reading the log allocates several strings per
/// event, and glibc's malloc took a third of the time of `shequ verify`
/// (docs/adr/0009-mimalloc-global-allocator.md). Set here, in the binary only: the library
/// crates leave the choice to whoever links them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHEQU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime starts on any supported system");
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let result = runtime.block_on(shequ::run(cli, &mut out));
    // A reader that went away early (`shequ log | head`) is not an error.
    let _ = out.flush();
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("shequ: error: {}", shequ::chain(&error));
            ExitCode::FAILURE
        }
    }
}
