"""`make bench-history`: what the next night costs as history grows (issue 15's envelope).

One local lake is grown a day at a time, each day one export of customers, orders and payments
(by default sized like issue 15's measurement: about 30k orders, 32k payments and 7.5k customers,
10% of each file's rows newer versions of keys from the last 30 days), each night running what
production runs: `lake ingest` per file, `lake quality`, `lake aggregate` without a range (the
scheduled run). At each history H (7, 90 and 365 days by default) the NEXT night is timed, every
stage as its own `lake` process:

  ingest     one process per file (the Lambda runs per object); summed time, largest RSS
  quality    one process per batch (`--batch`), as the quality Lambda runs per manifest
  aggregate  `lake aggregate` without a range: the nightly run
  DuckDB     the same KPIs recomputed by DuckDB over the same silver (the peer; also in each
             interleaved round at the longest history), then gold is
             compared with it row for row (not timed)

Each measured process reports wall time, user/system CPU and peak RSS (wait4 of that very child)
and the bytes it read through read(2) (`rchar` of /proc/<pid>/io, read after the child exits and
before it is reaped). Repeated runs of a night start from a hard-linked copy of the lake taken
before it (every lake write is a new file renamed into place, so the copy never changes), so each
repetition measures the same night. Once the lake is grown, the measured nights run again in
interleaved rounds (H=7, 90, 365, then back), each from the lake kept before it: the growth
measures H=7 and H=365 tens of minutes apart, a round seconds apart, so the targets' ratios and
the envelope's slopes come from the rounds (see `interleave`). A second lake at ten times the
daily volume is grown to 31 days (a full update window) and its next night measured the same
way: the volume probe. From the medians it fits time and RSS against H, takes the growth with
the daily volume from the probe, and turns both into the daily volume and years of history each
Lambda's memory and timeout (read from infra/template.yaml) allow (see `envelope`).

  bench_history.py --lake BIN --work-dir DIR --out JSON [--horizons 7,90,365] [--scale 1]
                   [--runs 3] [--aggregate-every 1] [--volume-probe 10:31|none]
                   [--interleaved-rounds 5]

Internally `--make-days` runs the exports' maker as a separate process, so the big samples it
keeps never inflate the measured children (a child's peak RSS starts from its parent's at fork).
"""
import argparse
import csv
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from array import array
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from bench import machine

HERE = Path(__file__).resolve().parent
DATASETS = ("customers", "orders", "payments")

# Issue 15's measured shop, per day at --scale 1: new keys (90% of each file) ...
NEW_ORDERS = 27_000
NEW_CUSTOMERS = 6_750
# ... plus this share of every file's rows as newer versions of keys from the last WINDOW days.
UPDATE_SHARE = 0.10
UPDATE_WINDOW_DAYS = 30
# Share of a day's new orders placed by a customer who signed up on an earlier day.
RETURNING_SHARE = 0.5


def first_day(horizons):
    """The first export's date: the lake's last night (H = the largest horizon, + 1) is
    yesterday's export, as in production. The stages date things by the wall clock (silver's
    365-day retention bounds the reference windows and compaction's expiry), so a history placed
    elsewhere in time would be measured against a different retention: with a fixed 2025 start,
    payments nights before the last year's had every row outside the retained window and their
    reference check read nothing."""
    return date.today() - timedelta(days=max(horizons) + 1)

NEXT_ORDER = {"placed": ["paid", "paid", "cancelled"], "paid": ["shipped", "cancelled"],
              "shipped": ["delivered"], "delivered": ["delivered", "returned"],
              "cancelled": ["cancelled"], "returned": ["returned"]}
NEXT_PAYMENT = {"pending": ["succeeded", "succeeded", "failed"],
                "succeeded": ["succeeded", "refunded"], "failed": ["failed"],
                "refunded": ["refunded"]}
LAST_NAMES = ["García", "Smith", "O'Brien", "Nguyen", "Okafor", "Müller", "Tanaka", "Silva"]


# ----------------------------------------------------------------------------- the exports

