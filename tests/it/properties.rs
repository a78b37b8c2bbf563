//! Property tests of the parser and processor: arbitrary bytes and mutated exports never panic,
//! and every row read is written, rejected or counted as a duplicate.

use proptest::prelude::*;
use shoplake::contract::Registry;
use shoplake::ingest::{FileJob, FileOutcome, process_file};

fn run(bytes: &[u8], dataset: &str, budget: usize) -> FileOutcome {
    let registry = Registry::builtin();
    let work = tempfile::tempdir().unwrap();
    let job = FileJob {
        contract: registry.get(dataset).unwrap(),
        batch_id: "b",
        source_uri: "mem://test",
        ingested_at_micros: 0,
        input_bytes: bytes.len() as u64,
        declared_csv_bytes: None,
        memory_budget_bytes: budget,
        work_dir: work.path(),
        limits: Default::default(),
    };
    process_file(bytes, &job).expect("in-memory input never fails to read")
}

fn assert_accounted(outcome: &FileOutcome) {
    if let FileOutcome::Processed(p) = outcome {
        assert_eq!(
            p.rows_read,
            p.rows_written + p.rows_rejected + p.duplicates_dropped
        );
        assert_eq!(
            p.files.iter().map(|f| f.file.rows).sum::<u64>(),
            p.rows_written
        );
    }
}

const ORDERS: &str = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
o1,c1,2026-11-21T10:00:00Z,paid,EU,EUR,12.50,2,2026-11-21T10:00:00Z\n\
o2,c2,\"2026-11-21 23:30:00\",shipped,na,usd,0.99,1,2026-11-21T23:30:00-05:00\n\
o1,c1,2026-11-21T10:00:00Z,delivered,EU,EUR,12.50,2,2026-11-22T10:00:00Z\n\
o3,c3,2026-11-20T10:00:00Z,cancelled,APAC,JPY,100,3,2026-11-20T10:00:00.5Z\n";

/// Cases per property: 300 in `make test`; `make fuzz` sets SHOPLAKE_FUZZ_CASES=100000.
fn cases() -> u32 {
    std::env::var("SHOPLAKE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        assert_accounted(&run(&bytes, "orders", 1 << 20));
    }

    #[test]
    fn mutated_exports_keep_every_row_accounted_for(
        edits in proptest::collection::vec((0usize..ORDERS.len(), any::<u8>(), 0u8..3), 0..12),
        tiny_budget in any::<bool>(),
    ) {
        let mut bytes = ORDERS.as_bytes().to_vec();
        for (pos, byte, op) in edits {
            let pos = pos.min(bytes.len().saturating_sub(1));
            match op {
                0 if !bytes.is_empty() => bytes[pos] = byte,
                1 => bytes.insert(pos, byte),
                _ if !bytes.is_empty() => { bytes.remove(pos); }
                _ => {}
            }
        }
        let outcome = run(&bytes, "orders", if tiny_budget { 1 } else { 1 << 20 });
        assert_accounted(&outcome);
    }

    #[test]
    fn valid_rows_survive_any_case_and_padding(pad in "[ \t]{0,3}", upper in any::<bool>()) {
        let status = if upper { "PAID" } else { "paid" };
        let csv = format!(
            "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
             {pad}o1{pad},c1,2026-11-21T10:00:00Z,{pad}{status},eu,eur,{pad}1.5{pad},1,2026-11-21T10:00:00Z\n"
        );
        match run(csv.as_bytes(), "orders", 1 << 20) {
            FileOutcome::Processed(p) => prop_assert_eq!((p.rows_written, p.rows_rejected), (1, 0)),
            other => prop_assert!(false, "rejected: {:?}", other),
        }
    }
}
