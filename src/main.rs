//! The otpd command: `otpd serve` runs the engine; `otpd tenant add|list|rotate|revoke`
//! manages tenants' API keys.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use otpd::app::Application;
use otpd::config::Settings;
use otpd::telemetry::LogFormat;

/// jemalloc instead of the system allocator: fewer CPU cycles per OTP and a resident set
/// that does not grow with glibc's per-thread arenas (figures in BENCHMARKS.md). Its
/// settings are built in by .cargo/config.toml.
#[cfg(not(target_env = "msvc"))]
mod allocator {
    use otpd::telemetry::memory::{install_allocator_reader, AllocatorFigures};
    use tikv_jemalloc_ctl::{epoch, stats};

    #[global_allocator]
    static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// Makes /metrics report jemalloc's figures as `otpd_allocator_bytes`.
    pub fn report_in_metrics() {
        install_allocator_reader(figures);
    }

    fn figures() -> Option<AllocatorFigures> {
        // The figures are cached until the epoch moves on.
        epoch::advance().ok()?;
        let bytes = |read: tikv_jemalloc_ctl::Result<usize>| read.ok().map(|n| n as u64);
        Some(AllocatorFigures {
            allocated: bytes(stats::allocated::read())?,
            active: bytes(stats::active::read())?,
            resident: bytes(stats::resident::read())?,
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn jemalloc_is_built_with_otpds_settings() {
            // Set by .cargo/config.toml; without them the resident set grows by a third.
            let conf = tikv_jemalloc_ctl::config::malloc_conf::read().expect("jemalloc answers");
            assert!(
                conf.contains("narenas:1") && conf.contains("background_thread:true"),
                "jemalloc was built with '{conf}'"
            );
        }
    }
}

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
    /// List the tenants, their key ids and settings (never a key or a hash).
    List {
        /// A settings file applied over config/default.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Add a new key to tenant NAME, printed once; its other keys stay valid until revoked.
    Rotate {
        name: String,
        /// A settings file applied over config/default.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke key KEY_ID of tenant NAME (or all its keys); a running otpd refuses it at once.
    Revoke {
        name: String,
        /// The key's id, as `otpd tenant list` shows it (key_…).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        key_id: Option<String>,
        /// Revoke every key of the tenant.
        #[arg(long)]
        all: bool,
        /// Revoke the tenant's last valid key too (which cuts the tenant off).
        #[arg(long)]
        force: bool,
        /// A settings file applied over config/default.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    #[cfg(not(target_env = "msvc"))]
    allocator::report_in_metrics();
    match Cli::parse().command {
        Command::Serve { config } => serve(config),
        Command::Tenant { action } => {
            otpd::telemetry::init_logging(LogFormat::Text);
            tenant(action)
        }
    }
}

fn tenant(action: TenantAction) -> anyhow::Result<()> {
    use otpd::tenants::{self, Revoke};
    match action {
        TenantAction::Add { name, config } => {
            let settings = Settings::load(config.as_deref())?;
            let issued = tenants::add_key(&settings.store.dir, &name)?;
            eprintln!(
                "Created API key {} for tenant '{name}'. It is shown only this once; otpd keeps only its hash in {}.",
                issued.id,
                tenants::keys_file(&settings.store.dir).display()
            );
            println!("{}", issued.key);
        }
        TenantAction::List { config } => {
            let settings = Settings::load(config.as_deref())?;
            let listing = tenants::list_tenants(&settings.store.dir, &settings.tenants)?;
            print!("{}", tenants::render_listing(&listing));
        }
        TenantAction::Rotate { name, config } => {
            let settings = Settings::load(config.as_deref())?;
            let rotation = tenants::rotate_key(&settings.store.dir, &settings.tenants, &name)?;
            eprintln!(
                "Created API key {} for tenant '{name}'. It is shown only this once.",
                rotation.issued.id
            );
            if rotation.previous.is_empty() {
                eprintln!("The tenant had no other valid key.");
            } else {
                eprintln!(
                    "Its older keys stay valid until you revoke them: {}. Once its clients use the new key, run:",
                    rotation.previous.join(", ")
                );
                for id in &rotation.previous {
                    eprintln!("  otpd tenant revoke {name} {id}");
                }
            }
            println!("{}", rotation.issued.key);
        }
        TenantAction::Revoke {
            name,
            key_id,
            all,
            force,
            config,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let which = match key_id {
                Some(id) if !all => Revoke::Key(id),
                _ => Revoke::All,
            };
            let revocation =
                tenants::revoke_keys(&settings.store.dir, &settings.tenants, &name, &which, force)?;
            if revocation.revoked.is_empty() {
                println!("Tenant '{name}' had no valid key in the keys file to revoke.");
            } else {
                println!(
                    "Revoked {} of tenant '{name}'; a running otpd refuses it from its next request.",
                    revocation.revoked.join(", ")
                );
            }
            if revocation.remaining.is_empty() {
                eprintln!(
                    "Warning: tenant '{name}' has no valid key left; its requests are refused until `otpd tenant rotate {name}`."
                );
            } else {
                println!("Still valid: {}.", revocation.remaining.join(", "));
            }
        }
    }
    Ok(())
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref());
    // The settings name the log's format; settings that cannot be read are told in text.
    otpd::telemetry::init_logging(
        settings
            .as_ref()
            .map_or(LogFormat::Text, |settings| settings.log.format),
    );
    let settings = settings?;
    actix_rt::System::new().block_on(async move {
        let app = Application::build(settings)
            .await
            .context("otpd could not start")?;
        app.run().await.context("otpd stopped")
    })
}
