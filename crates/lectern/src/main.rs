//! The `lectern` binary: parses the command line and runs a command.

mod client;
mod commands;
mod listen;
mod output;
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
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Command {
    /// Serve every model of a model repository over V2 REST.
    Serve(settings::ServeArgs),
    /// Manage the models of a running server: push versions, list, show, set the default, delete.
    Model(commands::model::ModelArgs),
    /// Create, list and revoke API keys (`keys create` also works offline with --data/--database).
    Keys(commands::keys::KeysArgs),
    /// Upload, list, show and delete the datasets of a running server.
    Dataset(commands::dataset::DatasetArgs),
    /// Train a model on a running server and follow the job (`train status|cancel ID` too).
    Train(commands::train::TrainArgs),
    /// Scheduled jobs of a running server: list, show, run (--wait), pause, resume, history.
    Job(commands::job::JobArgs),
    /// Back up the database and the objects it names (models, datasets) while the server runs.
    Backup(commands::backup::BackupArgs),
    /// Restore a backup (checked whole first) into an empty database and object store.
    Restore(commands::backup::RestoreArgs),
    /// Join a cluster over NATS and serve the models placed on this machine.
    Worker(commands::worker::WorkerArgs),
    /// The cluster of a running gateway: workers, their models and load.
    Cluster(commands::cluster::ClusterArgs),
    /// The training process of one job (started by the server).
    #[command(hide = true)]
    TrainWorker { folder: std::path::PathBuf },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Model(args) => std::process::exit(commands::model::run(args)),
        Command::Keys(args) => std::process::exit(commands::keys::run(args)),
        Command::Dataset(args) => std::process::exit(commands::dataset::run(args)),
        Command::Train(args) => std::process::exit(commands::train::run(args)),
        Command::Job(args) => std::process::exit(commands::job::run(args)),
        Command::Backup(args) => std::process::exit(commands::backup::backup(args)),
        Command::Restore(args) => std::process::exit(commands::backup::restore(args)),
        Command::Worker(args) => commands::worker::run(args),
        Command::Cluster(args) => std::process::exit(commands::cluster::run(args)),
        Command::TrainWorker { folder } => std::process::exit(commands::train_worker::run(&folder)),
    }
}
