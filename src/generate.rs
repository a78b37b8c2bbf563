//! Synthetic daily exports (`customers.csv`, `orders.csv`, `payments.csv`) with realistic values
//! and, on request, injected defects of every kind the contracts reject, plus duplicates and
//! newer versions. Alongside the files it reports what a correct ingest must count, so tests and
//! the demo can check the pipeline against ground truth.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::contract::Registry;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub customers: usize,
    pub orders: usize,
    pub seed: u64,
    /// Share of rows (0..=1) given a defect: a rule violation, a duplicate or a newer version.
    pub defect_rate: f64,
    /// Last day of the export window (UTC).
    pub end_date: NaiveDate,
    pub days: u32,
}

/// What a correct ingest of a generated file reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub rows: u64,
    pub written: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Valid rows referring to a key absent from the parent dataset.
    pub orphans: u64,
    /// Injected defects by kind.
    pub defects: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratedFile {
    pub dataset: String,
    pub path: PathBuf,
    pub expected: Expected,
}

/// SplitMix64: tiny, fast and stable across versions, so a seed always means the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const REGIONS: &[(&str, &[&str], &[&str])] = &[
    (
        "NA",
        &["US", "US", "US", "CA", "MX"],
        &["USD", "USD", "CAD"],
    ),
    (
        "EU",
        &["DE", "FR", "GB", "ES", "IT", "NL"],
        &["EUR", "EUR", "GBP"],
    ),
    ("APAC", &["JP", "AU", "SG", "IN"], &["JPY", "AUD", "SGD"]),
    ("LATAM", &["BR", "AR", "CL", "CO"], &["BRL", "ARS"]),
    // Namibia's code is NA: a country, never a null.
    ("MEA", &["AE", "ZA", "SA", "NA"], &["AED", "ZAR"]),
];
const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Grace", "Hiro", "Inés", "Jamal", "Ken",
    "Lea",
];
const LAST: &[&str] = &[
    "García",
    "Smith, Jr.",
    "O'Brien",
    "Nguyen",
    "Okafor",
    "Müller",
    "Tanaka",
    "Silva",
    "Haddad",
    "Kowalski",
];
const ORDER_STATUS: &[&str] = &[
    "placed",
    "paid",
    "paid",
    "shipped",
    "shipped",
    "delivered",
    "delivered",
    "delivered",
    "cancelled",
    "returned",
];
const METHODS: &[&str] = &[
    "card",
    "card",
    "card",
    "paypal",
    "bank_transfer",
    "wallet",
    "gift_card",
];

/// One CSV row under construction; `bytes` lets a defect plant invalid UTF-8.
type Row = Vec<Vec<u8>>;

fn row(fields: &[&str]) -> Row {
    fields.iter().map(|f| f.as_bytes().to_vec()).collect()
}

