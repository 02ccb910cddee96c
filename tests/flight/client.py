"""A Flight SQL client for the `lakecat serve` tests: the ADBC Flight SQL driver from PyPI.

Runs one scenario against a server on 127.0.0.1 and prints its outcome as one JSON object
on standard output (errors as their messages, for the Rust test to check).

  client.py URI query SQL OUT         one query, its result written to OUT: an Arrow IPC file,
                                      or CSV when OUT ends in .csv (benches/flight.sh)
  client.py URI update SQL            the statement through ExecuteUpdate (DoPut)
  client.py URI tables                the server's tables (GetObjects)
  client.py URI parallel SQL N OUT    N clients at once, each result to OUT.<i>
  client.py URI limit SQL             a streaming query holds the only query slot: a second is
                                      refused, then the first is cancelled and the second runs

Credentials from the environment: FLIGHT_TOKEN (bearer), or FLIGHT_USER and FLIGHT_PASSWORD;
FLIGHT_TLS_ROOT names a PEM file to trust.
"""

import json
import os
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.csv as pa_csv


def connect(uri):
    options = {}
    if os.environ.get("FLIGHT_TOKEN"):
        options["adbc.flight.sql.authorization_header"] = "Bearer " + os.environ["FLIGHT_TOKEN"]
    if os.environ.get("FLIGHT_USER"):
        options["username"] = os.environ["FLIGHT_USER"]
        options["password"] = os.environ.get("FLIGHT_PASSWORD", "")
    if os.environ.get("FLIGHT_TLS_ROOT"):
        with open(os.environ["FLIGHT_TLS_ROOT"]) as pem:
            options["adbc.flight.sql.client_option.tls_root_certs"] = pem.read()
    return flight_sql.connect(uri, db_kwargs=options)


def query(uri, sql):
    with connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def write(table, path):
    if path.endswith(".csv"):
        pa_csv.write_csv(table, path)
        return
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def attempt(action):
    started = time.monotonic()
    try:
        value = action()
        return {"ok": True, "value": value, "seconds": time.monotonic() - started}
    except Exception as error:  # the driver's errors carry the server's status and message
        return {"ok": False, "error": str(error)}


def main(uri, scenario, *args):
    if scenario == "query":
        sql, out = args

        def run():
            table = query(uri, sql)
            write(table, out)
            return table.num_rows

        return attempt(run)
    if scenario == "update":
        (sql,) = args

        def run():
            with connect(uri) as conn, conn.cursor() as cur:
                cur.adbc_statement.set_sql_query(sql)
                return cur.adbc_statement.execute_update()

        return attempt(run)
    if scenario == "tables":

        def run():
            with connect(uri) as conn:
                objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
            return sorted(
                table["table_name"]
                for catalog in objects
                for schema in catalog["catalog_db_schemas"] or []
                for table in schema["db_schema_tables"] or []
            )

        return attempt(run)
    if scenario == "parallel":
        sql, count, out = args
        results = [None] * int(count)
        start = threading.Barrier(int(count))

        def client(i):
            start.wait()

            def run():
                table = query(uri, sql)
                write(table, f"{out}.{i}")
                return table.num_rows

            results[i] = attempt(run)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(int(count))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        return {"ok": all(r and r["ok"] for r in results), "clients": results}
    if scenario == "limit":
        (sql,) = args
        outcome = {}
        with connect(uri) as first, first.cursor() as holder:
            holder.execute(sql)
            reader = holder.fetch_record_batch()
            outcome["first_batch_rows"] = reader.read_next_batch().num_rows
            outcome["second_while_first_streams"] = attempt(lambda: query(uri, "SELECT 1 AS one").num_rows)
            holder.adbc_cancel()
            outcome["first_after_cancel"] = attempt(lambda: reader.read_all().num_rows)
        # The server releases the slot when it sees the stream go; give it a moment.
        deadline = time.monotonic() + 10
        while True:
            outcome["second_after_cancel"] = attempt(lambda: query(uri, "SELECT 1 AS one").num_rows)
            if outcome["second_after_cancel"]["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return outcome
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