class DayMaker:
    """Writes day k's three exports into the lake's raw/ (where `lake ingest` reads them in place).

    New keys come from `lake generate` (one day, no defects), renamed per day so keys never
    collide across days; half of the new orders are moved to a customer of an earlier day (same
    region), so there are returning customers. The newer versions are drawn from samples of the
    last WINDOW days' rows kept here, and written with a later status and updated_at."""

    def __init__(self, lake_bin, raw_dir, gen_dir, scale, seed, first):
        self.lake_bin, self.raw_dir, self.gen_dir = lake_bin, Path(raw_dir), Path(gen_dir)
        self.first = first
        self.scale, self.seed = scale, seed
        self.rng = random.Random(seed)
        # day -> dataset -> rows (fields joined by \x1f: a compact sample of that day's latest rows)
        self.samples = {}
        # day -> region -> customer numbers of that day's new customers
        self.customers = {}

    def make(self, k):
        day = self.first + timedelta(days=k - 1)
        gen = self.gen_dir / f"day-{k}"
        shutil.rmtree(gen, ignore_errors=True)
        subprocess.run([self.lake_bin, "generate", "--out", gen,
                        "--customers", str(max(10, round(NEW_CUSTOMERS * self.scale))),
                        "--orders", str(max(10, round(NEW_ORDERS * self.scale))),
                        "--days", "1", "--end-date", day.isoformat(),
                        "--seed", str(self.seed * 1_000_003 + k), "--defect-rate", "0"],
                       check=True, stdout=subprocess.DEVNULL)
        # Newer versions happen during the export's day, after every earlier version (a day's
        # rows are updated at most ten hours past their day in the generator).
        start = datetime(day.year, day.month, day.day, 10, tzinfo=timezone.utc)
        stamp = lambda: (start + timedelta(seconds=self.rng.randrange(14 * 3600))
                         ).strftime("%Y-%m-%dT%H:%M:%SZ")
        files, rows = {}, {}
        self.customers[k] = {}
        self.samples[k] = {}
        for ds in DATASETS:
            out = self.raw_dir / ds / day.isoformat() / f"{ds}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(gen / f"{ds}.csv", newline="", encoding="utf-8") as src, \
                    open(out, "w", newline="", encoding="utf-8") as dst:
                reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
                header = next(reader)
                writer.writerow(header)
                col = {name: i for i, name in enumerate(header)}
                new = [self.rename(ds, col, r, k) for r in reader]
                writer.writerows(new)
                wanted = round(len(new) * UPDATE_SHARE / (1 - UPDATE_SHARE))
                updates = self.updates(ds, col, k, wanted, stamp)
                writer.writerows(updates)
            # Exported the night after its day, as in production: the file's modification time
            # is its upload time, which names the batch (batch ids, hence the stages' watermarks
            # and manifest listings, follow the data's days, not the minutes the bench runs in).
            exported = datetime(day.year, day.month, day.day, 23, tzinfo=timezone.utc) \
                + timedelta(seconds=DATASETS.index(ds))
            os.utime(out, (exported.timestamp(), exported.timestamp()))
            self.keep_sample(ds, k, new, wanted)
            files[ds], rows[ds] = str(out), {"new": len(new), "updates": len(updates)}
        shutil.rmtree(gen)
        for old in [d for d in self.samples if d <= k - UPDATE_WINDOW_DAYS]:
            del self.samples[old]
        for old in [d for d in self.customers if d <= k - 365]:
            del self.customers[old]
        return {"day": k, "date": day.isoformat(), "files": files, "rows": rows}

    def rename(self, ds, col, r, k):
        """Keys unique across days: C/O/P, the day number, then the generator's number."""
        first = ds[0].upper()
        r[0] = f"{first}{k:04d}{r[0][1:]}"
        if ds == "customers":
            self.customers[k].setdefault(r[col["customer_region"]].upper(), array("I")).append(
                int(r[0][5:]))
        elif ds == "orders":
            region = r[col["customer_region"]].upper()
            earlier = [d for d in self.customers if d < k and self.customers[d].get(region)]
            if earlier and self.rng.random() < RETURNING_SHARE:
                d = self.rng.choice(earlier)
                n = self.rng.choice(self.customers[d][region])
                r[col["customer_id"]] = f"C{d:04d}{n:07d}"
            else:
                r[col["customer_id"]] = f"C{k:04d}{r[col['customer_id']][1:]}"
        else:
            r[col["order_id"]] = f"O{k:04d}{r[col['order_id']][1:]}"
        return r

    def keep_sample(self, ds, k, rows, updates_per_night):
        # Each day's rows are drawn from over WINDOW nights, about updates_per_night in all.
        n = min(len(rows), max(1, math.ceil(1.5 * updates_per_night)))
        self.samples[k][ds] = ["\x1f".join(r) for r in self.rng.sample(rows, n)]

    def updates(self, ds, col, k, count, stamp):
        days = [d for d in self.samples if d >= k - UPDATE_WINDOW_DAYS and ds in self.samples[d]]
        if not days:
            return []
        out, seen = [], set()
        for _ in range(count * 3):
            if len(out) == count:
                break
            d = self.rng.choice(days)
            sample = self.samples[d][ds]
            i = self.rng.randrange(len(sample))
            if (d, i) in seen:
                continue  # one version of a key per file
            seen.add((d, i))
            r = sample[i].split("\x1f")
            if ds == "customers":
                r[col["last_name"]] = self.rng.choice(LAST_NAMES)
            else:
                s = col["status"]
                moves = NEXT_ORDER if ds == "orders" else NEXT_PAYMENT
                r[s] = self.rng.choice(moves.get(r[s].lower(), [r[s].lower()]))
            r[col["updated_at"]] = stamp()
            sample[i] = "\x1f".join(r)  # the next version starts from this one
            out.append(r)
        return out


def serve_days(args):
    """The maker's own process: reads a day number per line, answers one JSON line per day."""
    maker = DayMaker(args.lake, args.raw_dir, args.gen_dir, args.scale, args.seed,
                     date.fromisoformat(args.first_day))
    for line in sys.stdin:
        print(json.dumps(maker.make(int(line))), flush=True)


class Days:
    def __init__(self, args, raw_dir, gen_dir, first, scale):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--make-days", "--lake", args.lake, "--raw-dir", raw_dir,
             "--gen-dir", gen_dir, "--scale", str(scale), "--seed", str(args.seed),
             "--first-day", first.isoformat()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def make(self, k):
        self.proc.stdin.write(f"{k}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"the exports' maker stopped at day {k} (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ----------------------------------------------------------------------------- measuring

def opened_bytes(trace, root):
    """Sizes of the distinct files under `root` a traced process opened for reading: what it
    fetched of the lake, however it read them (read(2) or mmap, as polars scans Parquet)."""
    seen = set()
    for line in Path(trace).read_text(errors="replace").splitlines():
        if "open" not in line or " = -1" in line:
            continue
        start = line.find('"')
        end = line.find('"', start + 1)
        if start < 0 or end < 0:
            continue
        flags = line[end + 1:]
        if any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_DIRECTORY")):
            continue
        path = line[start + 1:end]
        if path.startswith(root):
            seen.add(path)
    total = 0
    for path in seen:
        try:
            total += os.stat(path).st_size
        except OSError:
            pass  # a temporary file, renamed or deleted since
    return total, len(seen)


def measure(cmd, env, ok=(0,), trace_root=None):
    """Runs cmd to its end: wall time, CPU, peak RSS (wait4 of this child) and the bytes it read
    through read(2) (`rchar`; /proc/<pid>/io is read while the exited child is still a zombie,
    so nothing it did is missed). Memory-mapped reads are not in `rchar`."""
    trace = None
    if trace_root:
        # Only opens stop the process (seccomp-bpf), but that is still not free: traced runs
        # are extra runs, never the timed ones.
        trace = Path(env["LAKE_WORK_DIR"]).parent / f"trace-{os.getpid()}-{time.time_ns()}"
        cmd = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=open,openat,openat2",
               "-e", "signal=none", "-o", str(trace), "--", *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    chunks = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda s=s, c=c: c.append(s.read()))
               for s, c in ((proc.stdout, chunks["out"]), (proc.stderr, chunks["err"]))]
    for r in readers:
        r.start()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - start
    io = {}
    try:
        for line in open(f"/proc/{proc.pid}/io"):
            name, value = line.split(":")
            io[name] = int(value)
    except OSError:
        pass  # no io accounting here: bytes read stay unknown
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    out = b"".join(chunks["out"]).decode(errors="replace")
    if proc.returncode not in ok:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                 f"{b''.join(chunks['err']).decode(errors='replace')[-3000:]}")
    result = {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "user_s": usage.ru_utime,
              "sys_s": usage.ru_stime, "read_bytes": io.get("rchar"), "exit": proc.returncode,
              "stdout": out}
    if trace:
        result["opened_bytes"], result["opened_files"] = opened_bytes(trace, trace_root)
        trace.unlink()
    return result


def run(cmd, env, ok=(0,)):
    """An unmeasured step of building history; fails loudly."""
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode not in ok:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


