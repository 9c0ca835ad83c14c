//! The otpd command: `otpd serve` runs the engine; `otpd tenant add` creates API keys.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use otpd::app::Application;
use otpd::config::Settings;

#[derive(Parser)]
#[command(
    name = "otpd",
    version,
    about = "Issue, deliver and verify one-time passcodes."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the engine (embedded mode unless OTPD__AMQP__URL is set).
    Serve {
        /// A settings file applied over config/default.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage tenants and their API keys.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
}

#[derive(Subcommand)]
enum TenantAction {
    /// Create an API key for tenant NAME; the key is printed once, only its hash is stored.
    Add {
        name: String,
        /// A settings file applied over config/default.toml (for the store directory).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    otpd::telemetry::init_logging();
    match Cli::parse().command {
        Command::Serve { config } => serve(config),
        Command::Tenant {
            action: TenantAction::Add { name, config },
        } => {
            let settings = Settings::load(config.as_deref())?;
            let key = otpd::tenants::add_key(&settings.store.dir, &name)?;
            eprintln!(
                "Created an API key for tenant '{name}'. It is shown only this once; otpd keeps only its hash in {}.",
                otpd::tenants::keys_file(&settings.store.dir).display()
            );
            println!("{key}");
            Ok(())
        }
    }
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    actix_rt::System::new().block_on(async move {
        let app = Application::build(settings)
            .await
            .context("otpd could not start")?;
        app.run().await.context("the HTTP server failed")
    })
}
