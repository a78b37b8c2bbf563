"""The envelope arithmetic of `bench_history.py` on synthetic measurements with a known model.

The README's claim "1 M orders a day for 3 years fits every Lambda" comes from `envelope`; these
tests build a report whose points lie exactly on chosen lines and check that the envelope gives
back those lines and the limits they imply. They also check which stages a night runs and
records, in what order (`NightTest`). Run by `make test` (`python3 -m unittest`).
"""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_history  # noqa: E402

V0, WINDOW = 30_000, 30
TARGET_V, TARGET_H = 1_000_000, 3 * 365
FUNCTIONS = {"aggregate": {"memory_mb": 3008, "timeout_s": 900}}


def point(h, rss, wall):
    return {"history_days": h,
            "stages": {"aggregate": {"peak_rss_mib": rss, "max_process_wall_s": wall}}}


def report(a, b, s, horizons=(7, 90, 365), probe=(300_000, 31), below_window=-50.0):
    """A report whose full-window points lie on a + b·H (memory; the timeout line is a tenth of
    it), shorter histories `below_window` off that line, and a probe at (V1, H1) on
    a + s·(V1 − V0) + b·H1·V1/V0."""
    line = lambda h: a + b * h + (below_window if h < WINDOW else 0.0)
    r = {"orders_per_day": V0, "update_window_days": WINDOW,
         "horizons": [point(h, line(h), line(h) / 10) for h in horizons],
         "empty_lake": {"aggregate": {"peak_rss_mib": 40.0, "max_process_wall_s": 4.0}}}
    if probe:
        v1, h1 = probe
        y1 = a + s * (v1 - V0) + b * h1 * v1 / V0
        r["volume_probe"] = {"orders_per_day": v1, "history_days": h1,
                             "stages": {"aggregate": {"peak_rss_mib": y1,
                                                      "max_process_wall_s": y1 / 10}}}
    return r


def memory_row(rows):
    return next(r for r in rows if r["stage"] == "aggregate" and r["limit"] == "memory")


class EnvelopeTest(unittest.TestCase):
    def test_the_lines_and_the_probe_slope_are_recovered(self):
        a, b, s = 400.0, 0.5, 0.001
        row = memory_row(bench_history.envelope(report(a, b, s), FUNCTIONS))
        # H=7 lies below the line: fitted only on 90 and 365, the line is exact.
        self.assertAlmostEqual(row["intercept"], a)
        self.assertAlmostEqual(row["slope_per_day"], b)
        self.assertAlmostEqual(row["slope_per_order_per_day"], s)
        self.assertEqual(row["volume_model"], "probe")
        expected = a + s * (TARGET_V - V0) + b * TARGET_H * TARGET_V / V0
        self.assertAlmostEqual(row["at_1m_for_3_years"], expected)
        self.assertEqual(row["fits_1m_for_3_years"], expected <= 3008)

    def test_the_limits_reported_lie_on_the_model(self):
        a, b, s = 300.0, 0.002, 0.0008
        row = memory_row(bench_history.envelope(report(a, b, s), FUNCTIONS))
        cost = lambda v, h: a + s * (v - V0) + b * h * v / V0
        # The volume allowed at 3 years and the years allowed at 1 M/day both reach the limit.
        self.assertAlmostEqual(cost(row["orders_per_day_at_3_years"], TARGET_H), 3008, places=6)
        self.assertAlmostEqual(cost(TARGET_V, 365 * row["years_at_1m_orders_per_day"]), 3008,
                               places=6)

    def test_a_flat_history_line_allows_any_history(self):
        row = memory_row(bench_history.envelope(report(500.0, 0.0, 0.001), FUNCTIONS))
        self.assertIsNone(row["years_at_1m_orders_per_day"])
        self.assertTrue(row["fits_1m_for_3_years"])

    def test_an_intercept_over_the_limit_at_1m_allows_no_history(self):
        row = memory_row(bench_history.envelope(report(500.0, 0.1, 0.01), FUNCTIONS))
        self.assertEqual(row["years_at_1m_orders_per_day"], 0.0)
        self.assertFalse(row["fits_1m_for_3_years"])

    def test_a_falling_line_is_not_extrapolated_below_its_intercept(self):
        r = report(450.0, 0.0, 0.001)
        r["horizons"][-1]["stages"]["aggregate"]["peak_rss_mib"] -= 20  # H=365 below H=90
        row = memory_row(bench_history.envelope(r, FUNCTIONS))
        self.assertEqual(row["slope_per_day"], 0.0)

    def test_without_a_probe_the_intercept_above_an_empty_lake_scales_with_volume(self):
        a, b = 400.0, 0.5
        row = memory_row(bench_history.envelope(report(a, b, 0.0, probe=None), FUNCTIONS))
        self.assertEqual(row["volume_model"], "proportional")
        fixed = 40.0
        expected = fixed + (a - fixed) * TARGET_V / V0 + b * TARGET_H * TARGET_V / V0
        self.assertAlmostEqual(row["at_1m_for_3_years"], expected)