class Stages:
    """The nightly stages as `lake` processes, each with the environment its Lambda would have:
    the template's memory size (ingest's memory budget follows from it, as deployed) and a fresh
    work directory (a cold /tmp)."""

    def __init__(self, args, lake_dir, scratch, functions):
        self.lake, self.dir, self.scratch = args.lake, lake_dir, scratch
        self.functions = functions
        self.base = dict(os.environ, POLARS_MAX_THREADS=str(args.threads), RUST_LOG="error")
        self.serial = 0
        self.trace = False  # count the lake files each process opens (strace; not timed)
        self.compact = args.compact

    def env(self, stage):
        self.serial += 1
        work = self.scratch / f"work-{self.serial}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        env = dict(self.base, LAKE_WORK_DIR=str(work))
        if stage in self.functions:
            env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(self.functions[stage]["memory_mb"])
        return env, work

    def step(self, stage, cmd, measured, ok=(0,)):
        env, work = self.env(stage)
        try:
            if measured:
                root = str(Path(self.dir).resolve()) + "/" if self.trace else None
                return measure(cmd, env, ok, trace_root=root)
            return {"stdout": run(cmd, env, ok)}
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def ingest(self, ds, file, measured):
        r = self.step("ingest", [self.lake, "ingest", "--json", "--lake", self.dir, "--dataset",
                                 ds, file], measured)
        summary = json.loads(r["stdout"].splitlines()[0])
        if summary["status"] != "succeeded":
            sys.exit(f"ingest of {file} was {summary['status']}: {summary.get('error')}")
        r["batch_id"], r["rows_written"] = summary["batch_id"], summary["rows_written"]
        return r

    def quality(self, batch, measured):
        # 3: a batch failed its gate (still a full check; the verdict is kept with the figures).
        args = ["--batch", batch] if batch else []
        r = self.step("quality", [self.lake, "quality", "--json", "--lake", self.dir, *args],
                      measured, ok=(0, 3))
        r["verdicts"] = [json.loads(line).get("verdict") for line in r["stdout"].splitlines()
                         if line.strip()]
        return r

    def aggregate(self, measured):
        return self.step("aggregate", [self.lake, "aggregate", "--json", "--lake", self.dir],
                         measured)

    def load_and_compact(self, batches, measured, at):
        """What production does after the aggregate: the load (03:00 compaction takes only loaded
        batches) and the compaction. There is no warehouse here, so the batches are marked loaded
        as the load stage would mark them (not timed); then `lake compact` runs as the compact
        function does (timed in a measured night: it is a nightly stage too)."""
        for ds, batch in batches:
            marker = Path(self.dir) / "runs" / "loaded" / ds / batch
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("{}")
        r = self.step("compact", [self.lake, "compact", "--json", "--lake", self.dir, "--at",
                                  at.strftime("%Y-%m-%dT%H:%M:%SZ")], measured)
        r.pop("stdout", None)
        return r


def night(stages, day, measured, aggregate=True, compact=True):
    """One night: ingest the day's three files, check each batch, the scheduled aggregate, then
    (unless `compact` is false, or the bench runs with --no-compact) the load markers and the
    compaction."""
    r = {"ingest": {}, "quality": {}, "date": day["date"], "started": time.time()}
    for ds in DATASETS:
        r["ingest"][ds] = stages.ingest(ds, day["files"][ds], measured)
    if measured:
        for ds in DATASETS:
            r["quality"][ds] = stages.quality(r["ingest"][ds]["batch_id"], measured)
    else:
        stages.quality(None, measured)
    if aggregate:
        r["aggregate"] = stages.aggregate(measured)
    if compact:
        compact_night(stages, r, measured)
    return r


def compact_night(stages, r, measured):
    """The night `r`'s load markers and compaction (into r["compact"] when measured), on the
    night's clock: the silver files the night wrote carry its time, 23:30 of its day, and the
    compaction runs at 03:00 the next morning (`lake compact --at`), its outputs dated so. The
    compaction decides by the files' times (which are young enough to take, which partitions
    have settled, which directories its cursor keeps); on the wall clock a lake built in minutes
    would hold only young files, and every night would list and consider all of silver."""
    night = datetime.fromisoformat(r["date"]).replace(tzinfo=timezone.utc)
    date_files_since(Path(stages.dir) / "processed", r["started"],
                     night + timedelta(hours=23, minutes=30))
    if stages.compact:
        at = night + timedelta(days=1, hours=3)
        started = time.time()
        done = stages.load_and_compact([(ds, r["ingest"][ds]["batch_id"]) for ds in DATASETS],
                                       measured, at)
        date_files_since(Path(stages.dir) / "processed", started, at)
        if measured:
            r["compact"] = done


def date_files_since(root, since, at):
    """Gives the files under `root` written since `since` (wall clock) the time `at`."""
    stamp = at.timestamp()
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.stat(path).st_mtime >= since:
                os.utime(path, (stamp, stamp))


def duckdb_peer(lake_dir, out, threads):
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    r = measure([sys.executable, HERE / "bench_history_duckdb.py", lake_dir, out, str(threads)],
                dict(os.environ))
    r.update(json.loads(r["stdout"]))
    return r


def gold_matches_duckdb(lake_dir, out):
    """In a child process, so this one stays small (see the module doc)."""
    p = subprocess.run([sys.executable, HERE / "bench_history_duckdb.py", "--compare", lake_dir,
                        out], check=True, capture_output=True, text=True)
    return json.loads(p.stdout)


def baseline(args, work, functions, headers, runs):
    """Each stage on a lake holding only header-only exports: the process's fixed cost (binary,
    runtime, contracts), which does not grow with the daily volume."""
    results = []
    for i in range(runs):
        lake_dir = work / "empty"
        shutil.rmtree(lake_dir, ignore_errors=True)
        files = {}
        for ds in DATASETS:
            path = lake_dir / "raw" / ds / "empty" / f"{ds}.csv"
            path.parent.mkdir(parents=True)
            path.write_text(headers[ds])
            files[ds] = str(path)
        stages = Stages(args, lake_dir, work / "scratch", functions)
        # Yesterday's night, as the last night of a history (an empty lake has no files to date).
        yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
        r = night(stages, {"date": yesterday, "files": files}, measured=True)
        results.append(r)
        shutil.rmtree(lake_dir)
    return {key: stage_figures(results, key, picks) for key, (_, picks) in STAGES.items()
            if key != "duckdb"}


def restore(snapshot, lake_dir):
    shutil.rmtree(lake_dir, ignore_errors=True)
    subprocess.run(["cp", "-al", snapshot, lake_dir], check=True)


