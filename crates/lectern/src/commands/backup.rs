//! `lectern backup` and `lectern restore`: the database, the objects it names and a manifest,
//! to and from a folder or an S3 prefix (lectern-backup). They read the storage settings as
//! `lectern serve` does (`--config`, `--data`, `--database`, `--objects` and their variables).
//!
//! Exit codes: 0 done (one summary line on stdout); 1 anything refused or failed, with
//! `error: ...` on stderr; 2 usage (clap).

use crate::output::size_text;
use crate::settings::{ServeArgs, ServeSettings};
use clap::Args;
use lectern_backup::{BackupError, BackupReport, RestoreReport};
use lectern_store::snapshot::{engine_name, SnapshotError};
use std::io::Write;
use std::path::PathBuf;

/// Where Lectern's state is: as `lectern serve` reads it.
#[derive(Args, Debug)]
pub struct StorageArgs {
    /// Config file (TOML) whose [storage] table applies
    #[arg(long, env = "LECTERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder [default: ./lectern-data]
    #[arg(long, env = "LECTERN_DATA")]
    pub data: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://DATA/lectern.db]
    #[arg(long, env = "LECTERN_DATABASE")]
    pub database: Option<String>,
    /// Object store: file://PATH or s3://BUCKET/PREFIX [default: file://DATA/objects]
    #[arg(long, env = "LECTERN_OBJECTS")]
    pub objects: Option<String>,
}

/// `lectern backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup: an empty (or new) folder, or s3://BUCKET/PREFIX
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub to: String,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `lectern restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup: a folder, or s3://BUCKET/PREFIX
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub from: String,
    /// Replace what the target database holds (models, keys, datasets, ...)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The database and object store URLs the settings name.
fn storage(args: StorageArgs) -> anyhow::Result<(String, String)> {
    let settings = ServeSettings::resolve(ServeArgs {
        config: args.config,
        data: args.data,
        database: args.database,
        objects: args.objects,
        ..Default::default()
    })?;
    Ok((settings.database, settings.objects))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Runs `lectern backup`; returns the exit code.
pub fn backup(args: BackupArgs) -> i32 {
    let outcome = (|| {
        let (database, objects) = storage(args.storage)?;
        let report = runtime()?.block_on(lectern_backup::backup(&database, &objects, &args.to));
        report.map_err(|e| anyhow::anyhow!(explain(e)))
    })();
    match outcome {
        Ok(report) => {
            println!("{}", backup_line(&report, &args.to));
            std::io::stdout().flush().ok();
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Runs `lectern restore`; returns the exit code.
pub fn restore(args: RestoreArgs) -> i32 {
    let outcome = (|| {
        let (database, objects) = storage(args.storage)?;
        let report = runtime()?.block_on(lectern_backup::restore(&database, &objects, &args.from, args.force));
        report.map_err(|e| anyhow::anyhow!(explain(e)))
    })();
    match outcome {
        Ok(report) => {
            println!("{}", restore_line(&report, &args.from));
            std::io::stdout().flush().ok();
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// An error's message, with what to do about it where that is not obvious.
fn explain(e: BackupError) -> String {
    match &e {
        BackupError::Snapshot(SnapshotError::NotEmpty(_)) => {
            format!("{e}; nothing was changed (restore --force replaces it)")
        }
        _ => e.to_string(),
    }
}

fn rows_text(tables: usize, rows: u64) -> String {
    format!("{tables} tables, {rows} rows")
}

fn backup_line(report: &BackupReport, to: &str) -> String {
    let info = &report.snapshot;
    let retried = if report.attempts > 1 { format!(", {} snapshots", report.attempts) } else { String::new() };
    format!(
        "backed up the {} database (schema {}: {}; {}) and {} objects ({}) to {to} in {:.1} s{retried}",
        engine_name(info.kind),
        info.schema_version,
        rows_text(info.tables.len(), info.rows()),
        size_text(report.database_bytes),
        report.objects,
        size_text(report.object_bytes),
        report.seconds,
    )
}

fn restore_line(report: &RestoreReport, from: &str) -> String {
    let info = &report.snapshot;
    let kept = report.objects - report.objects_written;
    let kept = if kept > 0 { format!(", {kept} already there") } else { String::new() };
    format!(
        "restored the {} database (schema {}: {}) and {} objects ({} written{kept}) from {from} \
         (made by lectern {} at {} UTC) in {:.1} s",
        engine_name(info.kind),
        info.schema_version,
        rows_text(info.tables.len(), info.rows()),
        report.objects,
        size_text(report.bytes_written),
        report.manifest.lectern,
        crate::output::time_text(Some(report.manifest.created_at_ms)),
        report.seconds,
    )
}