class HistoryPointsTest(unittest.TestCase):
    def test_only_full_window_histories_when_two_or_more(self):
        hs = [p["history_days"] for p in bench_history.history_points(report(1, 1, 0))]
        self.assertEqual(hs, [90, 365])

    def test_every_history_when_fewer_than_two_are_full(self):
        r = report(1, 1, 0, horizons=(3, 10, 90))
        hs = [p["history_days"] for p in bench_history.history_points(r)]
        self.assertEqual(hs, [3, 10, 90])


def night_run(rss, wall):
    """One interleaved round's night, as `interleave` records it (the aggregate only)."""
    return {"aggregate": {"peak_rss_mib": rss, "wall_s": wall, "read_bytes": 0, "user_s": wall,
                          "sys_s": 0.0}}


def with_interleaved(r, rounds):
    """`r` with interleaved rounds: `rounds[i][j]` is round i's aggregate RSS at history j (its
    wall time a tenth of it), and the medians taken as `interleave` takes them."""
    for j, h in enumerate(r["horizons"]):
        h["interleaved_runs"] = [night_run(rnd[j], rnd[j] / 10) for rnd in rounds]
        h["interleaved"] = {"aggregate": bench_history.stage_figures(
            h["interleaved_runs"], "aggregate", bench_history.STAGES["aggregate"][1])}
    r["interleaved_rounds"] = len(rounds)
    return r


class InterleavedTest(unittest.TestCase):
    def test_the_envelope_fits_the_interleaved_medians_not_the_growth(self):
        # The growth's points lie on 400 + 0.5·H; the rounds' medians on 300 + 0.1·H.
        r = with_interleaved(report(400.0, 0.5, 0.0, probe=None),
                             [[250, 309, 336.5], [280, 309, 336.5], [260, 309, 336.5]])
        row = memory_row(bench_history.envelope(r, FUNCTIONS))
        self.assertAlmostEqual(row["intercept"], 300.0)
        self.assertAlmostEqual(row["slope_per_day"], 0.1)

    def test_a_verdict_the_rounds_disagree_on_is_unresolved(self):
        r = report(400.0, 0.5, 0.0, probe=None)
        # Round 2's H=365 point makes its slope, and its cost at 1 M/day for 3 years, far larger.
        r = with_interleaved(r, [[100, 100, 100.1], [100, 100, 160], [100, 100, 100.2]])
        rows = bench_history.with_rounds(bench_history.envelope(r, FUNCTIONS),
                                         bench_history.envelope_rounds(r, FUNCTIONS))
        row = memory_row(rows)
        self.assertTrue(row["fits_1m_for_3_years"])  # the medians' line (slope 0.1/275)
        self.assertEqual((row["fits_rounds"], row["rounds"]), (2, 3))
        self.assertEqual(row["verdict"], "unresolved: 2 of 3 rounds fit")
        self.assertEqual(len(row["at_1m_rounds"]), 3)

    def test_a_verdict_every_round_agrees_on_stands(self):
        rounds = bench_history.envelope_rounds
        fits = with_interleaved(report(400.0, 0.5, 0.0, probe=None),
                                [[100, 100, 100], [100, 101, 101], [100, 100, 100.1]])
        row = memory_row(bench_history.with_rounds(bench_history.envelope(fits, FUNCTIONS),
                                                   rounds(fits, FUNCTIONS)))
        self.assertEqual(row["verdict"], "yes")
        over = with_interleaved(report(400.0, 0.5, 0.0, probe=None),
                                [[100, 100, 200], [100, 110, 220], [100, 100, 250]])
        row = memory_row(bench_history.with_rounds(bench_history.envelope(over, FUNCTIONS),
                                                   rounds(over, FUNCTIONS)))
        self.assertEqual(row["verdict"], "no")

    def test_the_targets_take_the_median_of_the_rounds_own_ratios(self):
        # Round ratios H=365 / H=7: 1.2, 1.4 and 3.0 (a slow moment in round 3's H=365 night).
        r = with_interleaved(report(400.0, 0.5, 0.0, probe=None),
                             [[100, 0, 120], [200, 0, 280], [100, 0, 300]])
        self.assertEqual([round(x, 6) for x in
                          bench_history.round_ratios(r, "aggregate", "wall_s")], [1.2, 1.4, 3.0])
        time, rss = bench_history.target_ratios(r, "aggregate")
        self.assertAlmostEqual(time, 1.4)
        self.assertAlmostEqual(rss, 1.4)

    def test_without_rounds_the_targets_take_the_growths_medians(self):
        r = report(400.0, 0.5, 0.0, probe=None)
        r["horizons"][0]["stages"]["aggregate"]["wall_s"] = 2.0
        r["horizons"][-1]["stages"]["aggregate"]["wall_s"] = 3.0
        for h, rss in zip(r["horizons"], (100.0, 0.0, 250.0)):
            h["stages"]["aggregate"]["peak_rss_mib"] = rss
        self.assertEqual(bench_history.target_ratios(r, "aggregate"), (1.5, 2.5))

    def test_the_duckdb_target_takes_the_median_of_the_pairs_measured_together(self):
        def pair(ours, peer):
            return {"aggregate": {"wall_s": ours}, "duckdb": {"wall_s": peer}}
        r = report(400.0, 0.5, 0.0, probe=None)
        last = r["horizons"][-1]
        # The growth's runs: 8×, 12× and 9× (a slow DuckDB run in the middle).
        last["runs"] = [pair(3.0, 24.0), pair(2.0, 24.0), pair(3.0, 27.0)]
        self.assertEqual(bench_history.duckdb_ratios(r), (9.0, [8.0, 12.0, 9.0], "growth runs"))
        # Rounds that paired them: 10×, 11×, 14×; only the longest history runs the peer.
        last["interleaved_runs"] = [pair(3.0, 30.0), pair(2.0, 22.0), pair(2.0, 28.0)]
        r["horizons"][0]["interleaved_runs"] = [night_run(100, 1.0)] * 3
        self.assertEqual(bench_history.duckdb_ratios(r),
                         (11.0, [10.0, 11.0, 14.0], "interleaved rounds"))