def median_of(runs, pick):
    values = [pick(r) for r in runs]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def stage_figures(runs, key, picks):
    """Medians of runs of one stage, where `picks` give that stage's processes in a night."""
    def agg(r, field, how):
        values = [p[field] for p in picks(r)]
        return None if any(v is None for v in values) else how(values)
    return {
        "wall_s": median_of(runs, lambda r: agg(r, "wall_s", sum)),
        "peak_rss_mib": median_of(runs, lambda r: agg(r, "peak_rss_mib", max)),
        "read_bytes": median_of(runs, lambda r: agg(r, "read_bytes", sum)),
        # From the traced run of the night (see measure_night); None for DuckDB (not traced).
        "opened_bytes": median_of(runs, lambda r: r.get("opened", {}).get(key)),
        "user_s": median_of(runs, lambda r: agg(r, "user_s", sum)),
        "sys_s": median_of(runs, lambda r: agg(r, "sys_s", sum)),
        "walls_s": [agg(r, "wall_s", sum) for r in runs],
        # The largest single process: what one Lambda invocation of this stage needs.
        "max_process_wall_s": median_of(runs, lambda r: agg(r, "wall_s", max)),
    }


STAGES = {
    "ingest": ("ingest, 3 files", lambda r: list(r["ingest"].values())),
    "quality_customers": ("quality, customers batch", lambda r: [r["quality"]["customers"]]),
    "quality_orders": ("quality, orders batch (vs customers)",
                       lambda r: [r["quality"]["orders"]]),
    "quality_payments": ("quality, payments batch (vs orders)",
                         lambda r: [r["quality"]["payments"]]),
    "aggregate": ("aggregate, nightly (no range)", lambda r: [r["aggregate"]]),
    # The 03:00 function: the night's partitions rewritten, the key index's deltas merged into
    # its shards, expired catalog partitions removed.
    "compact": ("compact, nightly (03:00)", lambda r: [r["compact"]]),
    "duckdb": ("DuckDB, same KPIs, full (peer)", lambda r: [r["duckdb"]]),
}
# Which Lambda runs each stage (one invocation per process measured).
LAMBDA_OF = {"ingest": "ingest", "quality_customers": "quality", "quality_orders": "quality",
             "quality_payments": "quality", "aggregate": "aggregate", "compact": "compact"}


def measure_night(stages, day, lake_dir, work, runs, threads):
    """The night's stages `runs` times from the same lake, then once under strace. The lake
    before the night (its exports in raw/, nothing ingested) is left beside it as
    `before-night-<date>` (its path is returned third): the interleaved rounds run the night
    again from it, and with `--keep` it stays, to run it with another binary."""
    snapshot = work / "snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    subprocess.run(["cp", "-al", lake_dir, snapshot], check=True)
    results = []
    for i in range(runs):
        if i:
            restore(snapshot, lake_dir)
        # The peer runs where the aggregate does, before the night's compaction (02:00 and
        # 03:00 in production), over the same files.
        r = night(stages, day, measured=True, compact=False)
        r["duckdb"] = duckdb_peer(lake_dir, work / "duckdb", threads)
        compact_night(stages, r, measured=True)
        for ds in DATASETS:
            for step in ("ingest", "quality"):
                r[step][ds].pop("stdout", None)
        r["aggregate"]["report"] = json.loads(r["aggregate"].pop("stdout").splitlines()[0])["report"]
        r["duckdb"].pop("stdout", None)
        results.append(r)
        quality = " / ".join(f"{r['quality'][d]['wall_s']:.2f}" for d in DATASETS)
        compacted = (f", compact {r['compact']['wall_s']:.2f} s "
                     f"{r['compact']['peak_rss_mib']:.0f} MiB" if "compact" in r else "")
        print(f"    run {i + 1}: ingest {sum(x['wall_s'] for x in r['ingest'].values()):.2f} s, "
              f"quality {quality} s, "
              f"aggregate {r['aggregate']['wall_s']:.2f} s "
              f"{r['aggregate']['peak_rss_mib']:.0f} MiB, "
              f"DuckDB {r['duckdb']['wall_s']:.2f} s {r['duckdb']['peak_rss_mib']:.0f} MiB"
              f"{compacted}", flush=True)
    # One more run of the night under strace: the lake bytes each stage opened (the timed runs
    # above are not traced). Its lake is the night done: history goes on from it.
    if not shutil.which("strace"):
        print("    strace not found: the table shows read(2) bytes, which miss mmap (install "
              "strace for the lake bytes each stage opens)", flush=True)
        kept = set_aside(snapshot, work, day)
        return results, gold_matches_duckdb(lake_dir, work / "duckdb"), kept
    restore(snapshot, lake_dir)
    stages.trace = True
    traced = night(stages, day, measured=True, compact=False)
    compact_night(stages, traced, measured=True)
    stages.trace = False
    for key, (_, picks) in STAGES.items():
        if key != "duckdb":
            for r in results:
                r.setdefault("opened", {})[key] = sum(p["opened_bytes"] for p in picks(traced))
    kept = set_aside(snapshot, work, day)
    compared = gold_matches_duckdb(lake_dir, work / "duckdb")
    return results, compared, kept


def set_aside(snapshot, work, day):
    kept = work / f"before-night-{day['date']}"
    shutil.rmtree(kept, ignore_errors=True)
    snapshot.rename(kept)
    return kept


def interleave(args, work, functions, points, rounds):
    """Runs the measured nights again, `rounds` times, from the lakes kept before them: round i
    runs H=7, then 90, then 365 (every other round in reverse), each night's stages as in the
    timed runs. The growth's runs of H=7 and H=365 are tens of minutes apart, and on this shared
    machine the same binary's 0.2 s stage moved by half between such runs; within a round the
    nights are seconds apart, so a round's ratio H=365 / H=7 compares like with like. The
    longest history's night also runs the DuckDB peer, between its aggregate and its compaction
    as in the growth, so each round pairs the aggregate with the peer seconds apart
    (`duckdb_ratios`). Adds `interleaved` (medians) and `interleaved_runs` to each point."""
    lake_dir = work / "interleaved"
    stages = Stages(args, lake_dir, work / "scratch-interleaved", functions)
    results = {id(p): [] for p in points}
    longest = points[-1]
    for i in range(rounds):
        order = points if i % 2 == 0 else points[::-1]
        for p in order:
            restore(p["before_night"], lake_dir)
            day = {"date": p["date"],
                   "files": {ds: str(lake_dir / rel) for ds, rel in p["files"].items()}}
            if p is longest:
                r = night(stages, day, measured=True, compact=False)
                r["duckdb"] = duckdb_peer(lake_dir, work / "duckdb-interleaved", args.threads)
                r["duckdb"].pop("stdout", None)
                compact_night(stages, r, measured=True)
            else:
                r = night(stages, day, measured=True)
            for ds in DATASETS:
                for step in ("ingest", "quality"):
                    r[step][ds].pop("stdout", None)
            r["aggregate"].pop("stdout", None)
            results[id(p)].append(r)
        peer = results[id(longest)][-1]["duckdb"]["wall_s"]
        print(f"  round {i + 1}/{rounds}: " + ", ".join(
            f"H={p['history_days']} aggregate {results[id(p)][-1]['aggregate']['wall_s']:.2f} s"
            for p in points) + f", DuckDB at H={longest['history_days']} {peer:.2f} s",
            flush=True)
    shutil.rmtree(lake_dir, ignore_errors=True)
    for p in points:
        runs = results[id(p)]
        p["interleaved_runs"] = runs
        p["interleaved"] = {key: stage_figures(runs, key, picks)
                            for key, (_, picks) in STAGES.items() if key != "duckdb"}


