"""Helpers for `make demo`: S3 on the local emulator (boto3 ships with moto) and summaries.

  demo_tools.py ENDPOINT create-bucket BUCKET
  demo_tools.py ENDPOINT upload BUCKET KEY FILE
  demo_tools.py ENDPOINT event TEMPLATE BUCKET KEY OUT   sample event rewritten to an uploaded key
  demo_tools.py ENDPOINT tree BUCKET                     silver partitions, batches, quarantine
  demo_tools.py ENDPOINT create-topic NAME               prints the topic ARN
  demo_tools.py ENDPOINT create-glue-database NAME
  demo_tools.py ENDPOINT kpis BUCKET DAYS                the last DAYS days of gold daily_kpis
  demo_tools.py ENDPOINT emails TOPIC_ARN                the messages SNS received, as email text
  demo_tools.py - manifest-event TEMPLATE BUCKET INVOKE_RESPONSE OUT
                                                         quality event for the batch an ingest made
  demo_tools.py - destination QUALITY_RESPONSE OUT       the quality function's on-success record
  demo_tools.py - show-json FILE                         a function's response, compactly
  demo_tools.py - show-load LOAD_RESPONSE REDSHIFT_LOG   loaded batches and the SQL issued
  demo_tools.py - expected < `lake generate` output      what a correct ingest must report
  demo_tools.py - batch FILE [--replayed]                one line of an ingest Lambda response
"""
import json
import sys
import urllib.parse
from collections import defaultdict

import boto3

endpoint, command, *args = sys.argv[1:]
s3 = None if endpoint == "-" else boto3.client(
    "s3", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id="testing", aws_secret_access_key="testing")


