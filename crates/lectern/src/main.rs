//! The `lectern` binary: parses the command line and runs a command.

mod commands;
mod settings;
mod tls;

use clap::{Parser, Subcommand};

/// Lectern serves machine-learning models over the Open Inference Protocol (V2 REST).
#[derive(Parser)]
#[command(name = "lectern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every model of a model repository over V2 REST.
    Serve(settings::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve::run(args),
    }
}