def figures(point):
    """A point's stage figures for the targets and the envelope: the interleaved rounds' when
    run (measured beside the other histories), else the growth's."""
    return point.get("interleaved") or point["stages"]


def round_ratios(report, key, field):
    """Per interleaved round, the last history's `field` of stage `key` over the first's (empty
    without interleaved rounds)."""
    first, last = report["horizons"][0], report["horizons"][-1]
    pairs = zip(first.get("interleaved_runs", []), last.get("interleaved_runs", []))
    _, picks = STAGES[key]
    how = max if field == "peak_rss_mib" else sum
    return [ratio(how(p[field] for p in picks(b)), how(p[field] for p in picks(a)))
            for a, b in pairs]


# ----------------------------------------------------------------------------- the template

def lambda_limits(template):
    """MemorySize (MB) and Timeout (s) of each function in the SAM template, by binary name."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short forms (!Ref, !Sub, !GetAtt, ...): kept as plain values.
    def any_tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_mapping(node)

    Loader.add_multi_constructor("!", any_tag)
    doc = yaml.load(Path(template).read_text(), Loader=Loader)
    defaults = (doc.get("Globals") or {}).get("Function") or {}
    out = {}
    for name, res in doc["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary", name)
        props = res.get("Properties") or {}
        out[binary] = {"resource": name,
                       "memory_mb": int(props.get("MemorySize", defaults.get("MemorySize", 128))),
                       "timeout_s": int(props.get("Timeout", defaults.get("Timeout", 3)))}
    return out


# ----------------------------------------------------------------------------- the report

def fit(xs, ys):
    """Least-squares line through (x, y): (intercept, slope)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if len(pts) < 2:
        return None, None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - slope * mx, slope


def history_points(report):
    """The measured points the history slope is fitted on: those whose night's update window is
    full (history of at least the window). A shorter history's night recomputes fewer days (its
    updates reach back only as far as its history), so it lies below the long-history line and
    would tilt the slope; with fewer than two full-window points, all of them."""
    full = [h for h in report["horizons"] if h["history_days"] >= report["update_window_days"]]
    return full if len(full) >= 2 else report["horizons"]


def envelope(report, functions):
    """From the measured lines, the history each Lambda allows at 1 M orders/day and the daily
    volume it allows at 3 years.

    At the bench's volume V0 a stage's cost is a + b·H (fitted on the full-window points,
    `history_points`). What grows with history is taken to grow with the volume too (b·H·V/V0:
    a day of history at 10× the volume holds 10× the keys). The intercept's growth with the
    volume is measured by the volume probe (the next night of a lake at a larger volume V1 and
    history H1): a(V) = a + s·(V - V0), with s = (y1 - b·H1·V1/V0 - a) / (V1 - V0), not below
    0. Without a probe, the part of a above the same stage on an empty lake (the process's
    fixed cost) is scaled in proportion to the volume, which overstates it. Ingest's memory is
    bounded by its budget, so for it the memory line overstates either way."""
    v0 = report["orders_per_day"]
    points = history_points(report)
    hs = [h["history_days"] for h in points]
    probe = report.get("volume_probe")
    target_v, target_h = 1_000_000, 3 * 365
    rows = []
    for key, fn in LAMBDA_OF.items():
        if fn not in functions:
            continue
        limits = functions[fn]
        for measure_name, field, limit in (("memory", "peak_rss_mib", limits["memory_mb"]),
                                           ("timeout", "max_process_wall_s", limits["timeout_s"])):
            a, b = fit(hs, [figures(h)[key][field] for h in points])
            if a is None:
                continue
            b = max(b, 0.0)
            fixed = min(report["empty_lake"][key][field], a)
            if probe:
                v1, h1 = probe["orders_per_day"], probe["history_days"]
                y1 = probe["stages"][key][field]
                s = max((y1 - b * h1 * v1 / v0 - a) / (v1 - v0), 0.0)
                intercept = lambda v: a + s * (v - v0)
                model = "probe"
            else:
                s = (a - fixed) / v0
                intercept = lambda v: fixed + (a - fixed) * v / v0
                model = "proportional"
            cost = lambda v, h: intercept(v) + b * h * v / v0
            per_history_day = b * target_v / v0
            if intercept(target_v) > limit:
                years = 0.0
            elif per_history_day <= 0:
                years = None  # no limit from history (the line does not rise)
            else:
                years = (limit - intercept(target_v)) / per_history_day / 365
            # cost(v, H) is a line in v: c0 + c1·v.
            c1 = s + b * target_h / v0
            c0 = cost(0, target_h)
            volume = (limit - c0) / c1 if c1 > 0 else None
            rows.append({"stage": key, "lambda": fn, "limit": measure_name,
                         "limit_value": limit, "fixed": fixed, "intercept": a,
                         "slope_per_day": b, "volume_model": model,
                         "slope_per_order_per_day": s,
                         "at_1m_for_3_years": cost(target_v, target_h),
                         "years_at_1m_orders_per_day": years,
                         "orders_per_day_at_3_years": volume,
                         "fits_1m_for_3_years": cost(target_v, target_h) <= limit})
    return rows


def envelope_rounds(report, functions):
    """The envelope once per interleaved round, each history's figures from that round alone:
    how far its verdicts move with the noise. The slope per day comes from two points and is
    multiplied by the volume's 33× and 1,095 days: from one binary, three runs gave the
    aggregate's memory 0, 0.12 and 0.023 MiB/day, and the verdict went yes, no, yes. Empty
    without rounds."""
    n = min((len(h.get("interleaved_runs", [])) for h in report["horizons"]), default=0)
    return [envelope(dict(report, horizons=[
        dict(h, interleaved={key: stage_figures([h["interleaved_runs"][i]], key,
                                                STAGES[key][1])
                             for key in h["interleaved"]})
        for h in report["horizons"]]), functions) for i in range(n)]


