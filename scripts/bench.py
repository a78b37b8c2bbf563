"""`make bench`: our ingest against DuckDB on the same orders exports, measured in one run.

For each size, runs alternate (ours, DuckDB, DuckDB, ours, ...) so drift on a shared machine
hits both alike. Each run is a fresh process measured from outside: wall time, and peak RSS from
wait4(2) of that very child. Reports medians and the ratios ours/DuckDB, checks that both wrote
the same rows, then measures the Lambda zips and the cold start to the first runtime API poll.

  bench.py --lake BIN --functions-dir DIR --zips-dir DIR [--sizes 1000000,10000000] [--runs 3]
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024


def run_measured(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak RSS MiB, stdout). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out_chunks = []
    err_chunks = []
    readers = [threading.Thread(target=lambda s=s, c=c: c.append(s.read()))
               for s, c in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                 f"{b''.join(err_chunks).decode(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss / 1024, b"".join(out_chunks).decode()


def tree_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*.parquet"))


def ensure_export(lake_bin, data_dir, rows):
    """A clean orders export of `rows` rows, generated once and kept between runs."""
    target = data_dir / f"orders-{rows}.csv"
    if target.exists():
        return target
    scratch = data_dir / f"gen-{rows}"
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"  generating {rows:,} orders (cached in {data_dir}) ...", flush=True)
    subprocess.run([lake_bin, "generate", "--out", scratch, "--orders", str(rows),
                    "--customers", str(max(1000, rows // 20)), "--defect-rate", "0",
                    "--days", "30", "--end-date", "2026-11-21", "--seed", "7"],
                   check=True, stdout=subprocess.DEVNULL)
    (scratch / "orders.csv").rename(target)
    shutil.rmtree(scratch)
    return target


def ours(lake_bin, csv, work, budget_mb, threads):
    """`lake ingest` (the code the ingest Lambda runs) on a fresh lake holding only the export."""
    lake = work / "ours"
    shutil.rmtree(lake, ignore_errors=True)
    raw = lake / "raw" / "orders"
    raw.mkdir(parents=True)
    os.link(csv, raw / csv.name)  # already in raw/: nothing is copied before the ingest
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads), LAKE_WORK_DIR=str(work / "spill"),
               RUST_LOG="error")
    (work / "spill").mkdir(exist_ok=True)
    wall, rss, out = run_measured([lake_bin, "ingest", "--lake", lake, "--dataset", "orders",
                                   "--memory-budget-mb", str(budget_mb), raw / csv.name], env)
    summary = json.loads(out.splitlines()[0])
    assert summary["status"] == "succeeded", summary
    return {"wall_s": wall, "peak_rss_mib": rss, "rows_written": summary["rows_written"],
            "rows_rejected": summary["rows_rejected"],
            "output_bytes": tree_bytes(lake / "processed")}, lake / "processed" / "orders"


def duckdb_peer(csv, work, threads):
    out = work / "duckdb"
    shutil.rmtree(out, ignore_errors=True)
    wall, rss, stdout = run_measured([sys.executable, HERE / "bench_duckdb.py", csv, out,
                                      str(threads)])
    return {"wall_s": wall, "peak_rss_mib": rss, "rows_written": json.loads(stdout)["rows_written"],
            "output_bytes": tree_bytes(out)}, out


def same_rows(ours_dir, duck_dir):
    """Both outputs hold exactly the same rows (values compared, partition columns included).

    Compared in a child process: on Linux a child's peak RSS starts from its parent's RSS at
    fork, so a comparison run here would inflate every measurement that follows it."""
    out = subprocess.run([sys.executable, __file__, "--same-rows", ours_dir, duck_dir],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["equal"], r["only_ours"], r["only_duckdb"]


def compare_outputs(ours_dir, duck_dir):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    projection = """order_id, customer_id, epoch_us(order_ts) AS order_ts, status, currency,
                    CAST(total_amount AS VARCHAR) AS total_amount, item_count,
                    epoch_us(updated_at) AS updated_at, CAST(order_date AS VARCHAR) AS order_date,
                    customer_region"""
    a = f"SELECT {projection} FROM read_parquet('{ours_dir}/**/*.parquet', hive_partitioning = true)"
    b = f"SELECT {projection} FROM read_parquet('{duck_dir}/**/*.parquet', hive_partitioning = true)"
    only_ours = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
    only_duck = con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
    print(json.dumps({"equal": only_ours == 0 and only_duck == 0, "only_ours": only_ours,
                      "only_duckdb": only_duck}))


def summarize(runs):
    walls = [r["wall_s"] for r in runs]
    rss = [r["peak_rss_mib"] for r in runs]
    return {"median_wall_s": statistics.median(walls), "walls_s": walls,
            "median_peak_rss_mib": statistics.median(rss), "max_peak_rss_mib": max(rss),
            "rows_written": runs[-1]["rows_written"], "output_bytes": runs[-1]["output_bytes"]}


class RuntimeApi(BaseHTTPRequestHandler):
    """Just enough of the Lambda runtime API to see the first poll for an invocation."""
    first_poll = None

    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next") and RuntimeApi.first_poll is None:
            RuntimeApi.first_poll = time.perf_counter()
        # No event is ever sent: the poll stays open until the process is stopped.
        time.sleep(30)

    def log_message(self, *args):
        pass


def init_times(functions_dir, functions, repeats):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    env = dict(os.environ,
               AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024", AWS_LAMBDA_LOG_STREAM_NAME="bench",
               AWS_LAMBDA_LOG_GROUP_NAME="bench", AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               # Never contacted during init; keeps any stray call on this machine.
               AWS_ENDPOINT_URL="http://127.0.0.1:9",
               LAKE_BUCKET="bench", ALERT_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:bench",
               REDSHIFT_WORKGROUP="bench", REDSHIFT_COPY_ROLE_ARN="arn:aws:iam::123456789012:role/b")
    results = {}
    for fn in functions:
        samples = []
        for _ in range(repeats):
            RuntimeApi.first_poll = None
            start = time.perf_counter()
            proc = subprocess.Popen([functions_dir / fn], env=dict(env, AWS_LAMBDA_FUNCTION_NAME=fn),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while RuntimeApi.first_poll is None and proc.poll() is None \
                    and time.perf_counter() - start < 10:
                time.sleep(0.0005)
            polled = RuntimeApi.first_poll
            proc.kill()
            _, err = proc.communicate()
            if polled is None:
                sys.exit(f"{fn} never polled the runtime API:\n{err.decode()[-2000:]}")
            samples.append((polled - start) * 1000)
        results[fn] = {"median_ms": statistics.median(samples), "samples_ms": samples}
    server.shutdown()
    return results


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "os": platform.platform(), "python": platform.python_version()}


def main():
    if sys.argv[1:2] == ["--same-rows"]:
        return compare_outputs(*sys.argv[2:4])
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True, type=Path)
    ap.add_argument("--functions-dir", required=True, type=Path)
    ap.add_argument("--zips-dir", required=True, type=Path)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-mb", type=int, default=819)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    # Not imported: this process must stay small (see same_rows).
    from importlib.metadata import version

    report = {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "threads": args.threads,
              "memory_budget_mib": args.budget_mb, "duckdb_version": version("duckdb"),
              "runs_per_size": args.runs, "sizes": []}
    for rows in [int(s) for s in args.sizes.split(",")]:
        csv = ensure_export(args.lake, args.data_dir, rows)
        csv_mb = csv.stat().st_size / 1e6
        print(f"\n{rows:,} rows, {csv_mb:.0f} MB of CSV: {args.runs} runs each, alternating",
              flush=True)
        mine, theirs = [], []
        for i in range(args.runs):
            order = ("ours", "duckdb") if i % 2 == 0 else ("duckdb", "ours")
            for who in order:
                if who == "ours":
                    result, ours_dir = ours(args.lake, csv, args.work_dir, args.budget_mb,
                                            args.threads)
                    mine.append(result)
                else:
                    result, duck_dir = duckdb_peer(csv, args.work_dir, args.threads)
                    theirs.append(result)
                print(f"  run {i + 1} {who:<6} {result['wall_s']:7.2f} s  "
                      f"{result['peak_rss_mib']:7.0f} MiB", flush=True)
        equal, only_ours, only_duck = same_rows(ours_dir, duck_dir)
        a, b = summarize(mine), summarize(theirs)
        for s in (a, b):
            s["throughput_mb_s"] = csv_mb / s["median_wall_s"]
        entry = {"rows": rows, "csv_bytes": csv.stat().st_size, "ours": a, "duckdb": b,
                 "throughput_ratio_ours_over_duckdb": a["throughput_mb_s"] / b["throughput_mb_s"],
                 "peak_rss_ratio_ours_over_duckdb": a["max_peak_rss_mib"] / b["max_peak_rss_mib"],
                 "same_rows": equal, "rows_only_in_ours": only_ours,
                 "rows_only_in_duckdb": only_duck}
        report["sizes"].append(entry)
        shutil.rmtree(args.work_dir / "ours", ignore_errors=True)
        shutil.rmtree(args.work_dir / "duckdb", ignore_errors=True)
        if not equal:
            print(f"  OUTPUTS DIFFER: {only_ours} rows only in ours, {only_duck} only in DuckDB")

    functions = sorted(p.name for p in (HERE.parent / "functions").iterdir()
                       if (p / "Cargo.toml").exists())
    report["zips"] = {fn: (args.zips_dir / fn / "bootstrap.zip").stat().st_size
                      for fn in functions}
    report["init"] = init_times(args.functions_dir, functions, repeats=10)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten: {args.out}")
    if not all(s["same_rows"] for s in report["sizes"]):
        sys.exit("ours and DuckDB wrote different rows")


def print_table(r):
    m = r["machine"]
    print(f"\n== ingest, clean orders export: medians of {r['runs_per_size']} runs, "
          f"{r['threads']} threads, memory budget {r['memory_budget_mib']} MiB")
    print(f"   {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; DuckDB {r['duckdb_version']}")
    head = (f"{'rows':>11} {'CSV MB':>7} | {'who':<6} {'wall s':>7} {'MB/s':>7} {'peak MiB':>9} "
            f"{'out MB':>7} | {'speed ours/duck':>15} {'RSS ours/duck':>13} {'same rows':>9}")
    print(head)
    print("-" * len(head))
    for s in r["sizes"]:
        for who in ("ours", "duckdb"):
            x = s[who]
            tail = (f"{s['throughput_ratio_ours_over_duckdb']:>14.2f}x "
                    f"{s['peak_rss_ratio_ours_over_duckdb']:>12.2f}x {str(s['same_rows']):>9}"
                    if who == "ours" else "")
            print(f"{s['rows']:>11,} {s['csv_bytes'] / 1e6:>7.0f} | {who:<6} "
                  f"{x['median_wall_s']:>7.2f} {x['throughput_mb_s']:>7.1f} "
                  f"{x['max_peak_rss_mib']:>9.0f} {x['output_bytes'] / 1e6:>7.1f} | {tail}")
    print("\n== Lambda functions (release, arm64 zip; init = process start to first runtime "
          "API poll, median of 10, x86_64 here)")
    for fn, size in r["zips"].items():
        print(f"   {fn:<10} zip {size / 1e6:6.1f} MB   init {r['init'][fn]['median_ms']:6.1f} ms")


if __name__ == "__main__":
    main()
