//! The SAM template against the workspace: every function crate is deployed, every deployed
//! function is built from a crate that exists, and each is wired the way the pipeline needs.
//! (cfn-lint and checkov check the template itself; `make test` runs them.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Resources of the template: name → its lines (the template keeps one property per line, two
/// spaces per level, which is all this reader relies on).
fn resources(template: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_resources = false;
    let mut current: Option<String> = None;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_resources = line.trim_end() == "Resources:";
            current = None;
            continue;
        }
        if !in_resources {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 2 && text.ends_with(':') && !text.starts_with('#') {
            let name = text.trim_end_matches(':').to_owned();
            out.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if let Some(name) = &current {
            out.get_mut(name).expect("inserted").push(text.to_owned());
        }
    }
    out
}

fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

fn function_crates() -> BTreeSet<String> {
    std::fs::read_dir(root().join("functions"))
        .expect("functions/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn template() -> String {
    std::fs::read_to_string(root().join("infra/template.yaml")).expect("infra/template.yaml")
}

#[test]
fn every_function_crate_is_deployed_and_every_function_has_a_crate() {
    let template = template();
    let resources = resources(&template);
    let functions: BTreeMap<&String, &Vec<String>> = resources
        .iter()
        .filter(|(_, lines)| value(lines, "Type") == Some("AWS::Serverless::Function"))
        .collect();
    assert!(
        !functions.is_empty(),
        "no AWS::Serverless::Function in the template"
    );

    let mut deployed = BTreeSet::new();
    for (name, lines) in &functions {
        let code_uri = value(lines, "CodeUri").unwrap_or_else(|| panic!("{name} has no CodeUri"));
        let dir = root().join("infra").join(code_uri);
        assert!(
            dir.join("Cargo.toml").is_file(),
            "{name}: CodeUri {code_uri} is not a crate ({} has no Cargo.toml)",
            dir.display()
        );
        let crate_name = Path::new(code_uri)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            value(lines, "BuildMethod"),
            Some("rust-cargolambda"),
            "{name} must be built by cargo-lambda"
        );
        assert_eq!(
            value(lines, "BuildProperties"),
            Some(format!("{{ Binary: {crate_name} }}").as_str()),
            "{name} must build the binary of its crate"
        );
        assert!(
            lines.iter().any(|l| l == "MaximumRetryAttempts: 2"),
            "{name}: async invocations retry at most twice"
        );
        assert!(
            lines.iter().any(|l| l == "OnFailure:"),
            "{name}: failures need a destination"
        );
        assert!(
            deployed.insert(crate_name.clone()),
            "two functions build {crate_name}"
        );
    }
    assert_eq!(
        deployed,
        function_crates(),
        "template functions and crates under functions/ differ"
    );

    for global in [
        "Runtime: provided.al2023",
        "Architectures: [arm64]",
        "Handler: bootstrap",
    ] {
        assert!(
            template.lines().any(|l| l.trim() == global),
            "Globals must set {global}"
        );
    }
}

/// What the schedules send is what the functions are tested with (the files in `events/`).
#[test]
fn scheduled_inputs_match_the_sample_events() {
    let template = template();
    let resources = resources(&template);
    let alert = &resources["AlertFunction"];
    let inputs: Vec<serde_json::Value> = alert
        .iter()
        .filter_map(|l| l.strip_prefix("Input: "))
        .map(|i| serde_json::from_str(i.trim_matches('\'')).expect("Input is JSON"))
        .collect();
    for sample in [
        "alert-sla-check.json",
        "alert-flush-digest.json",
        "alert-arrival-check.json",
    ] {
        let text = std::fs::read_to_string(root().join("events").join(sample)).expect(sample);
        let event: serde_json::Value = serde_json::from_str(&text).expect(sample);
        assert!(
            inputs.contains(&event),
            "no alert schedule sends events/{sample}: {inputs:?}"
        );
    }
    for (function, cron) in [
        ("AggregateFunction", "cron(0 2 * * ? *)"),
        ("LoadFunction", "cron(0 2 * * ? *)"),
        ("AlertFunction", "cron(0 4 * * ? *)"),
        // After the load, whose markers make a batch's files eligible for compaction.
        ("CompactFunction", "cron(0 3 * * ? *)"),
    ] {
        assert!(
            resources[function]
                .iter()
                .any(|l| l == &format!("ScheduleExpression: {cron}")),
            "{function} must run at {cron}"
        );
    }
}