def with_rounds(rows, rounds):
    """Adds to each envelope row how many of the rounds' envelopes fit 1 M orders/day for 3 years
    (`fits_rounds` of `rounds`) and their cost there (`at_1m_rounds`). Its `verdict` is yes or no
    only when the medians' line and every round agree, else unresolved."""
    for row in rows:
        same = [x for env in rounds for x in env
                if (x["stage"], x["limit"]) == (row["stage"], row["limit"])]
        row["rounds"] = len(same)
        row["fits_rounds"] = sum(x["fits_1m_for_3_years"] for x in same)
        row["at_1m_rounds"] = [x["at_1m_for_3_years"] for x in same]
        fits = row["fits_1m_for_3_years"]
        if fits and row["fits_rounds"] == row["rounds"]:
            row["verdict"] = "yes"
        elif not fits and row["fits_rounds"] == 0:
            row["verdict"] = "no"
        else:
            row["verdict"] = f"unresolved: {row['fits_rounds']} of {row['rounds']} rounds fit"
    return rows


def fmt_cell(s):
    if s["wall_s"] is None:
        return "-"
    if s.get("opened_bytes") is not None:
        read = f", {s['opened_bytes'] / 1e6:.1f} MB"
    elif s.get("read_bytes") is not None:
        read = f", {s['read_bytes'] / 1e6:.1f} MB read(2)"
    else:
        read = ""
    return f"{s['wall_s']:.2f} s, {s['peak_rss_mib']:.0f} MiB{read}"


def ratio(a, b):
    return a / b if a is not None and b else None


def spread(values):
    """`median× (min–max)` of ratios; `-` when there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"


def target_ratios(report, key):
    """Stage `key`'s time and RSS at the last history over the first, as the targets judge them:
    the median of the interleaved rounds' own ratios when they ran, else the growth's medians'."""
    ratios = [round_ratios(report, key, f) for f in ("wall_s", "peak_rss_mib")]
    if all(ratios):
        return tuple(statistics.median(x) for x in ratios)
    first, last = report["horizons"][0]["stages"][key], report["horizons"][-1]["stages"][key]
    return (ratio(last["wall_s"], first["wall_s"]),
            ratio(last["peak_rss_mib"], first["peak_rss_mib"]))


def duckdb_ratios(report):
    """DuckDB's time over the aggregate's at the longest history, a ratio per pair measured
    together: per interleaved round when they ran (each round runs both, seconds apart), else
    per growth run. Returns (the median, the ratios, which pairs)."""
    last = report["horizons"][-1]
    rounds = [r for r in last.get("interleaved_runs", []) if "duckdb" in r]
    pairs, basis = (rounds, "interleaved rounds") if rounds else (last["runs"], "growth runs")
    ratios = pair_ratios(pairs)
    return (statistics.median(ratios) if ratios else None), ratios, basis


def pair_ratios(pairs):
    """DuckDB's time over the aggregate's, per night that ran both (those with a ratio)."""
    ratios = [ratio(x["duckdb"]["wall_s"], x["aggregate"]["wall_s"]) for x in pairs]
    return [x for x in ratios if x is not None]