fn ts_text(rng: &mut Rng, t: NaiveDateTime) -> String {
    match rng.below(10) {
        0 => {
            // Same instant, written in New York time.
            let local = t - Duration::hours(5);
            format!("{}-05:00", local.format("%Y-%m-%dT%H:%M:%S"))
        }
        1 => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        2 => format!(
            "{}.{:06}Z",
            t.format("%Y-%m-%dT%H:%M:%S"),
            rng.below(1_000_000)
        ),
        _ => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A rule violation planted in `row` (column positions as written by this generator).
fn break_row(rng: &mut Rng, dataset: &str, row: &mut Row) -> &'static str {
    let kinds: &[&str] = match dataset {
        "customers" => &[
            "missing_required",
            "bad_email",
            "bad_region",
            "bad_country",
            "bad_date",
            "bad_timestamp",
            "extra_field",
            "missing_field",
            "invalid_utf8",
        ],
        "orders" => &[
            "missing_required",
            "bad_timestamp",
            "bad_status",
            "bad_region",
            "bad_currency",
            "negative_amount",
            "too_many_decimals",
            "zero_items",
            "extra_field",
            "missing_field",
            "invalid_utf8",
        ],
        _ => &[
            "missing_required",
            "bad_timestamp",
            "bad_method",
            "bad_status",
            "zero_amount",
            "too_many_decimals",
            "bad_currency",
            "extra_field",
            "missing_field",
            "invalid_utf8",
        ],
    };
    let kind = *rng.pick(kinds);
    let set = |row: &mut Row, i: usize, v: &str| row[i] = v.as_bytes().to_vec();
    match (dataset, kind) {
        (_, "missing_required") => set(row, 0, " "),
        (_, "extra_field") => row.push(b"unexpected".to_vec()),
        (_, "missing_field") => {
            row.pop();
        }
        (_, "invalid_utf8") => row[1] = vec![b'x', 0xC3, 0x28, b'y'],
        ("customers", "bad_email") => set(row, 1, "not-an-email"),
        ("customers", "bad_region") => set(row, 4, "Antarctica"),
        ("customers", "bad_country") => set(row, 5, "XX"),
        ("customers", "bad_date") => set(row, 6, "2026-02-30"),
        ("customers", "bad_timestamp") => set(row, 7, "yesterday"),
        ("orders", "bad_timestamp") => set(row, 2, "21/11/2026 10:00"),
        ("orders", "bad_status") => set(row, 3, "lost_in_space"),
        ("orders", "bad_region") => set(row, 4, "Atlantis"),
        ("orders", "bad_currency") => set(row, 5, "EURO"),
        ("orders", "negative_amount") => set(row, 6, "-12.00"),
        ("orders", "too_many_decimals") => set(row, 6, "12.345"),
        ("orders", "zero_items") => set(row, 7, "0"),
        ("payments", "bad_timestamp") => set(row, 2, "2026-11-21T25:00:00Z"),
        ("payments", "bad_method") => set(row, 3, "barter"),
        ("payments", "bad_status") => set(row, 4, "maybe"),
        ("payments", "zero_amount") => set(row, 5, "0.00"),
        ("payments", "too_many_decimals") => set(row, 5, "9.999"),
        ("payments", "bad_currency") => set(row, 6, "12"),
        _ => unreachable!("every listed kind has a rule for its dataset"),
    }
    kind
}

/// Writes rows, injecting defects, and tallies what an ingest must report.
struct DatasetWriter {
    dataset: &'static str,
    writer: csv::Writer<BufWriter<File>>,
    expected: Expected,
    version_column: usize,
}

impl DatasetWriter {
    /// A writer for `dataset`, with the contract's columns as header (rows are built in that order).
    fn create(
        dir: &Path,
        registry: &Registry,
        dataset: &'static str,
    ) -> io::Result<(Self, PathBuf)> {
        let contract = registry
            .get(dataset)
            .expect("the generator writes built-in datasets");
        let path = dir.join(format!("{dataset}.csv"));
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(BufWriter::new(File::create(&path)?));
        writer.write_record(contract.columns.iter().map(|c| c.name.as_str()))?;
        let w = DatasetWriter {
            dataset,
            writer,
            expected: Expected::default(),
            version_column: contract.version,
        };
        Ok((w, path))
    }

    fn write(&mut self, row: &Row) -> io::Result<()> {
        self.expected.rows += 1;
        self.writer.write_record(row).map_err(io::Error::from)
    }

    /// Writes a valid row, possibly with a defect; returns whether it stays valid.
    fn emit(&mut self, rng: &mut Rng, mut row: Row, defect_rate: f64) -> io::Result<bool> {
        if !rng.chance(defect_rate) {
            self.expected.written += 1;
            self.write(&row)?;
            return Ok(true);
        }
        let kind = match rng.below(5) {
            0 => {
                // An exact duplicate later in the file.
                self.write(&row)?;
                self.write(&row)?;
                self.expected.written += 1;
                self.expected.duplicates += 1;
                "exact_duplicate"
            }
            1 => {
                // A newer version of the same key: the later updated_at wins.
                self.write(&row)?;
                let mut newer = row.clone();
                let v = String::from_utf8_lossy(&row[self.version_column]).into_owned();
                let t = crate::values::parse_timestamp(&v).expect("generated timestamps parse");
                let later = crate::values::format_timestamp(t + 3_600_000_000);
                newer[self.version_column] = later.into_bytes();
                self.write(&newer)?;
                self.expected.written += 1;
                self.expected.duplicates += 1;
                "newer_version"
            }
            _ => {
                let kind = break_row(rng, self.dataset, &mut row);
                self.write(&row)?;
                self.expected.rejected += 1;
                *self.expected.defects.entry(kind.to_owned()).or_default() += 1;
                return Ok(false);
            }
        };
        *self.expected.defects.entry(kind.to_owned()).or_default() += 1;
        Ok(true)
    }

    fn finish(mut self, path: PathBuf) -> io::Result<GeneratedFile> {
        self.writer.flush()?;
        Ok(GeneratedFile {
            dataset: self.dataset.to_owned(),
            path,
            expected: self.expected,
        })
    }
}

/// Writes the three exports into `dir`.
pub fn generate(dir: &Path, opts: &GenerateOptions) -> io::Result<Vec<GeneratedFile>> {
    std::fs::create_dir_all(dir)?;
    let registry = Registry::builtin();
    let mut rng = Rng(opts.seed);
    let start = opts.end_date - Duration::days(i64::from(opts.days.max(1)) - 1);
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists");
    let window_secs = i64::from(opts.days.max(1)) * 86_400;
    let orphan_rate = opts.defect_rate / 4.0;

    // customers
    let (mut out, path) = DatasetWriter::create(dir, &registry, "customers")?;
    let mut regions = Vec::with_capacity(opts.customers);
    for i in 0..opts.customers {
        let (region, countries, _) = *rng.pick(REGIONS);
        regions.push(region);
        let id = format!("C{i:07}");
        let email = format!("{}.{i}@example.com", rng.pick(FIRST).to_lowercase());
        let signup = start - Duration::days(rng.below(900) as i64);
        let updated = midnight(start) + Duration::seconds(rng.below(window_secs as u64) as i64);
        // Mixed case and padding exercise normalisation.
        let region_text = if rng.below(8) == 0 {
            region.to_lowercase()
        } else {
            region.to_owned()
        };
        let country = if rng.below(10) == 0 {
            String::new()
        } else {
            rng.pick(countries).to_string()
        };
        let updated = ts_text(&mut rng, updated);
        let r = row(&[
            &id,
            &email,
            *rng.pick(FIRST),
            *rng.pick(LAST),
            &region_text,
            &country,
            &signup.format("%Y-%m-%d").to_string(),
            &updated,
        ]);
        out.emit(&mut rng, r, opts.defect_rate)?;
    }
    let mut files = vec![out.finish(path)?];

    // orders
    let (mut out, path) = DatasetWriter::create(dir, &registry, "orders")?;
    struct Order {
        id: String,
        ts: NaiveDateTime,
        status: &'static str,
        currency: &'static str,
        cents: u64,
    }
    let mut orders = Vec::with_capacity(opts.orders);
    for i in 0..opts.orders {
        let orphan = opts.customers == 0 || rng.chance(orphan_rate);
        let (customer_id, region) = if orphan {
            (format!("C9{i:07}"), *rng.pick(REGIONS))
        } else {
            let c = rng.below(opts.customers as u64) as usize;
            let region = REGIONS
                .iter()
                .find(|r| r.0 == regions[c])
                .copied()
                .unwrap_or(REGIONS[0]);
            (format!("C{c:07}"), region)
        };
        let id = format!("O{i:08}");
        let ts = midnight(start) + Duration::seconds(rng.below(window_secs as u64) as i64);
        let status = *rng.pick(ORDER_STATUS);
        let currency = *rng.pick(region.2);
        let items = 1 + rng.below(6);
        let cents = items * (499 + rng.below(12_000));
        let updated = ts + Duration::minutes(rng.below(600) as i64);
        let status_text = if rng.below(10) == 0 {
            status.to_uppercase()
        } else {
            status.to_owned()
        };
        let (ts_s, up_s) = (ts_text(&mut rng, ts), ts_text(&mut rng, updated));
        let r = row(&[
            &id,
            &customer_id,
            &ts_s,
            &status_text,
            region.0,
            currency,
            &money(cents),
            &items.to_string(),
            &up_s,
        ]);
        if out.emit(&mut rng, r, opts.defect_rate)? {
            out.expected.orphans += u64::from(orphan);
            orders.push(Order {
                id,
                ts,
                status,
                currency,
                cents,
            });
        }
    }
    files.push(out.finish(path)?);

    // payments
    let (mut out, path) = DatasetWriter::create(dir, &registry, "payments")?;
    let mut next_payment = 0u64;
    let mut pay = |rng: &mut Rng,
                   out: &mut DatasetWriter,
                   order_id: &str,
                   ts: NaiveDateTime,
                   status: &str,
                   cents: u64,
                   currency: &str,
                   orphan: bool|
     -> io::Result<()> {
        let id = format!("P{next_payment:08}");
        next_payment += 1;
        let settled = ts + Duration::minutes(rng.below(120) as i64);
        let (ts_s, up_s) = (ts_text(rng, ts), ts_text(rng, settled));
        let r = row(&[
            &id,
            order_id,
            &ts_s,
            *rng.pick(METHODS),
            status,
            &money(cents),
            currency,
            &up_s,
        ]);
        if out.emit(rng, r, opts.defect_rate)? {
            out.expected.orphans += u64::from(orphan);
        }
        Ok(())
    };
    for o in &orders {
        let ts = o.ts + Duration::minutes(1 + rng.below(30) as i64);
        if rng.below(12) == 0 {
            pay(
                &mut rng,
                &mut out,
                &o.id,
                ts - Duration::minutes(1),
                "failed",
                o.cents,
                o.currency,
                false,
            )?;
        }
        let status = match o.status {
            "placed" => "pending",
            "cancelled" => *rng.pick(&["failed", "refunded"]),
            "returned" => "refunded",
            _ => "succeeded",
        };
        pay(
            &mut rng, &mut out, &o.id, ts, status, o.cents, o.currency, false,
        )?;
        if rng.chance(orphan_rate) {
            let orphan_order = format!("O9{:08}", rng.below(100_000_000));
            pay(
                &mut rng,
                &mut out,
                &orphan_order,
                ts,
                "succeeded",
                1_000,
                o.currency,
                true,
            )?;
        }
    }
    files.push(out.finish(path)?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(defect_rate: f64) -> GenerateOptions {
        GenerateOptions {
            customers: 50,
            orders: 200,
            seed: 7,
            defect_rate,
            end_date: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
            days: 3,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(a.path(), &opts(0.2)).unwrap();
        generate(b.path(), &opts(0.2)).unwrap();
        for name in ["customers.csv", "orders.csv", "payments.csv"] {
            assert_eq!(
                std::fs::read(a.path().join(name)).unwrap(),
                std::fs::read(b.path().join(name)).unwrap()
            );
        }
    }

    #[test]
    fn expectations_add_up_and_clean_data_has_no_defects() {
        let dir = tempfile::tempdir().unwrap();
        for f in generate(dir.path(), &opts(0.3)).unwrap() {
            let e = &f.expected;
            assert_eq!(
                e.rows,
                e.written + e.rejected + e.duplicates,
                "{}",
                f.dataset
            );
            assert!(e.rejected > 0 && e.duplicates > 0, "{}: {e:?}", f.dataset);
        }
        let clean = tempfile::tempdir().unwrap();
        for f in generate(clean.path(), &opts(0.0)).unwrap() {
            assert_eq!(
                (
                    f.expected.rejected,
                    f.expected.duplicates,
                    f.expected.orphans
                ),
                (0, 0, 0),
                "{}",
                f.dataset
            );
        }
    }
}