def keys(bucket, prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


if command == "create-bucket":
    s3.create_bucket(Bucket=args[0])
elif command == "upload":
    bucket, key, path = args
    s3.upload_file(path, bucket, key)
elif command == "event":
    template, bucket, key, out = args
    head = s3.head_object(Bucket=bucket, Key=key)
    event = json.load(open(template))
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    # S3 sends keys form-encoded: a space arrives as "+".
    record["s3"]["object"].update(key=urllib.parse.quote_plus(key, safe="/"),
                                  size=head["ContentLength"], eTag=head["ETag"].strip('"'))
    json.dump(event, open(out, "w"), indent=2)
elif command == "tree":
    bucket = args[0]
    partitions = defaultdict(lambda: [0, 0])
    for m in keys(bucket, "manifests/"):
        if "/_pending/" in m["Key"]:
            continue
        manifest = json.load(s3.get_object(Bucket=bucket, Key=m["Key"])["Body"])
        print(f"  {manifest['dataset']:<9} {manifest['batch_id']}  {manifest['status']:<9} "
              f"read {manifest['rows_read']:>6}  written {manifest['rows_written']:>6}  "
              f"rejected {manifest['rows_rejected']:>4}  duplicates {manifest['duplicates_dropped']:>4}")
        for f in manifest["files"]:
            p = partitions[(manifest["dataset"], f["partition"])]
            p[0] += f["rows"]
            p[1] += 1
    print(f"\n  s3://{bucket}/processed/")
    for (dataset, partition), (rows, files) in sorted(partitions.items()):
        print(f"    {dataset}/{partition:<48} {rows:>6} rows  {files} file(s)")
    print(f"\n  s3://{bucket}/quarantine/")
    for q in keys(bucket, "quarantine/"):
        print(f"    {q['Key']}  ({q['Size']} bytes)")
elif command == "create-topic":
    sns = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    print(sns.create_topic(Name=args[0])["TopicArn"])
elif command == "create-glue-database":
    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    glue.create_database(DatabaseInput={"Name": args[0]})
elif command == "kpis":
    import io
    import pyarrow.parquet as pq
    bucket, days = args[0], int(args[1])
    rows = []
    for m in keys(bucket, "gold/daily_kpis/"):
        body = s3.get_object(Bucket=bucket, Key=m["Key"])["Body"].read()
        rows += pq.read_table(io.BytesIO(body)).to_pylist()
    rows.sort(key=lambda r: (str(r["kpi_date"]), str(r.get("customer_region"))))
    last = sorted({str(r["kpi_date"]) for r in rows})[-days:]
    rows = [r for r in rows if str(r["kpi_date"]) in last]
    print(f"\n  gold/daily_kpis in s3://{bucket} (last {days} days, {len(rows)} rows):")
    shown = {"kpi_date": "date", "customer_region": "region", "currency": "cur",
             "orders_placed": "orders", "revenue": "revenue", "avg_order_value": "aov",
             "new_customers": "new", "returning_customers": "returning",
             "retention_rate": "retention", "payment_success_rate": "pay ok"}
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    print("    " + " ".join(f"{h:>10}" for h in shown.values()))
    for r in rows:
        print("    " + " ".join(f"{cell(r.get(c)):>10}" for c in shown))
elif command == "emails":
    import urllib.request
    data = json.load(urllib.request.urlopen(f"{endpoint}/moto-api/data.json"))
    sent = [n for t in data["sns"]["Topic"] if t["arn"] == args[0] for n in t["sent_notifications"]]
    print(f"  {len(sent)} message(s) published to {args[0]}")
    for _, message, subject, attributes, _ in sent:
        attrs = ", ".join(f"{k}={v['Value']}" for k, v in sorted((attributes or {}).items()))
        print(f"\n  Subject: {subject}\n  Attributes: {attrs}\n")
        print("\n".join("  " + line for line in message.splitlines()))
elif command == "manifest-event":
    template, bucket, response, out = args
    batch = json.load(open(response))["batches"][0]
    event = json.load(open(template))
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = f"manifests/{batch['dataset']}/{batch['batch_id']}.json"
    json.dump(event, open(out, "w"), indent=2)
elif command == "destination":
    response, out = args
    record = json.load(open("events/alert-quality-fail.json"))
    record["responsePayload"] = json.load(open(response))
    json.dump(record, open(out, "w"), indent=2)
    for r in record["responsePayload"]["reports"]:
        print(f"    {r['verdict'].upper():<4} {r['dataset']:<9} {r['batch_id']}  {r['summary']}")
elif command == "show-json":
    print("   ", json.dumps(json.load(open(args[0]))))
elif command == "show-load":
    report = json.load(open(args[0]))
    for b in report["batches"]:
        what = f"{b.get('rows')} rows in {b.get('statements')} statements" if b["outcome"] == "loaded" else b.get("reason")
        print(f"    {b['outcome']:<8} {b['dataset']:<9} {b['batch_id']}  {what}")
    print(f"    gold months replaced: {', '.join(report['months']) or 'none'}")
    statements = [json.loads(line) for line in open(args[1])]
    print(f"\n  Redshift statements issued ({len(statements)}), the first of each kind:")
    seen = set()
    for st in statements:
        kind = " ".join(st["sql"].split()[:3])
        if kind in seen:
            continue
        seen.add(kind)
        sql = st["sql"] if len(st["sql"]) <= 160 else st["sql"][:157] + "..."
        print(f"    [{st['status']}] {sql}")
elif command == "expected":
    for line in sys.stdin:
        f = json.loads(line)
        e = f["expected"]
        print(f"  {f['dataset']:<9} {e['rows']:>6} rows: a correct ingest writes {e['written']}, "
              f"rejects {e['rejected']}, drops {e['duplicates']} duplicates")
elif command == "batch":
    batch = json.load(open(args[0]))["batches"][0]
    if "--replayed" in args and not batch["replayed"]:
        sys.exit("the redelivered event was not recognised as a replay")
    fields = ("dataset", "batch_id", "status", "rows_read", "rows_written", "rows_rejected",
              "duplicates_dropped", "replayed")
    print("   ", json.dumps({k: batch[k] for k in fields}))
else:
    sys.exit(f"unknown command {command}")
