"""Starts moto's server with its redshift-data service corrected for the Rust SDK.

moto 5.2.5's redshift-data, as shipped, does not work with aws-sdk-redshiftdata:
  1. CreatedAt/UpdatedAt are ISO strings; the SDK expects epoch seconds.
  2. Statements stay STARTED forever.
  3. BatchExecuteStatement is not implemented.
  4. ColumnMetadata.nullable is a bool; the SDK expects an int.
This launcher patches exactly these, plus two things a warehouse fake needs to be useful:
  - a statement whose SQL contains `moto:fail` ends FAILED with that line as its error;
  - `INSERT INTO <schema>.load_ledger ... VALUES ('<dataset>', '<batch>', ...)` (or `... SELECT
    '<dataset>', '<batch>', ...`) in a finished batch is remembered, and `SELECT COUNT(*) FROM <schema>.load_ledger WHERE dataset = '<d>'
    AND batch_id = '<b>'` answers from that memory (so "a reload issues no COPY" is testable);
    a query of `information_schema.columns` answers no rows.
Every statement is appended as a JSON line to $MOTO_REDSHIFT_LOG (database, sql, status).

Usage: python moto_launcher.py -H 127.0.0.1 -p PORT
"""
import json
import os
import re
import sys
import time

from moto.redshiftdata import models, responses
from moto.server import main

LEDGER: set = set()
INSERT_LEDGER = re.compile(r"INSERT INTO \S*load_ledger .*(?:VALUES \(|SELECT )'((?:[^']|'')*)', '((?:[^']|'')*)'", re.S)
SELECT_LEDGER = re.compile(r"FROM \S*load_ledger WHERE dataset = '((?:[^']|'')*)' AND batch_id = '((?:[^']|'')*)'", re.S)


def log(database, sql, status):
    path = os.environ.get("MOTO_REDSHIFT_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"database": database, "sql": sql, "status": status}) + "\n")


def failure(sql):
    for line in sql.splitlines():
        if "moto:fail" in line:
            return "ERROR: " + line.strip()
    return None


original_init = models.Statement.__init__


def patched_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    now = time.time()
    self.created_at = now  # (1) epoch seconds
    self.updated_at = now
    error = failure(self.query_string or "")
    self.status = "FAILED" if error else "FINISHED"  # (2)
    self.error = error


models.Statement.__init__ = patched_init
original_iter = models.Statement.__iter__


def patched_iter(self):
    yield from original_iter(self)
    if getattr(self, "error", None):
        yield "Error", self.error


models.Statement.__iter__ = patched_iter


def batch_execute_statement(self):  # (3)
    sqls = self._get_param("Sqls")
    database = self._get_param("Database")
    backend = self.redshiftdata_backend
    statement = models.Statement(
        cluster_identifier=self._get_param("ClusterIdentifier"), database=database,
        db_user=self._get_param("DbUser"), query_parameters=[], query_string="; ".join(sqls),
        secret_arn=self._get_param("SecretArn"),
    )
    failed = False
    subs = []
    for i, sql in enumerate(sqls, start=1):
        error = None if failed else failure(sql)
        status = "ABORTED" if failed else ("FAILED" if error else "FINISHED")
        failed = failed or bool(error)
        sub = {"Id": f"{statement.id}:{i}", "QueryString": sql, "Status": status,
               "CreatedAt": statement.created_at, "UpdatedAt": statement.updated_at}
        if error:
            sub["Error"] = error
        subs.append(sub)
        log(database, sql, status)
    statement.sub_statements = subs
    if failed:
        statement.status = "FAILED"
        statement.error = next(s["Error"] for s in subs if "Error" in s)
    else:
        for sql in sqls:  # the transaction committed: remember ledger rows
            m = INSERT_LEDGER.search(sql)
            if m:
                LEDGER.add((database, m.group(1), m.group(2)))
    backend.statements[statement.id] = statement
    return 200, {}, json.dumps({"Id": statement.id, "CreatedAt": statement.created_at, "Database": database})


responses.RedshiftDataAPIServiceResponse.batch_execute_statement = batch_execute_statement
original_execute = responses.RedshiftDataAPIServiceResponse.execute_statement


def execute_statement(self):
    status, headers, body = original_execute(self)
    data = json.loads(body)
    statement = self.redshiftdata_backend.statements[data["Id"]]
    log(statement.database, statement.query_string, statement.status)
    data["CreatedAt"] = time.time()  # (1)
    return status, headers, json.dumps(data)


responses.RedshiftDataAPIServiceResponse.execute_statement = execute_statement


def get_statement_result(self, statement_id):
    statement = self.statements[statement_id]
    if "information_schema.columns" in (statement.query_string or ""):
        # No table is known: the load then sees nothing to alter.
        return models.StatementResult([], [], 0)
    m = SELECT_LEDGER.search(statement.query_string or "")
    if m:
        found = int((statement.database, m.group(1), m.group(2)) in LEDGER)
        return models.StatementResult(
            [{"name": "count", "typeName": "int8", "nullable": 0}],  # (4) nullable as an int
            [[{"longValue": found}]], 1)
    result = original_result(self, statement_id)
    for column in result.column_metadata:
        column["nullable"] = int(column.get("nullable", 0))  # (4)
    return result


original_result = models.RedshiftDataAPIServiceBackend.get_statement_result
models.RedshiftDataAPIServiceBackend.get_statement_result = get_statement_result

if __name__ == "__main__":
    main(sys.argv[1:])