class FakeStages:
    """The stages as `night` calls them, recording the calls (no `lake` process)."""

    def __init__(self, compact=True, lake_dir="/nonexistent"):
        self.compact, self.calls, self.dir = compact, [], lake_dir
        self.written = []  # files the fake ingest writes under processed/

    def ingest(self, ds, file, measured):
        self.calls.append(("ingest", ds))
        for path in self.written:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(ds)
        return {"batch_id": f"batch-{ds}"}

    def quality(self, batch, measured):
        self.calls.append(("quality", batch))
        return {}

    def aggregate(self, measured):
        self.calls.append(("aggregate",))
        return {"wall_s": 2.0}

    def load_and_compact(self, batches, measured, at):
        self.calls.append(("compact", tuple(batches), measured))
        self.at = at
        return {"wall_s": 1.0}


DAY = {"date": "2026-03-04", "files": {ds: f"{ds}.csv" for ds in bench_history.DATASETS}}


class NightTest(unittest.TestCase):
    def test_a_measured_night_times_the_compaction_of_its_batches_after_the_aggregate(self):
        stages = FakeStages()
        r = bench_history.night(stages, DAY, measured=True)
        self.assertEqual(r["compact"], {"wall_s": 1.0})
        batches = tuple((ds, f"batch-{ds}") for ds in bench_history.DATASETS)
        self.assertEqual(stages.calls[-2:], [("aggregate",), ("compact", batches, True)])

    def test_a_night_building_history_compacts_without_recording_it(self):
        stages = FakeStages()
        r = bench_history.night(stages, DAY, measured=False)
        self.assertNotIn("compact", r)
        self.assertEqual(stages.calls[-1][0], "compact")

    def test_the_peer_can_run_between_the_aggregate_and_the_compaction(self):
        stages = FakeStages()
        r = bench_history.night(stages, DAY, measured=True, compact=False)
        self.assertEqual(stages.calls[-1], ("aggregate",))
        bench_history.compact_night(stages, r, measured=True)
        self.assertEqual(r["compact"], {"wall_s": 1.0})

    def test_without_compaction_a_night_has_no_compact_stage(self):
        stages = FakeStages(compact=False)
        r = bench_history.night(stages, DAY, measured=True)
        self.assertNotIn("compact", r)
        self.assertNotIn("compact", [c[0] for c in stages.calls])

    def test_a_night_runs_on_its_own_clock(self):
        """The silver files a night writes carry 23:30 of its day and the compaction runs at
        03:00 the next morning; files of earlier nights keep their times."""
        import os
        import tempfile
        from datetime import datetime, timezone
        with tempfile.TemporaryDirectory() as tmp:
            lake = Path(tmp)
            old = lake / "processed" / "orders" / "order_date=2026-01-01" / "part-a.parquet"
            old.parent.mkdir(parents=True)
            old.write_text("earlier night")
            then = datetime(2026, 1, 1, 23, 30, tzinfo=timezone.utc).timestamp()
            os.utime(old, (then, then))
            stages = FakeStages(lake_dir=tmp)
            new = lake / "processed" / "orders" / "order_date=2026-03-04" / "part-b.parquet"
            stages.written = [new]
            bench_history.night(stages, DAY, measured=True)
            self.assertEqual(stages.at, datetime(2026, 3, 5, 3, 0, tzinfo=timezone.utc))
            self.assertEqual(os.stat(new).st_mtime,
                             datetime(2026, 3, 4, 23, 30, tzinfo=timezone.utc).timestamp())
            self.assertEqual(os.stat(old).st_mtime, then)


if __name__ == "__main__":
    unittest.main()
