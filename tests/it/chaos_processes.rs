//! `lake` attacked as scripts and schedulers attack it: processes killed with SIGKILL at
//! spread-out moments and retried, eight at once on the same lake, and the same file name for
//! different files. Every row must end up exactly once, nothing half-written visible, nothing
//! left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polars::prelude::*;
use serde_json::Value;

use crate::support::{files, lake, python_report};

fn lake_cmd(args: &[&str], work: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lake"));
    cmd.args(args)
        .env("LAKE_WORK_DIR", work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `lake ingest --lake LAKE --dataset orders FILE`.
fn ingest_orders(lake_dir: &Path, file: &Path) -> Vec<String> {
    [
        "ingest",
        "--json",
        "--lake",
        &lake_dir.display().to_string(),
        "--dataset",
        "orders",
        &file.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Ingests `file` as orders in a separate lake, one at a time: what a concurrent run must equal.
fn ingest_sequentially(lake_dir: &Path, file: &Path) {
    let (ok, _, stderr) = lake(&strs(&ingest_orders(lake_dir, file)));
    assert!(ok, "{stderr}");
}

fn generate(out: &Path, orders: usize, seed: u64, end_date: &str) -> Vec<Value> {
    let (ok, stdout, stderr) = lake(&[
        "generate",
        "--json",
        "--out",
        out.to_str().unwrap(),
        "--customers",
        "200",
        "--orders",
        &orders.to_string(),
        "--seed",
        &seed.to_string(),
        "--defect-rate",
        "0.05",
        "--end-date",
        end_date,
        "--days",
        "5",
    ]);
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The rows of a dataset's silver as sorted text: the contract's columns and the partition
/// values, without lineage (which names the lake and the time).
fn silver_rows(lake_dir: &Path, dataset: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for path in files(&lake_dir.join("processed").join(dataset)) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "only committed data files in a dataset's tree: {path:?}"
        );
        let partition = path
            .parent()
            .unwrap()
            .strip_prefix(lake_dir.join("processed").join(dataset))
            .unwrap()
            .display()
            .to_string();
        let df = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        let df = df.drop_many(["_ingested_at", "_source_file", "_batch_id"]);
        for i in 0..df.height() {
            rows.push(format!("{partition} {:?}", df.get_row(i).unwrap().0));
        }
    }
    rows.sort();
    rows
}

/// Nothing left by killed or overlapping runs: no scratch beyond lock files, no claims, no
/// pending records, no work directories.
fn assert_clean(lake_dir: &Path, work: &Path, what: &str) {
    let scratch: Vec<PathBuf> = files(&lake_dir.join("_tmp"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(scratch.is_empty(), "{what}: {scratch:?}");
    let left: Vec<PathBuf> = files(&lake_dir.join("claims"))
        .into_iter()
        .chain(
            files(&lake_dir.join("manifests"))
                .into_iter()
                .filter(|p| p.to_string_lossy().contains("_pending")),
        )
        .collect();
    assert!(left.is_empty(), "{what}: {left:?}");
    // The creators' lock file stays (empty, reused); no directory may.
    let work_left: Vec<PathBuf> = std::fs::read_dir(work)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &PathBuf| !p.to_string_lossy().ends_with(".creation.lock"))
        .collect();
    assert!(
        work_left.is_empty(),
        "{what}: work directories left: {work_left:?}"
    );
}

fn summaries(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_all(children: Vec<Child>) -> Vec<std::process::Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

#[test]
fn eight_ingests_of_the_same_file_at_once_make_one_batch_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, lake_dir, work) = (
        dir.path().join("in"),
        dir.path().join("lake"),
        dir.path().join("work"),
    );
    generate(&input, 3000, 11, "2026-11-21");
    let file = input.join("orders.csv");
    let args = ingest_orders(&lake_dir, &file);
    let children: Vec<Child> = (0..8)
        .map(|_| lake_cmd(&strs(&args), &work).spawn().unwrap())
        .collect();
    let mut fresh = 0;
    let mut batches = std::collections::BTreeSet::new();
    for out in wait_all(children) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = &summaries(&out.stdout)[0];
        fresh += usize::from(s["replayed"] == false);
        batches.insert(s["batch_id"].as_str().unwrap().to_owned());
    }
    assert_eq!((fresh, batches.len()), (1, 1), "one batch, written once");
    assert_eq!(files(&lake_dir.join("manifests/orders")).len(), 1);

    let sequential = dir.path().join("sequential");
    ingest_sequentially(&sequential, &file);
    assert_eq!(
        silver_rows(&lake_dir, "orders"),
        silver_rows(&sequential, "orders")
    );
    assert_clean(&lake_dir, &work, "same file ×8");
}

#[test]
fn different_files_of_the_same_name_at_once_are_each_their_own_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (lake_dir, work) = (dir.path().join("lake"), dir.path().join("work"));
    let mut expected = BTreeMap::new();
    let mut paths = Vec::new();
    for day in 0..8u64 {
        let input = dir.path().join(format!("day{day}"));
        let files = generate(
            &input,
            500 + 100 * day as usize,
            day,
            &format!("2026-11-{:02}", 10 + day),
        );
        let orders = files.iter().find(|f| f["dataset"] == "orders").unwrap();
        expected.insert(day, orders["expected"]["rows"].as_u64().unwrap());
        paths.push((day, input.join("orders.csv")));
    }
    // All started before any finishes: the names collide while every copy is in flight.
    let children: Vec<(u64, Child)> = paths
        .iter()
        .map(|(day, path)| {
            let args = ingest_orders(&lake_dir, path);
            (*day, lake_cmd(&strs(&args), &work).spawn().unwrap())
        })
        .collect();
    let mut batches = std::collections::BTreeSet::new();
    for (day, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = &summaries(&out.stdout)[0];
        assert_eq!(
            s["rows_read"].as_u64(),
            Some(expected[&day]),
            "day {day}: {s}"
        );
        batches.insert(s["batch_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(batches.len(), 8, "eight files, eight batches");
    let manifests = files(&lake_dir.join("manifests/orders"));
    assert_eq!(manifests.len(), 8, "{manifests:?}");
    for m in manifests {
        let m: Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
        assert!(expected.values().any(|&rows| m["rows_read"] == rows), "{m}");
    }
    assert_clean(&lake_dir, &work, "same name ×8");
}

#[test]
fn eight_ingests_into_shared_partitions_while_quality_loops_equal_a_sequential_run() {
    let dir = tempfile::tempdir().unwrap();
    let (lake_dir, work) = (dir.path().join("lake"), dir.path().join("work"));
    let sequential = dir.path().join("sequential");
    let mut exports = Vec::new();
    for seed in 0..8u64 {
        let input = dir.path().join(format!("export{seed}"));
        generate(&input, 400, 100 + seed, "2026-11-21");
        let renamed = input.join(format!("orders-{seed}.csv"));
        std::fs::rename(input.join("orders.csv"), &renamed).unwrap();
        exports.push(renamed);
    }
    let quality_args = ["quality", "--lake", lake_dir.to_str().unwrap()];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (stop, work, lake_arg) = (stop.clone(), work.clone(), lake_dir.display().to_string());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = lake_cmd(&["quality", "--lake", &lake_arg], &work)
                    .output()
                    .unwrap();
                assert!(
                    finished(&["quality"], &out),
                    "quality while ingests run: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    let children: Vec<Child> = exports
        .iter()
        .map(|f| {
            lake_cmd(&strs(&ingest_orders(&lake_dir, f)), &work)
                .spawn()
                .unwrap()
        })
        .collect();
    for out in wait_all(children) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(looping.join().unwrap() > 0);
    for f in &exports {
        ingest_sequentially(&sequential, f);
    }
    assert_eq!(
        silver_rows(&lake_dir, "orders"),
        silver_rows(&sequential, "orders")
    );
    // Every batch got its report once the loop caught up.
    let out = lake_cmd(&quality_args, &work).output().unwrap();
    assert!(out.status.success());
    assert_eq!(files(&lake_dir.join("quality/orders")).len(), 8);
    assert_clean(&lake_dir, &work, "8 ingests + quality");
}

/// Starts `args`, kills it after `delay` (SIGKILL), and says whether it was still running.
fn kill_after(args: &[&str], work: &Path, delay: Duration) -> bool {
    let mut child = lake_cmd(args, work).spawn().unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Whether a run of `lake <args>` finished its work: success, or for `quality` the exit code
/// that reports a failed batch (a verdict, not an error).
fn finished(args: &[&str], out: &std::process::Output) -> bool {
    out.status.success() || (args.first() == Some(&"quality") && out.status.code() == Some(3))
}

fn timed(args: &[&str], work: &Path) -> Duration {
    let start = Instant::now();
    let out = lake_cmd(args, work).output().unwrap();
    assert!(
        finished(args, &out),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

#[test]
fn ingest_killed_at_spread_out_moments_then_retried_holds_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, work) = (dir.path().join("in"), dir.path().join("work"));
    generate(&input, 20_000, 3, "2026-11-21");
    let file = input.join("orders.csv");
    let ingest = |lake_dir: &Path| -> Vec<String> {
        vec![
            "ingest".into(),
            "--json".into(),
            "--lake".into(),
            lake_dir.display().to_string(),
            "--dataset".into(),
            "orders".into(),
            // A small budget: spill files, several buckets, more moments to die in.
            "--memory-budget-mb".into(),
            "2".into(),
            file.display().to_string(),
        ]
    };
    let baseline = dir.path().join("baseline");
    let base_args = ingest(&baseline);
    let took = timed(
        &base_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &work,
    );
    let want = silver_rows(&baseline, "orders");
    let trials = 10;
    let mut killed_running = 0;
    for k in 0..trials {
        let lake_dir = dir.path().join(format!("lake{k}"));
        let args = ingest(&lake_dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // From the first instants to just before the end, evenly.
        let delay = took.mul_f64(f64::from(k) / f64::from(trials)) + Duration::from_millis(5);
        killed_running += usize::from(kill_after(&args, &work, delay));
        let out = lake_cmd(&args, &work).output().unwrap();
        assert!(
            out.status.success(),
            "retry after a kill at {delay:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(silver_rows(&lake_dir, "orders"), want, "kill at {delay:?}");
        assert_clean(&lake_dir, &work, &format!("kill at {delay:?}"));
        let seen = python_report("lake_integrity.py", &lake_dir);
        let table = &seen["processed/orders"];
        assert_eq!(
            table["duckdb_rows"].as_u64(),
            Some(want.len() as u64),
            "{seen}"
        );
        assert_eq!(table["pyarrow_rows"], table["duckdb_rows"], "{seen}");
        assert_eq!(table["repeats"], 0, "{seen}");
    }
    assert!(
        killed_running >= trials as usize / 2,
        "most kills must land mid-run"
    );
}

#[test]
fn aggregate_and_quality_killed_mid_run_leave_gold_readable_and_no_page_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (input, lake_dir, work) = (
        dir.path().join("in"),
        dir.path().join("lake"),
        dir.path().join("work"),
    );
    generate(&input, 4000, 8, "2026-11-21");
    let l = lake_dir.to_str().unwrap();
    for ds in ["customers", "orders", "payments"] {
        let f = input.join(format!("{ds}.csv"));
        let (ok, _, stderr) = lake(&[
            "ingest",
            "--json",
            "--lake",
            l,
            "--dataset",
            ds,
            f.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
    }
    let quality = ["quality", "--lake", l];
    let took = timed(&quality, &work).max(Duration::from_millis(50));
    // Fresh reports each time: kill the check at spread-out moments, then let it finish.
    for k in 0..6u32 {
        for f in files(&lake_dir.join("quality"))
            .into_iter()
            .chain(files(&lake_dir.join("alerts")))
        {
            std::fs::remove_file(f).unwrap();
        }
        kill_after(&quality, &work, took.mul_f64(f64::from(k) / 6.0));
        let out = lake_cmd(&quality, &work).output().unwrap();
        assert!(
            finished(&quality, &out),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            files(&lake_dir.join("quality")).len(),
            3,
            "every batch has its report"
        );
        let verdicts = files(&lake_dir.join("alerts/verdicts")).len();
        assert_eq!(verdicts, 3, "every verdict reached the alert stage");
    }
    let backfill = [
        "aggregate",
        "--lake",
        l,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ];
    let took = timed(&backfill, &work);
    for k in 0..8u32 {
        kill_after(&backfill, &work, took.mul_f64(f64::from(k) / 8.0));
        let seen = python_report("lake_integrity.py", &lake_dir);
        for table in ["gold/daily_kpis", "gold/payment_methods_daily"] {
            assert!(seen[table]["duckdb_rows"].as_u64() > Some(0), "{seen}");
            assert_eq!(
                seen[table]["pyarrow_rows"], seen[table]["duckdb_rows"],
                "{seen}"
            );
            assert_eq!(seen[table]["repeats"], 0, "{seen}");
        }
    }
    assert!(
        lake_cmd(&backfill, &work)
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_clean(&lake_dir, &work, "killed quality and aggregate");
}
