//! `lectern keys ...`: API keys, through a running server's `/v1/keys` (admin role), or —
//! `keys create` only — directly on the store of a server (`--data DIR` or `--database URL`),
//! to make the first key before a server that listens beyond loopback can start.
//!
//! The key text is printed once, alone on stdout (so `KEY=$(lectern keys create ...)` works),
//! with a note on stderr that it will not be shown again. Exit codes as `lectern model`.

use crate::client::{block_on, Client, ClientArgs, Failure};
use crate::output::{print_json, print_table, time_text};
use clap::{Args, Subcommand, ValueEnum};
use lectern_store::{Role, Store};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The actor the audit log names for keys made offline.
const OFFLINE_ACTOR: &str = "cli";

/// `lectern keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key; it is printed once, on stdout.
    Create(CreateArgs),
    /// List the keys (never their text).
    List,
    /// Revoke a key by its id: it stops working at once.
    Revoke {
        /// The key's id (the 12 hex digits after `lk_`)
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name for the key (who or what uses it)
    #[arg(long)]
    pub name: String,
    /// What the key may do
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Create the key offline in this data folder (its `lectern.db`), as `lectern serve --data`
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Create the key offline in this database (sqlite://PATH or postgres://...); wins over --data
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// A role on the command line.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum RoleArg {
    /// Everything: models, keys, the audit log
    Admin,
    /// Models and the repository, and inference
    Trainer,
    /// Inference only
    Client,
}

impl RoleArg {
    fn role(self) -> Role {
        match self {
            RoleArg::Admin => Role::Admin,
            RoleArg::Trainer => Role::Trainer,
            RoleArg::Client => Role::Client,
        }
    }
}

/// Runs `lectern keys ...`; returns the exit code.
pub fn run(args: KeysArgs) -> i32 {
    let KeysArgs { client, command } = args;
    block_on(&client, async {
        match command {
            KeysCommand::Create(create) if create.data.is_some() || create.database.is_some() => {
                create_offline(&create, client.json).await
            }
            KeysCommand::Create(create) => create_online(&Client::new(&client)?, &create).await,
            KeysCommand::List => list(&Client::new(&client)?).await,
            KeysCommand::Revoke { id } => revoke(&Client::new(&client)?, &id).await,
        }
    })
}

async fn create_online(api: &Client, args: &CreateArgs) -> Result<(), Failure> {
    let body = json!({ "name": args.name, "role": args.role.role().as_str() });
    let answer = api.send_json(Method::POST, &["v1", "keys"], &body).await?;
    let key = answer["key"].as_str().ok_or_else(|| Failure::Failed("the server's answer holds no key".into()))?;
    if api.json {
        print_json(&answer);
    } else {
        println!("{key}");
    }
    created_note(&answer, "");
    Ok(())
}

async fn create_offline(args: &CreateArgs, json: bool) -> Result<(), Failure> {
    let (url, place) = match (&args.database, &args.data) {
        (Some(url), _) => (url.clone(), "the database given with --database".to_string()),
        (None, Some(dir)) => {
            let file = dir.join("lectern.db");
            (format!("sqlite://{}", file.display()), file.display().to_string())
        }
        (None, None) => unreachable!("offline needs --data or --database"),
    };
    let name = args.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(Failure::Usage("a key needs a name of 1 to 128 characters".into()));
    }
    // Store errors never carry the URL (it may hold a password).
    let store = Store::open(&url).await.map_err(|e| Failure::Failed(format!("cannot open the database: {e}")))?;
    let (key, secret) = store
        .create_key(OFFLINE_ACTOR, name, args.role.role())
        .await
        .map_err(|e| Failure::Failed(format!("cannot create the key: {e}")))?;
    let answer = json!({
        "id": key.id, "name": key.name, "role": key.role.as_str(), "created_at_ms": key.created_at_ms, "key": secret,
    });
    if json {
        print_json(&answer);
    } else {
        println!("{secret}");
    }
    created_note(
        &answer,
        &format!(" in {place} (a server already running on it without any key starts requiring keys once restarted)"),
    );
    Ok(())
}

fn created_note(answer: &Value, place: &str) {
    eprintln!(
        "created API key {} '{}' (role {}){place}.\nThe key was printed once, on stdout: store it now, it will not be shown again.",
        answer["id"].as_str().unwrap_or_default(),
        answer["name"].as_str().unwrap_or_default(),
        answer["role"].as_str().unwrap_or_default(),
    );
}

async fn list(api: &Client) -> Result<(), Failure> {
    let answer = api.get(&["v1", "keys"]).await?;
    if api.json {
        print_json(&answer);
        return Ok(());
    }
    let keys = answer["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        eprintln!("no keys");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k["id"].as_str().unwrap_or_default().to_string(),
                k["name"].as_str().unwrap_or_default().to_string(),
                k["role"].as_str().unwrap_or_default().to_string(),
                time_text(k["created_at_ms"].as_i64()),
                time_text(k["revoked_at_ms"].as_i64()),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "ROLE", "CREATED (UTC)", "REVOKED (UTC)"], &rows);
    Ok(())
}

async fn revoke(api: &Client, id: &str) -> Result<(), Failure> {
    // A whole key given by mistake: use its id, and never send the secret part anywhere.
    let id = id.strip_prefix("lk_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id).unwrap_or(id);
    api.delete(&["v1", "keys", id]).await?;
    if api.json {
        print_json(&json!({ "revoked": id }));
    } else {
        println!("revoked key {id}");
    }
    Ok(())
}
