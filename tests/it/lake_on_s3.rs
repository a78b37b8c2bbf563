//! `lake --lake s3://bucket[/prefix]`: the on-call commands against the bucket itself (moto on
//! 127.0.0.1), every `lake` command of docs/runbook.md as written there, and no silent local
//! write for a location that is not a directory or an S3 bucket.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{bucket_name, lake, moto, postgres};

/// `lake` with the standard AWS configuration pointed at moto.
fn lake_aws(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &moto::server().endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("GLUE_DATABASE")
        .env_remove("ALERT_TOPIC_ARN")
        .output()
        .expect("run lake")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let out = lake_aws(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "lake {args:?}: {stderr}\n{stdout}");
    stdout
}

/// Generates a small shop and ingests it into `lake` (an s3:// location); the batch ids.
fn ingest_shop(dir: &Path, location: &str) -> Vec<String> {
    let input = dir.join("in");
    let (done, _, stderr) = lake(&[
        "generate",
        "--json",
        "--out",
        input.to_str().unwrap(),
        "--customers",
        "200",
        "--orders",
        "600",
        "--seed",
        "3",
        "--defect-rate",
        "0.01",
        "--end-date",
        "2026-11-21",
        "--days",
        "3",
    ]);
    assert!(done, "{stderr}");
    ["customers", "orders", "payments"]
        .iter()
        .map(|d| {
            let file = input.join(format!("{d}.csv"));
            let stdout = ok(&[
                "ingest",
                "--json",
                "--lake",
                location,
                "--dataset",
                d,
                file.to_str().unwrap(),
            ]);
            let summary: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
            assert_eq!(summary["status"], "succeeded", "{summary}");
            summary["batch_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn on_call_commands_run_against_the_bucket() {
    let bucket = bucket_name("lake-on-s3");
    let s3 = moto::server().bucket(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let location = format!("s3://{bucket}/prod");
    let batches = ingest_shop(dir.path(), &location);

    // Everything landed under the prefix, in the bucket: nothing in a local directory.
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.iter().all(|k| k.starts_with("prod/")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("prod/processed/orders/")),
        "{keys:?}"
    );
    assert!(!Path::new("s3:").exists());

    // Re-ingesting a raw object of the lake by its URI replays it.
    let raw = keys
        .iter()
        .find(|k| k.starts_with("prod/raw/orders/"))
        .unwrap();
    let again = ok(&[
        "ingest",
        "--json",
        "--lake",
        &location,
        "--dataset",
        "orders",
        &format!("s3://{bucket}/{raw}"),
    ]);
    assert!(again.contains("\"replayed\":true"), "{again}");

    let shown = ok(&["show", "--lake", &location]);
    assert!(shown.contains(&batches[1]), "{shown}");

    // Quality: a verdict (0, or 3 for a failed batch), then an override of one batch.
    let out = lake_aws(&["quality", "--lake", &location, "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{:?}", text(&out));
    let overridden = ok(&[
        "quality",
        "--lake",
        &location,
        "--batch",
        &batches[1],
        "--override",
        "--by",
        "oncall",
        "--reason",
        "checked by hand",
        "--json",
    ]);
    let report: Value = serde_json::from_str(overridden.trim()).unwrap();
    assert_eq!(report["loadable"], true);
    assert_eq!(report["override"]["by"], "oncall");

    // A backfill of November, then the SQL a load would send, naming the bucket's objects.
    ok(&[
        "aggregate",
        "--lake",
        &location,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ]);
    let gold = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("prod/gold/daily_kpis/")
        .send()
        .await
        .unwrap();
    assert!(gold.key_count().unwrap_or_default() > 0);
    let sql = ok(&["load", "--lake", &location, "--dry-run"]);
    assert!(
        sql.contains(&format!("s3://{bucket}/prod/loads/orders/")),
        "COPY reads the manifests in the bucket: {sql}"
    );
}

#[test]
fn a_location_that_is_neither_a_directory_nor_s3_is_an_error_not_a_local_write() {
    let dir = tempfile::tempdir().unwrap();
    for location in [
        "s3:/bucket",
        "s3:bucket",
        "gs://bucket/lake",
        "s3://",
        "https://x/y",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lake"))
            .current_dir(dir.path())
            .args(["show", "--lake", location])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{location}: {stderr}");
        assert!(stderr.contains("--lake"), "{location}: {stderr}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{location} made something locally"
        );
    }
}

/// Every `lake …` command of the runbook, placeholders filled in, runs against the bucket.
#[tokio::test]
async fn every_lake_command_of_the_runbook_runs_against_the_bucket() {
    let runbook =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbook.md"))
            .unwrap();
    let commands: Vec<&str> = runbook
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("lake "))
        .collect();
    assert!(commands.len() >= 5, "{commands:?}");

    let bucket = bucket_name("runbook");
    moto::server().bucket(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let location = format!("s3://{bucket}");
    let batches = ingest_shop(dir.path(), &location);
    ok(&["quality", "--lake", &location]);
    let url = postgres::server().fresh_database("runbook").await;
    let batch = &batches[1];
    for command in commands {
        // A failure to retry or skip: recorded as the load function records one.
        let failure = serde_json::json!({
            "dataset": "orders", "batch_id": batch, "error": "value too long",
            "statement": "COPY shoplake.orders", "attempts": 3,
            "first_failed_at": "2026-11-21T02:00:00Z", "last_failed_at": "2026-11-22T02:00:00Z",
        });
        moto::server()
            .s3()
            .put_object()
            .bucket(&bucket)
            .key(format!("runs/load_failures/orders/{batch}.json"))
            .body(serde_json::to_vec(&failure).unwrap().into())
            .send()
            .await
            .unwrap();
        let filled = command
            .replace("<bucket>", &bucket)
            .replace("<dataset>", "orders")
            .replace("<batch_id>", batch)
            .replace("<you>", "oncall")
            .replace("<why>", "runbook test")
            .replace("<url>", &url);
        assert!(
            !filled.contains('<'),
            "a placeholder the test does not know: {command}"
        );
        let args = shell_words(&filled);
        let args: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
        let out = lake_aws(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "runbook command failed: {filled}\n{:?}",
            text(&out)
        );
    }
}

/// Splits a command line as a shell would, for the runbook's simple quoting (double quotes).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}