/// The function roles grant only what their stage touches: no action or resource wildcards
/// outside the two Data API calls that take no resource.
#[test]
fn roles_name_their_actions_and_resources() {
    let template = template();
    let mut effect = "";
    for (n, line) in template.lines().enumerate() {
        let t = line.trim().trim_start_matches("- ");
        if let Some(e) = t.strip_prefix("Effect:") {
            effect = e.trim();
        }
        // Deny-all-without-TLS and the key policy's grant to the account are wildcards by design.
        let wildcard = t.starts_with("Action:") && t.contains(":*") && t != "Action: kms:*";
        assert!(
            !(wildcard && effect == "Allow"),
            "line {}: wildcard action: {t}",
            n + 1
        );
    }
    let star_resources: Vec<usize> = template
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "Resource: \"*\"")
        .map(|(n, _)| n + 1)
        .collect();
    // The KMS key policy (its own key, by definition "*") has three; the Data API one.
    assert_eq!(
        star_resources.len(),
        4,
        "unexpected Resource \"*\" at lines {star_resources:?}"
    );
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|l| l == wanted)
}

/// The wiring the pipeline depends on: what triggers what, ordering, retention.
#[test]
fn triggers_destinations_and_retention_are_as_the_pipeline_needs() {
    let template = template();
    let r = resources(&template);
    for (function, prefix, suffix) in [
        ("IngestFunction", "raw/", ".csv"),
        ("IngestFunction", "raw/", ".csv.gz"),
        ("QualityFunction", "manifests/", ".json"),
    ] {
        let rule = format!(
            "Rules: [{{ Name: prefix, Value: {prefix} }}, {{ Name: suffix, Value: {suffix} }}]"
        );
        assert!(
            has(&r[function], &rule),
            "{function} must fire on {prefix}*{suffix}"
        );
    }
    // Quality verdicts and batches that failed to load reach on-call through the alert function.
    for function in ["QualityFunction", "LoadFunction"] {
        let lines = &r[function];
        let on_success = lines
            .iter()
            .position(|l| l == "OnSuccess:")
            .expect("OnSuccess");
        assert_eq!(
            lines[on_success + 2],
            "Destination: !GetAtt AlertFunction.Arn",
            "{function}"
        );
    }
    // Ordered, read-modify-write stages run one at a time.
    for function in [
        "LoadFunction",
        "AlertFunction",
        "AggregateFunction",
        "CompactFunction",
    ] {
        assert!(
            has(&r[function], "ReservedConcurrentExecutions: 1"),
            "{function} must not run concurrently"
        );
    }
    // The alert function cannot report its own failures to itself.
    assert!(has(&r["AlertFunction"], "Type: SQS"));
    let bucket = &r["DataBucket"];
    for rule in [
        "- { Id: raw-30-days, Status: Enabled, Prefix: raw/, ExpirationInDays: 30 }",
        // The silver retention the code assumes (reference windows, the catalog sweep) is the
        // lifecycle rule's.
        &format!(
            "- {{ Id: processed-{0}-days, Status: Enabled, Prefix: processed/, ExpirationInDays: {0} }}",
            shoplake::layout::SILVER_RETENTION_DAYS
        ),
        "- { Id: gold-5-years, Status: Enabled, Prefix: gold/, ExpirationInDays: 1827 }",
        "- { Id: quarantine-90-days, Status: Enabled, Prefix: quarantine/, ExpirationInDays: 90 }",
        "SSEAlgorithm: aws:kms",
        "VersioningConfiguration: { Status: Enabled }",
    ] {
        assert!(has(bucket, rule), "the data bucket lacks: {rule}");
    }
}

