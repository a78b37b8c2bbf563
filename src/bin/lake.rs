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
    /// Recompute daily KPIs from silver into gold/daily_kpis/month=YYYY-MM/ and print them.
    Aggregate {
        #[arg(long)]
        lake: PathBuf,
        /// Only write months from this date's month on (default: every month).
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Only write months up to this date's month.
        #[arg(long)]
        to: Option<NaiveDate>,
        /// How many recent days to print.
        #[arg(long, default_value_t = 3)]
        days: usize,
    },
    /// The whole pipeline locally: ingest every export in INPUT_DIR (dataset from the file
    /// name: customers*, orders*, payments*), check quality, aggregate, print recent KPIs.
    Run {
        #[arg(long)]
        lake: PathBuf,
        input_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        days: usize,
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
        Command::Aggregate {
            lake,
            from,
            to,
            days,
        } => {
            let (kpis, months) = shoplake::local::aggregate(&lake, from, to).await?;
            emit(format!(
                "gold/daily_kpis: {} row(s); months written: {}",
                kpis.height(),
                months.join(", ")
            ))?;
            emit(shoplake::gold::kpis::format_recent(&kpis, days)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            lake,
            input_dir,
            days,
        } => {
            let settings = shoplake::config::ingest_settings_from_env()?;
            let mut failed = false;
            // Parents first, so references resolve in the quality gate.
            for dataset in ["customers", "orders", "payments"] {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&input_dir)
                    .with_context(|| format!("reading {}", input_dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file()
                            && p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with(dataset))
                    })
                    .collect();
                files.sort();
                for (file, outcome) in files.iter().zip(
                    shoplake::local::ingest_files(&lake, dataset, &files, settings.clone()).await?,
                ) {
                    match outcome {
                        Ok(o) => {
                            let m = &o.manifest;
                            emit(format!(
                                "ingest  {dataset:<9} {:<40} read {:>7} written {:>7} rejected {:>6} duplicates {:>5}{}",
                                file.file_name()
                                    .and_then(|n| n.to_str())
                                    .unwrap_or_default(),
                                m.rows_read,
                                m.rows_written,
                                m.rows_rejected,
                                m.duplicates_dropped,
                                m.error
                                    .as_deref()
                                    .map(|e| format!("  REJECTED: {e}"))
                                    .unwrap_or_default()
                            ))?;
                        }
                        Err(e) => {
                            failed = true;
                            eprintln!("error: {}: {e}", file.display());
                        }
                    }
                }
            }
            for run in shoplake::local::quality(&lake, None, chrono::Utc::now()).await? {
                let r = &run.report;
                emit(format!(
                    "quality {:<9} {} {:<4} {}",
                    r.dataset,
                    r.batch_id,
                    r.verdict.label(),
                    r.summary
                ))?;
            }
            let (kpis, months) = shoplake::local::aggregate(&lake, None, None).await?;
            emit(format!(
                "\ngold/daily_kpis: {} row(s) in month(s) {}; the last {days} day(s):",
                kpis.height(),
                months.join(", ")
            ))?;
            emit(shoplake::gold::kpis::format_recent(&kpis, days)?)?;
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
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
