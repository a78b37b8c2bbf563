//! `lake`: the pipeline on a local directory, no AWS needed. Same code paths as the Lambdas.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use shoplake::generate::{GenerateOptions, generate};
use shoplake::manifest::{BatchStatus, BatchSummary};
use shoplake::storage::LocalStore;

#[derive(Parser)]
#[command(
    name = "lake",
    version,
    about = "Contract-driven e-commerce lake, run locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write customers.csv, orders.csv and payments.csv with realistic values (and defects).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1_000)]
        customers: usize,
        #[arg(long, default_value_t = 5_000)]
        orders: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of rows (0 to 1) given a defect, duplicate or newer version.
        #[arg(long, default_value_t = 0.0)]
        defect_rate: f64,
        /// Last day of the export window, YYYY-MM-DD (default: yesterday, UTC: a daily export
        /// covers finished days).
        #[arg(long)]
        end_date: Option<NaiveDate>,
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Ingest CSV exports of one dataset into the lake directory; one JSON line per file.
    Ingest {
        #[arg(long)]
        lake: PathBuf,
        #[arg(long)]
        dataset: String,
        /// Re-process files whose batch was ingested before.
        #[arg(long)]
        force: bool,
        /// Memory budget per file in MiB (default: LAKE_MEMORY_BUDGET_MB, else 512).
        #[arg(long)]
        memory_budget_mb: Option<usize>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check batches against their quality rules; alerts go to outbox/ in the lake.
    Quality {
        #[arg(long)]
        lake: PathBuf,
        /// Check this batch (default: every batch without a report yet).
        #[arg(long)]
        batch: Option<String>,
        /// Let a failed batch be loaded anyway; needs --batch, --by and --reason.
        #[arg(long, requires_all = ["batch", "by", "reason"])]
        r#override: bool,
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Print the reports as JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print batches, the silver partition tree and sample quarantined rows.
    Show {
        #[arg(long)]
        lake: PathBuf,
        #[arg(long, default_value_t = 3)]
        rejects: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    shoplake::telemetry::init_cli();
    match run(Cli::parse()).await {
        Ok(code) => code,
        // A closed pipe (`lake … | head`) is the reader's choice, not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stdout, reporting a closed pipe as an error instead of panicking.
fn emit(line: impl std::fmt::Display) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Generate {
            out,
            customers,
            orders,
            seed,
            defect_rate,
            end_date,
            days,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&defect_rate),
                "--defect-rate must be between 0 and 1"
            );
            let end_date = end_date
                .unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Duration::days(1));
            let opts = GenerateOptions {
                customers,
                orders,
                seed,
                defect_rate,
                end_date,
                days,
            };
            for file in
                generate(&out, &opts).with_context(|| format!("writing to {}", out.display()))?
            {
                emit(serde_json::to_string(&file)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            lake,
            dataset,
            force,
            memory_budget_mb,
            files,
        } => {
            let mut settings = shoplake::config::ingest_settings_from_env()?;
            settings.force = force;
            if let Some(mb) = memory_budget_mb {
                settings.memory_budget_bytes = mb * 1024 * 1024;
            }
            let mut failed = false;
            let outcomes = shoplake::local::ingest_files(&lake, &dataset, &files, settings).await?;
            for (file, outcome) in files.iter().zip(outcomes) {
                match outcome {
                    Ok(o) => {
                        println!(
                            "{}",
                            serde_json::to_string(&BatchSummary::new(&o.manifest, o.replayed))?
                        );
                        if o.manifest.status == BatchStatus::Rejected {
                            failed = true;
                            eprintln!(
                                "error: {} rejected whole: {} (quarantined as {})",
                                file.display(),
                                o.manifest.error.as_deref().unwrap_or("unknown reason"),
                                o.manifest.quarantined_source.as_deref().unwrap_or("-")
                            );
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {}: {e}", file.display());
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Quality {
            lake,
            batch,
            r#override,
            by,
            reason,
            json,
        } => {
            let now = chrono::Utc::now();
            if r#override {
                let (batch, by, reason) = (
                    batch.unwrap_or_default(),
                    by.unwrap_or_default(),
                    reason.unwrap_or_default(),
                );
                let report =
                    shoplake::local::override_batch(&lake, &batch, &by, &reason, now).await?;
                emit(format!(
                    "{} {} {}: overridden by {by}; loadable: {}",
                    report.verdict.label(),
                    report.dataset,
                    report.batch_id,
                    report.loadable
                ))?;
                return Ok(ExitCode::SUCCESS);
            }
            for run in shoplake::local::quality(&lake, batch.as_deref(), now).await? {
                let r = &run.report;
                if json {
                    emit(serde_json::to_string(r)?)?;
                    continue;
                }
                emit(format!(
                    "{:<4} {:<9} {}  {}",
                    r.verdict.label(),
                    r.dataset,
                    r.batch_id,
                    r.summary
                ))?;
                for c in r
                    .checks
                    .iter()
                    .filter(|c| !matches!(c.status, shoplake::quality::CheckStatus::Pass))
                {
                    emit(format!(
                        "       {:<7} {:<40} {:<28} {}",
                        format!("{:?}", c.status).to_lowercase(),
                        c.display_name(),
                        c.observed_text,
                        c.threshold
                    ))?;
                }
                for email in &run.emails {
                    emit(format!(
                        "\n  --- alert email (outbox) ---\n  {}\n",
                        email.trim_end().replace('\n', "\n  ")
                    ))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { lake, rejects } => {
            let store =
                LocalStore::new(&lake).with_context(|| format!("opening {}", lake.display()))?;
            write!(
                std::io::stdout().lock(),
                "{}",
                shoplake::local::overview(&store, rejects).await?
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
