//! Shared test support: the moto server, clients pointed at it, and helpers.

pub mod faulty;
pub mod moto;
pub mod postgres;
pub mod store_suite;

use std::path::Path;
use std::process::Command;

use polars::prelude::*;

/// The Python the tests run moto and their scripts with: `MOTO_PYTHON` (the Makefile sets it),
/// else the project's `.venv` that `make test` installs into, else `python3`. So a bare
/// `cargo test` after one `make test` finds moto, duckdb and pyarrow too.
pub fn python() -> String {
    if let Ok(python) = std::env::var("MOTO_PYTHON") {
        return python;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.is_file() {
        return venv.display().to_string();
    }
    "python3".into()
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The built-in contracts (`contracts/`) written to `dir`, each passed through
/// `edit(name, text)`, and read back as a registry: a test's contract change.
pub fn edited_contracts(
    dir: &Path,
    edit: impl Fn(&str, String) -> String,
) -> shoplake::contract::Registry {
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
    for name in ["customers", "orders", "payments"] {
        let text = std::fs::read_to_string(builtin.join(format!("{name}.toml"))).unwrap();
        std::fs::write(dir.join(format!("{name}.toml")), edit(name, text)).unwrap();
    }
    shoplake::contract::Registry::from_dir(dir).unwrap()
}

/// Asserts that every orders silver file of the lake at `root` has its key list, holding
/// exactly its keys, and that no list outlives its file (`silver::file_keys`).
pub fn assert_key_lists_match_the_files(root: &Path, context: &str) {
    use std::collections::{BTreeMap, BTreeSet};
    let relative = |p: &Path| p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let mut expected = BTreeMap::new();
    for path in files(&root.join("processed/orders")) {
        let key = relative(&path);
        let size = std::fs::metadata(&path).unwrap().len();
        let list = shoplake::silver::file_keys::list_key(&key, size).unwrap();
        let keys: BTreeSet<String> = read_parquet(&path)
            .column("order_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .map(str::to_owned)
            .collect();
        expected.insert(list, keys);
    }
    let mut listed: Vec<String> = files(&root.join("keys/orders"))
        .iter()
        .map(|p| relative(p))
        .collect();
    listed.sort();
    assert_eq!(
        listed.iter().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{context}: one key list per silver file, none left of a deleted one"
    );
    for (list, keys) in &expected {
        let bytes = std::fs::read(root.join(list)).unwrap();
        // Every key of the file, and one it does not hold, looked for.
        let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        wanted.push("O-none");
        let held: Option<BTreeSet<String>> = shoplake::silver::file_keys::held(&bytes, wanted)
            .map(|h| h.into_iter().map(str::to_owned).collect());
        assert_eq!(
            held.as_ref(),
            Some(keys),
            "{context}: {list} holds its file's keys"
        );
    }
}

/// Reads one Parquet file into a DataFrame.
pub fn read_parquet(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().unwrap()
}

/// Reads Parquet bytes into a DataFrame.
pub fn read_parquet_bytes(bytes: &[u8]) -> DataFrame {
    ParquetReader::new(std::io::Cursor::new(bytes.to_vec()))
        .finish()
        .unwrap()
}

/// A bucket name unique to one test.
pub fn bucket_name(test: &str) -> String {
    format!("{}-{}", test.replace('_', "-"), std::process::id())
}

/// Runs the `lake` binary: (success, stdout, stderr).
pub fn lake(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(args)
        .output()
        .expect("run lake");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs a Python script of `tests/it/` (with the Python `make test` set up) on a lake directory
/// and parses the JSON it prints.
pub fn python_report(script: &str, lake_dir: &Path) -> serde_json::Value {
    python_json(script, &[lake_dir.as_os_str()])
}

/// Runs a Python script of `tests/it/` with `args` and parses the JSON it prints.
pub fn python_json(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let path = format!("{}/tests/it/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script} failed (run `make test` to install duckdb and pyarrow):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