/// One incident pages once: no alarm on a function's transient errors (a retry absorbs them;
/// an event that exhausts its retries reaches the alert function or the dead-letter queue), no
/// alarm repeating the SLA email, and failures and warnings can go to different addresses.
#[test]
fn pages_are_for_what_is_lost_and_warnings_can_go_elsewhere() {
    let template = template();
    let resources = resources(&template);
    let alarms: Vec<(&String, &Vec<String>)> = resources
        .iter()
        .filter(|(_, lines)| value(lines, "Type") == Some("AWS::CloudWatch::Alarm"))
        .collect();
    for (name, lines) in &alarms {
        let metric = value(lines, "MetricName").unwrap_or_default();
        assert!(
            !["Errors", "SlaBreaches"].contains(&metric),
            "{name} pages on {metric}, which a retry or the sla_breach email already covers"
        );
    }
    let metric_of = |name: &str| value(&resources[name], "MetricName").map(str::to_owned);
    assert_eq!(
        metric_of("DeadLetterQueueAlarm").as_deref(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    assert_eq!(
        metric_of("NoSuccessfulLoadAlarm").as_deref(),
        Some("LoadSucceeded")
    );
    // Every function that has one sends its exhausted events to the alert function or the queue.
    for (name, lines) in &resources {
        if value(lines, "Type") != Some("AWS::Serverless::Function") {
            continue;
        }
        let text = lines.join("\n");
        assert!(
            text.contains("Destination: !GetAtt AlertFunction.Arn")
                || text.contains("Destination: !GetAtt DeadLetterQueue.Arn"),
            "{name}: an event that exhausts its retries must reach the alert function or the DLQ"
        );
    }

    let main = resources["AlertEmailSubscription"].join("\n");
    assert!(
        main.contains("- HasWarningEmail")
            && main.contains("{ severity: [fail, { exists: false }] }"),
        "with a warnings address, on-call gets failures and alarms only:\n{main}"
    );
    let warn = &resources["WarningEmailSubscription"];
    assert_eq!(value(warn, "Condition"), Some("HasWarningEmail"));
    assert_eq!(value(warn, "FilterPolicy"), Some("{ severity: [warn] }"));
    assert!(template.contains("  HasWarningEmail: !Not [!Equals [!Ref WarningEmail, \"\"]]"));
}

/// With enhanced VPC routing COPY reaches S3 only through the VPC: every subnet of the
/// workgroup is on a route table that has an S3 gateway endpoint (of the same VPC).
#[test]
fn copy_has_a_path_to_s3_from_the_workgroup() {
    let template = template();
    let r = resources(&template);
    let workgroup = &r["RedshiftWorkgroup"];
    assert_eq!(value(workgroup, "EnhancedVpcRouting"), Some("true"));
    assert_eq!(value(workgroup, "PubliclyAccessible"), Some("false"));
    let subnets: Vec<String> = value(workgroup, "SubnetIds")
        .expect("the workgroup names its subnets")
        .trim_matches(['[', ']'])
        .split(',')
        .map(|s| s.trim().trim_start_matches("!Ref ").to_owned())
        .collect();
    assert!(subnets.len() >= 3, "{subnets:?}");
    let endpoints: Vec<&Vec<String>> = r
        .values()
        .filter(|l| {
            value(l, "Type") == Some("AWS::EC2::VPCEndpoint")
                && value(l, "VpcEndpointType") == Some("Gateway")
                && value(l, "ServiceName").is_some_and(|s| s.ends_with(".s3\""))
        })
        .collect();
    assert!(!endpoints.is_empty(), "an S3 gateway endpoint");
    for subnet in &subnets {
        let vpc = value(&r[subnet], "VpcId").expect("subnet VpcId");
        let table = r
            .values()
            .find(|l| {
                value(l, "Type") == Some("AWS::EC2::SubnetRouteTableAssociation")
                    && value(l, "SubnetId") == Some(&format!("!Ref {subnet}"))
            })
            .and_then(|l| value(l, "RouteTableId"))
            .unwrap_or_else(|| panic!("{subnet} has no route table"));
        let table_name = table.trim_start_matches("!Ref ");
        assert!(
            endpoints.iter().any(|e| value(e, "VpcId") == Some(vpc)
                && value(e, "RouteTableIds").is_some_and(|t| t.contains(table_name))),
            "no S3 gateway endpoint on {table_name}, the route table of {subnet}"
        );
    }
}

/// The statements of one inline policy, as text (from its `PolicyName:` to the next one).
fn policy(template: &str, name: &str) -> String {
    let start = template
        .find(&format!("PolicyName: {name}\n"))
        .unwrap_or_else(|| panic!("no policy {name}"));
    let rest = &template[start + 1..];
    let end = rest.find("PolicyName:").unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[test]
fn ingest_and_quality_can_reach_the_key_index_and_ingest_reads_back_its_silver() {
    let template = template();
    let ingest = policy(&template, "ingest");
    assert!(
        ingest.contains("Action: s3:PutObject\n                Resource:\n                  - !Sub \"arn:${AWS::Partition}:s3:::shoplake-${StageName}-data-${AWS::AccountId}-${AWS::Region}/index/*/delta/*\""),
        "ingest writes its batch's keys under index/<dataset>/delta/, and only there: {ingest}"
    );
    for name in ["quality", "compact"] {
        let p = policy(&template, name);
        assert!(
            p.contains("Action: [s3:GetObject, s3:PutObject, s3:DeleteObject]")
                && p.contains("/index/*\"")
                && p.contains("index/*, keys/*] }"),
            "{name} must list, read, write and delete index/* (merging the waiting keys): {p}"
        );
    }
    let at = ingest.find("Action: s3:GetObject\n                Resource:\n                  - !Sub \"arn:${AWS::Partition}:s3:::shoplake-${StageName}-data-${AWS::AccountId}-${AWS::Region}/processed/*\"");
    assert!(
        at.is_some(),
        "ingest reads its own silver back to index its keys"
    );
    assert!(
        !policy(&template, "aggregate").contains("/index/*"),
        "only the stages that use the index reach it"
    );
}

/// Silver files' key lists (`keys/`): ingest and compaction write them with their files,
/// compaction deletes its inputs' lists, the reference checks list and read them; they expire
/// with silver, so a list never outlives its file by a lifecycle's length.
#[test]
fn the_key_lists_of_silver_files_are_reachable_where_used_and_expire_with_silver() {
    let template = template();
    let bucket =
        "arn:${AWS::Partition}:s3:::shoplake-${StageName}-data-${AWS::AccountId}-${AWS::Region}";
    let lists = format!("- !Sub \"{bucket}/keys/*\"");
    let ingest = policy(&template, "ingest");
    assert!(
        ingest.contains(&format!(
            "Action: s3:PutObject\n                Resource:\n                  {lists}"
        )),
        "ingest writes its files' key lists: {ingest}"
    );
    let quality = policy(&template, "quality");
    assert!(
        quality.contains(&lists) && quality.contains("index/*, keys/*] }"),
        "the quality checks list and read the key lists: {quality}"
    );
    let compact = policy(&template, "compact");
    assert!(
        compact.contains(&format!(
            "Action: [s3:PutObject, s3:DeleteObject]\n                Resource:\n                  {lists}"
        )) && compact.contains("index/*, keys/*] }"),
        "compaction lists, writes and deletes key lists: {compact}"
    );
    assert!(
        !policy(&template, "aggregate").contains("/keys/*"),
        "only the stages that use the key lists reach them"
    );
    let days = |prefix: &str| {
        let line = template
            .lines()
            .find(|l| l.contains(&format!("Prefix: {prefix}, ExpirationInDays:")))
            .unwrap_or_else(|| panic!("no lifecycle rule for {prefix}"));
        line.split("ExpirationInDays:")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches('}')
            .trim()
            .to_owned()
    };
    assert_eq!(
        days("keys/"),
        days("processed/"),
        "key lists expire with silver"
    );
}

/// The alert function reads what its checks look at: the day's batch keys (arrival check), and
/// the loaded markers, load failures and quality reports (SLA check).
#[test]
fn the_alert_role_reads_what_its_checks_read() {
    let template = template();
    let role = resources(&template)["AlertRole"].join("\n");
    for prefix in ["runs/loaded/*", "runs/load_failures/*", "quality/*"] {
        assert!(
            role.contains(&format!("/{prefix}\"")),
            "AlertRole cannot GetObject {prefix}"
        );
        assert!(role.contains(prefix), "AlertRole cannot list {prefix}");
    }
    assert!(
        role.contains("manifests/*"),
        "AlertRole cannot list manifests/"
    );
}

/// The compact function reads, writes and deletes silver and its own records, reads the loaded
/// markers (only loaded batches are compacted) and nothing else of the bucket; in Glue it only
/// lists, deletes and re-registers partitions of the silver tables whose partitions age (a date
/// partition).
/// The load function records, reads back and removes the failures it keeps under
/// runs/load_failures/.
#[test]
fn the_compact_role_reaches_silver_and_its_records_only_and_the_load_role_its_failures() {
    let template = template();
    let role = resources(&template)["CompactRole"].join("\n");
    for prefix in [
        "processed/*",
        "runs/compact/*",
        "runs/loaded/*",
        "claims/compact-*",
        "index/*",
    ] {
        assert!(
            role.contains(&format!("/{prefix}\"")),
            "CompactRole cannot reach {prefix}"
        );
    }
    assert!(role.contains("s3:DeleteObject"));
    for other in ["/manifests/*", "/gold/*", "/quality/*", "/raw/*"] {
        assert!(!role.contains(other), "CompactRole reaches {other}");
    }
    let glue_actions: Vec<&str> = role
        .lines()
        .filter(|l| l.starts_with("Action:") && l.contains("glue:"))
        .collect();
    assert_eq!(
        glue_actions,
        ["Action: [glue:GetPartitions, glue:BatchDeletePartition, glue:BatchCreatePartition]"],
        "the catalog sweep lists and deletes partitions (and re-registers one an ingest raced), nothing more"
    );
    let glue_resources: BTreeSet<&str> = role
        .lines()
        .filter_map(|l| l.split(":glue:${AWS::Region}:${AWS::AccountId}:").nth(1))
        .map(|r| r.trim_end_matches('"'))
        .collect();
    let mut expected: BTreeSet<String> = ["catalog", "database/shoplake_${StageName}"]
        .map(String::from)
        .into();
    expected.extend(
        shoplake::contract::Registry::builtin()
            .iter()
            .filter(|c| c.date_partition().is_some())
            .map(|c| format!("table/shoplake_${{StageName}}/{}", c.name)),
    );
    assert_eq!(
        glue_resources,
        expected.iter().map(String::as_str).collect(),
        "the lake's database and its silver tables with a date partition only"
    );
    let function = resources(&template)["CompactFunction"].join("\n");
    assert!(function.contains("Role: !GetAtt CompactRole.Arn"));
    assert!(
        function.contains("GLUE_DATABASE: !Ref GlueDatabase"),
        "the compact function sweeps the lake's Glue database"
    );
    let load = resources(&template)["LoadRole"].join("\n");
    assert!(
        load.contains("/runs/load_failures/*\"") && load.contains("runs/load_failures/*,"),
        "LoadRole cannot read, write and list runs/load_failures/"
    );
}

#[test]
fn the_aggregate_function_scans_as_lake_aggregate_does() {
    // `lake aggregate` sets these itself (`shoplake::gold::scans`); the Lambda gets them from
    // its environment, so the bench's figures are the deployed function's.
    let template = template();
    let lines = &resources(&template)["AggregateFunction"];
    for (name, wanted) in shoplake::gold::scans::SCAN_ENV {
        let set = value(lines, name).map(|v| v.trim_matches('"'));
        assert_eq!(
            set,
            Some(wanted),
            "AggregateFunction must set {name}: {wanted}"
        );
    }
}