def fx(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def against_duckdb(point):
    """A measured night's aggregate against DuckDB: speed, RSS, and whether gold equals its
    recompute (what differs if not)."""
    a, d = point["stages"]["aggregate"], point["stages"]["duckdb"]
    eq = point["gold_vs_duckdb"]
    gold = "yes" if eq["equal"] else "NO " + json.dumps(
        {k: v for k, v in eq.items() if k != "equal"})
    return (f"speed {fx(ratio(d['wall_s'], a['wall_s']))}×   "
            f"RSS {fx(ratio(a['peak_rss_mib'], d['peak_rss_mib']))}×   gold = DuckDB: {gold}")


def print_report(r):
    m = r["machine"]
    hs = [h["history_days"] for h in r["horizons"]]
    first, last = r["horizons"][0], r["horizons"][-1]
    print(f"\n== the next night's work against history: medians of {r['runs']} runs, "
          f"{r['threads']} threads, {r['generated_at'][:10]}")
    print(f"   {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; DuckDB {r['duckdb_version']}")
    print(f"   a day: {r['orders_per_day']:,} orders, {r['payments_per_day']:,} payments, "
          f"{r['customers_per_day']:,} customers ({r['update_share']:.0%} of each file newer "
          f"versions of the last {r['update_window_days']} days); scale {r['scale']:g} of "
          f"issue 15's ~30k orders/day" + (" (REDUCED)" if r["scale"] < 1 else ""))
    if r["aggregate_every"] > 1:
        print(f"   history built with the aggregate every {r['aggregate_every']} nights "
              f"(and always the night before a measured one)")
    print(f"   cells: wall time, peak RSS, MB of lake files the stage opened (an extra run under "
          f"strace; DuckDB: bytes it read through read(2)); build took "
          f"{r['build_minutes']:.1f} min\n")
    head = ["next night's stage"] + [f"H={h}" for h in hs] + [
        f"H={hs[-1]}/H={hs[0]} time", "RSS", "slope ms/day", "MiB/day", "MB/day"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for key, (label, _) in STAGES.items():
        cells = [fmt_cell(h["stages"][key]) for h in r["horizons"]]
        col = lambda f: [h["stages"][key][f] for h in r["horizons"]]
        t_ratio = ratio(last["stages"][key]["wall_s"], first["stages"][key]["wall_s"])
        m_ratio = ratio(last["stages"][key]["peak_rss_mib"], first["stages"][key]["peak_rss_mib"])
        _, t_slope = fit(hs, col("wall_s"))
        _, m_slope = fit(hs, col("peak_rss_mib"))
        _, b_slope = fit(hs, col("opened_bytes") if key != "duckdb" else col("read_bytes"))
        print("| " + " | ".join([label, *cells, f"{fx(t_ratio)}×", f"{fx(m_ratio)}×",
                                 fx(t_slope and t_slope * 1000, 1), fx(m_slope, 2),
                                 fx(b_slope and b_slope / 1e6, 3)]) + " |")
    for h in r["horizons"]:
        print(f"   H={h['history_days']}: silver " + ", ".join(
            f"{ds} {h['silver_bytes'][ds] / 1e6:.1f} MB in {h['silver_files'][ds]:,} files"
            for ds in DATASETS))
    print("\naggregate against DuckDB over the same silver (DuckDB's time / ours; our RSS / "
          "DuckDB's; gold equal to DuckDB's recompute, row for row):")
    for h in r["horizons"]:
        print(f"   H={h['history_days']:<4} {against_duckdb(h)}")
    rounds = r.get("interleaved_rounds") or 0
    if rounds:
        print(f"\nthe same nights again, interleaved: {rounds} rounds, each running "
              f"H={', '.join(map(str, hs))} in turn (every other round in reverse), seconds "
              f"apart; medians, and the range of the rounds' own H={hs[-1]}/H={hs[0]} ratios:")
        head = ["next night's stage"] + [f"H={h}" for h in hs] + [
            f"H={hs[-1]}/H={hs[0]} time", "RSS"]
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for key in LAMBDA_OF:
            cells = [f"{figures(h)[key]['wall_s']:.2f} s, {figures(h)[key]['peak_rss_mib']:.0f} MiB"
                     for h in r["horizons"]]
            spans = [spread(round_ratios(r, key, f)) for f in ("wall_s", "peak_rss_mib")]
            print("| " + " | ".join([STAGES[key][0], *cells, *spans]) + " |")
    basis = "the median of the interleaved rounds' ratios" if rounds else "the medians above"
    print(f"\nTargets (issue 15): at H={hs[-1]} each nightly stage ≤ 1.5× its H={hs[0]} time and "
          f"RSS ({basis}); "
          f"aggregate ≥ 10× faster than DuckDB; 1 M orders/day for 3 years fits:")
    for key in LAMBDA_OF:
        if len(hs) < 2:
            # A history against itself is 1.00×: no verdict without a second history.
            print(f"   {STAGES[key][0]:<40} not measured (one history)")
            continue
        t, mm = target_ratios(r, key)
        ok = t is not None and mm is not None and t <= 1.5 and mm <= 1.5
        print(f"   {STAGES[key][0]:<40} time {fx(t)}×, RSS {fx(mm)}×  {'ok' if ok else 'MISSED'}")
    speed, per_pair, basis = duckdb_ratios(r)
    also = ("" if basis == "growth runs" else
            f"; growth runs: {', '.join(f'{x:.2f}×' for x in pair_ratios(last['runs']))}")
    print(f"   aggregate vs DuckDB at H={hs[-1]}: {fx(speed)}× (the median of the {basis}' "
          f"ratios: {', '.join(f'{x:.2f}×' for x in per_pair)}{also})  "
          f"{'ok' if speed and speed >= 10 else 'MISSED'}")
    probe = r.get("volume_probe")
    if probe:
        print(f"\nvolume probe: a lake of {probe['orders_per_day']:,} orders, "
              f"{probe['payments_per_day']:,} payments and {probe['customers_per_day']:,} "
              f"customers a day (scale {probe['scale']:g}), the night after "
              f"H={probe['history_days']} (build took {probe['build_minutes']:.1f} min):")
        for key, (label, _) in STAGES.items():
            print(f"   {label:<40} {fmt_cell(probe['stages'][key])}")
        print(f"   aggregate against DuckDB: {against_duckdb(probe)}")
    fitted = [h["history_days"] for h in history_points(r)]
    window = r["update_window_days"]
    full = (f"a full {window}-day update window" if min(fitted) >= window else
            f"all of them: fewer than two have a full {window}-day update window")
    print(f"\nEnvelope from the measured slopes: a + b·H at {r['orders_per_day']:,} orders/day, "
          f"fitted on H={','.join(map(str, fitted))} ({full}); b·H grows with the daily "
          f"volume V; "
          + (f"the intercept grows by s per order/day, measured by the volume probe "
             f"(a + s·(V − {r['orders_per_day']:,})); " if probe else
             "the part of a above the same stage on an empty lake is scaled in proportion to V "
             "(no volume probe: this overstates it); ")
          + f"a stage's largest single process against its Lambda's MemorySize/Timeout in "
          f"{r['template']}"
          + ("; fitted on the interleaved rounds' medians, and once per round (the rounds' "
             "range at 1 M/day for 3 years; a verdict the rounds disagree on is unresolved)"
             if rounds else "") + ":")
    print("| stage | Lambda | limit | empty lake | a | b per day | s per 1k orders/day "
          "| at 1 M/day, 3 years | rounds | years of history at 1 M orders/day "
          "| orders/day at 3 years | 1 M × 3 y fits |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for e in r["envelope"]:
        unit = "MiB" if e["limit"] == "memory" else "s"
        limit = f"{e['limit']} {e['limit_value']} {'MB' if unit == 'MiB' else 's'}"
        volume = e["orders_per_day_at_3_years"]
        volume = "∞" if volume is None else f"{round(volume):,}"
        years = e["years_at_1m_orders_per_day"]
        per_round = e.get("at_1m_rounds") or []
        per_round = f"{min(per_round):.0f}–{max(per_round):.0f}" if per_round else "-"
        verdict = e.get("verdict") or ("yes" if e["fits_1m_for_3_years"] else "no")
        print(f"| {STAGES[e['stage']][0]} | {e['lambda']} | {limit} | {e['fixed']:.2f} {unit} "
              f"| {e['intercept']:.2f} {unit} "
              f"| {e['slope_per_day']:.4f} {unit} "
              f"| {e['slope_per_order_per_day'] * 1000:.3f} {unit} "
              f"| {e['at_1m_for_3_years']:.0f} {unit} | {per_round} "
              f"| {'∞' if years is None else f'{years:.1f}'} | "
              f"{volume} | {verdict} |")


# ----------------------------------------------------------------------------- main

def grow(args, work, scale, horizons, functions, report):
    """Grows one lake in `work` a day at a time at `scale` to the largest of `horizons` (+1
    night), measuring the next night at each; with `report`, also the stages on an empty lake
    first (into report["empty_lake"]). Returns the measured points and each day's row counts."""
    lake_dir, scratch = work / "lake", work / "scratch"
    (lake_dir / "raw").mkdir(parents=True)
    scratch.mkdir()
    days = Days(args, lake_dir / "raw", scratch / "gen", first_day(horizons), scale)
    stages = Stages(args, lake_dir, scratch, functions)
    print(f"== growing one lake to {horizons[-1]} days (+1 night), scale {scale:g}, "
          f"measuring the next night at H={','.join(map(str, horizons))}; lake in {lake_dir}",
          flush=True)
    started = time.perf_counter()
    measured_s = 0.0
    points, volumes = [], []
    try:
        for k in range(1, horizons[-1] + 2):
            day = days.make(k)
            if k == 1 and report is not None:
                headers = {ds: Path(day["files"][ds]).open().readline() for ds in DATASETS}
                report["empty_lake"] = baseline(args, work, functions, headers, args.runs)
            history = k - 1
            if history in horizons:
                print(f"  H={history}: night {k} ({day['date']}), {args.runs} runs", flush=True)
                t0 = time.perf_counter()
                runs, compared, kept = measure_night(stages, day, lake_dir, work, args.runs,
                                                     args.threads)
                measured_s += time.perf_counter() - t0
                points.append({
                    "history_days": history, "night": k, "date": day["date"], "rows": day["rows"],
                    "silver_bytes": {ds: sum(p.stat().st_size for p in
                                             (lake_dir / "processed" / ds).rglob("*.parquet"))
                                     for ds in DATASETS},
                    "silver_files": {ds: sum(1 for _ in (lake_dir / "processed" / ds).rglob(
                        "*.parquet")) for ds in DATASETS},
                    "stages": {key: stage_figures(runs, key, picks)
                               for key, (_, picks) in STAGES.items()},
                    "gold_vs_duckdb": compared, "runs": runs, "before_night": str(kept),
                    "files": {ds: str(Path(f).resolve().relative_to(lake_dir.resolve()))
                              for ds, f in day["files"].items()}})
            else:
                aggregate = k % args.aggregate_every == 0 or k in horizons
                night(stages, day, measured=False, aggregate=aggregate)
            volumes.append({ds: sum(day["rows"][ds].values()) for ds in DATASETS})
            if k % 10 == 0:
                spent = time.perf_counter() - started
                building = (spent - measured_s) / k
                # A floor: nights whose cost grows with history make the rest slower still.
                left = (horizons[-1] + 1 - k) * building / 60
                print(f"  day {k}/{horizons[-1] + 1}: {spent / 60:.1f} min so far, "
                      f"{building:.1f} s per built day, at least {left:.0f} min to go", flush=True)
    finally:
        days.close()
    return points, volumes


def volume_probe(text):
    """`SCALE:H` (the probe's volume against --scale's, and its history in days) or `none`."""
    if text.strip().lower() in ("", "none", "0"):
        return None
    try:
        factor, h = text.split(":")
        factor, h = float(factor), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SCALE:H, e.g. 10:31, or none")
    if factor <= 1 or h < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: SCALE must be above 1 and H at least 1")
    return factor, h


def main():
    if sys.argv[1:2] == ["--make-days"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("--make-days", action="store_true")
        for a in ("--lake", "--raw-dir", "--gen-dir", "--first-day"):
            ap.add_argument(a, required=True)
        ap.add_argument("--scale", type=float, required=True)
        ap.add_argument("--seed", type=int, required=True)
        return serve_days(ap.parse_args())
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True, type=Path, help="the lake binary (release)")
    ap.add_argument("--work-dir", required=True, type=Path, help="the lake and scratch go here")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--horizons", default="7,90,365", help="history sizes (days) to measure at")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="rows per day against issue 15's shop (~30k orders)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each measured night")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--no-compact", dest="compact", action="store_false",
                    help="while building history, skip the nightly load markers and compaction "
                         "(production compacts silver every night after the load)")
    ap.add_argument("--aggregate-every", type=int, default=1,
                    help="while building history, run the scheduled aggregate every N nights "
                         "(1: every night, as production; the night before a measured one always)")
    ap.add_argument("--interleaved-rounds", type=int, default=5,
                    help="after the growth, run the measured nights again this many times, the "
                         "histories in turn (the targets and the envelope use these; 0: skip)")
    ap.add_argument("--template", type=Path, default=HERE.parent / "infra" / "template.yaml")
    ap.add_argument("--keep", action="store_true",
                    help="keep the lakes, and the lake before each measured night, in the work "
                         "dir (main/ and probe/)")
    ap.add_argument("--volume-probe", type=volume_probe, default=volume_probe("10:31"),
                    metavar="SCALE:H",
                    help="also grow a lake at SCALE times --scale's daily volume to H days and "
                         "measure its next night: the envelope's slope in the daily volume "
                         "(default 10:31, a full update window; 'none' to skip)")
    args = ap.parse_args()
    if not args.compact:
        # No compaction at all: no compact stage to measure.
        del STAGES["compact"], LAMBDA_OF["compact"]
    horizons = sorted({int(h) for h in args.horizons.split(",")})
    functions = lambda_limits(args.template)
    from importlib.metadata import version

    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    report = {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "threads": args.threads, "runs": args.runs,
              "scale": args.scale, "seed": args.seed, "aggregate_every": args.aggregate_every,
              "first_day": first_day(horizons).isoformat(), "update_share": UPDATE_SHARE,
              "update_window_days": UPDATE_WINDOW_DAYS,
              "duckdb_version": version("duckdb"), "template": str(args.template),
              "lambdas": functions, "horizons": []}
    started = time.perf_counter()
    report["horizons"], volumes = grow(args, work / "main", args.scale, horizons, functions,
                                       report)
    report["interleaved_rounds"] = args.interleaved_rounds if len(horizons) > 1 else 0
    if report["interleaved_rounds"]:
        print(f"== the measured nights again, interleaved: {args.interleaved_rounds} rounds",
              flush=True)
        interleave(args, work / "main", functions, report["horizons"], args.interleaved_rounds)
    if not args.keep:
        shutil.rmtree(work / "main", ignore_errors=True)
    report["build_minutes"] = (time.perf_counter() - started) / 60
    for ds in DATASETS:
        report[f"{ds}_per_day"] = round(statistics.mean(v[ds] for v in volumes[1:] or volumes))
    report["volume_probe"] = None
    if args.volume_probe:
        factor, h = args.volume_probe
        scale = args.scale * factor
        started = time.perf_counter()
        [point], volumes = grow(args, work / "probe", scale, [h], functions, None)
        point["scale"] = scale
        point["build_minutes"] = (time.perf_counter() - started) / 60
        for ds in DATASETS:
            point[f"{ds}_per_day"] = round(statistics.mean(v[ds] for v in volumes[1:] or volumes))
        report["volume_probe"] = point
    report["envelope"] = with_rounds(envelope(report, functions),
                                     envelope_rounds(report, functions))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    print(f"\nwritten: {args.out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    points = report["horizons"] + ([report["volume_probe"]] if report["volume_probe"] else [])
    if not all(h["gold_vs_duckdb"]["equal"] for h in points):
        sys.exit("gold differs from DuckDB's recompute of the same silver")


if __name__ == "__main__":
    main()
