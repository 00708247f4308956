#!/usr/bin/env python3
"""HL7 intake benchmark: the product's MLLP listener against the shared harness's floors, one run.

Starts ``ris listen`` on a fresh SQLite instance (and one on a fresh PostgreSQL database), the
harness's ``hl7_floor.py`` plain and ``--durable``, and runs ``hl7_bench.py`` against each: C=1 and
C=4 connections, ``--reps`` repetitions of ``--n`` messages; then one ``--rss-n`` message run per
product listener, sampling its RSS. Writes the "HL7 intake" section of bench/RESULTS.md (medians,
ratios to the floors measured in the same run) and the raw JSON to ``--out``.

    .venv/bin/python bench/hl7_intake.py                       # harness at ../shared/bench
    .venv/bin/python bench/hl7_intake.py --harness /path/to/shared/bench --no-postgres

Everything listens on 127.0.0.1 only. Nothing is written to the harness folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchlib import HARNESS, free_port, postgres_database, running, write_section

# What profiling the PostgreSQL C=4 path showed (py-spy on `ris listen`, the server's statement log).
NOTES = [
    "- This run measured the code of the run before it (567 msgs/s at C=4 on PostgreSQL, 248 at C=1",
    "  on SQLite, both targets missed then) on a quieter machine: the listener's CPU per message at",
    "  C=4 went 1.18 -> 0.81 ms without a change to that path. Alternating the two on this machine in",
    "  one hour (3 pairs, 4,000 messages, C=4 on PostgreSQL): 738 and 733 msgs/s (medians), the same.",
    "  When the cores are shared with other work the rates fall by up to half (see the run before).",
    "- At C=4 the four senders wait for the same group of new orders (about 4,000 transactions per",
    "  16,000 messages), so a cycle is the group (listener Python, then PostgreSQL) plus the time the",
    "  four threads take, in turn on the GIL, to send their ACKs and read, map and validate their next",
    "  message. Both halves are CPU of the listener process, which is why its CPU per message decides.",
    "- Changes of the round before that run, each measured against the code before it (same machine,",
    "  alternating runs, medians): all rows of a group in ONE statement (one JSON parameter per table into",
    "  `jsonb_populate_recordset`, a data-modifying CTE per table) instead of a pipeline of one",
    "  executemany per table; ids from blocks reserved ahead (one reservation per ~25 groups); the",
    "  patient look-up sent unprepared. Groups of 4 driven directly (before the id blocks): listener",
    "  CPU 2.75 -> 2.05 ms and PostgreSQL CPU 3.25 -> 2.2 ms per group. `ris listen` against",
    "  hl7_bench, C=4, 4,000 messages, 3 pairs: listener CPU 2.08 -> 1.87 ms/msg, PostgreSQL",
    "  0.92 -> 0.83 ms/msg, 355 -> 357 msgs/s (pairs +11 %, +0.5 %, +5 %; the machine was slow",
    "  then: the same code ran 310-427 msgs/s within that hour).",
    "- The patient look-up had been a prepared statement whose generic plan PostgreSQL made while the",
    "  table was empty: a sequential scan, never replanned without autovacuum (off on this machine).",
    "  From the statement log after 12,000 orders: 1.18 ms per look-up, 44 % of the server's time;",
    "  planned at every call it takes 0.16 ms.",
    "- What remains per group of 4 (py-spy on `ris listen`, samples holding the GIL): the database",
    "  layer (BEGIN and the look-up, the insert statement with its JSON, COMMIT) about half, mapping",
    "  (`hl7.commands.translate`, ~150 µs per message) 10 %, the two INFO log lines per message 8-11 % (INFO against",
    "  WARNING, 3 pairs: 0.78 against 0.69 ms/msg), the MLLP server, parsing, validation and the ACK the rest.",
]
CONNECTIONS = (1, 4)


def product_command(workdir: Path, label: str, database_url: str, port: int) -> tuple[list[str], dict[str, str]]:
    instance = workdir / label
    instance.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RIS_")}
    env |= {
        "RIS_INSTANCE_PATH": str(instance),
        "RIS_DATABASE_URL": database_url or f"sqlite:///{instance / 'ris.db'}",
        "RIS_TIMEZONE": "Europe/Berlin",
        "RIS_HL7_BIND": "127.0.0.1",
        "RIS_HL7_PORT": str(port),
        "RIS_DICOM_BIND": "127.0.0.1",
        "RIS_DICOM_PORT": str(free_port()),
    }
    return [sys.executable, "-m", "ris.cli", "listen"], env


def machine_times() -> tuple[float, float]:
    """(idle, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (fields[3] + fields[4]) / tick, sum(fields) / tick


def process_cpu(pids: set[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids`` that still exist."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class PostgresBackends:
    """The server processes serving one database, to count their CPU (PostgreSQL on this host)."""

    def __init__(self, database_url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        self.database = make_url(database_url).database
        self.engine = create_engine(database_url, poolclass=NullPool)

    def pids(self) -> set[int]:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": self.database},
            )
            return {row.pid for row in rows}


def bench(
    harness: Path,
    out: Path,
    port: int,
    pid: int,
    label: str,
    n: int,
    connections: int,
    backends: PostgresBackends | None = None,
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(harness / "hl7_bench.py"),
        "--port",
        str(port),
        "--n",
        str(n),
        "--connections",
        str(connections),
        "--server-pid",
        str(pid),
        "--label",
        label,
        "--max-seconds",
        "900",
        "--out",
        str(out),
    ]
    pids_before = backends.pids() if backends else set()
    database_cpu_before = process_cpu(pids_before)
    idle_before, total_before = machine_times()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    idle_after, total_after = machine_times()
    result: dict[str, Any] = json.loads(out.read_text())
    result["machine_idle_share"] = (idle_after - idle_before) / max(total_after - total_before, 1e-9)
    if backends:
        # Backends that started during the run count from zero: all their CPU falls in it.
        pids = pids_before | backends.pids()
        used = process_cpu(pids) - database_cpu_before
        result["database_cpu_ms_per_msg"] = used / max(1, result["sent"]) * 1000
    print(
        f"{label:<16} C={connections} n={n}: {result['acks_per_s']:8.1f} msgs/s "
        f"p99 {result['latency_ms']['p99']:6.2f} ms ok={result['ok']} machine idle {result['machine_idle_share']:.0%}",
        flush=True,
    )
    return result


def sqlite_size(instance: Path) -> int:
    """Bytes of the instance's SQLite database with its WAL (0 for PostgreSQL)."""
    return sum(path.stat().st_size for path in instance.glob("ris.db*"))


class RssSampler:
    """Samples a process's RSS (kB) while a run lasts."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append(int(line.split()[1]))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def median(results: list[dict[str, Any]], get: Any) -> float:
    return float(statistics.median(get(result) for result in results))


def summarise(runs: dict[tuple[str, int], list[dict[str, Any]]], rss: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| listener | C | msgs/s | ÷ floor-durable | ÷ floor | ACK p50 ms | ACK p99 ms | server CPU ms/msg "
        "| PostgreSQL CPU ms/msg | machine idle | all AA |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    labels = sorted({label for label, _c in runs}, key=lambda label: (label.startswith("floor"), label))
    for connections in CONNECTIONS:
        floors = {
            name: median(runs[(name, connections)], lambda r: r["acks_per_s"])
            for name in ("floor-durable", "floor")
            if (name, connections) in runs
        }
        for label in labels:
            results = runs.get((label, connections))
            if not results:
                continue
            rate = median(results, lambda r: r["acks_per_s"])
            database_cpu = (
                f"{median(results, lambda r: r['database_cpu_ms_per_msg']):.2f}"
                if "database_cpu_ms_per_msg" in results[0]
                else "–"
            )
            ratios = [f"{rate / floors[name]:.2f}" if name in floors else "–" for name in ("floor-durable", "floor")]
            lines.append(
                f"| {label} | {connections} | {rate:,.0f} | {ratios[0]} | {ratios[1]} "
                f"| {median(results, lambda r: r['latency_ms']['p50']):.2f} "
                f"| {median(results, lambda r: r['latency_ms']['p99']):.2f} "
                f"| {median(results, lambda r: r['server']['cpu_ms_per_msg']):.2f} "
                f"| {database_cpu} | {median(results, lambda r: r['machine_idle_share']):.0%} "
                f"| {'yes' if all(r['ok'] for r in results) else 'NO'} |"
            )
    lines += ["", *targets(runs), *NOTES]
    lines += [
        "",
        "RSS of the product's listener process over one more run (after the runs above), sampled every 0.5 s;",
        "for SQLite also the growth of the database file (the page cache of each SQLite connection may hold",
        "up to 64 MiB of it: `SQLITE_CACHE_KIB` in ris/db/engine.py):",
        "",
        "| listener | messages | RSS before kB | RSS after kB | growth kB | RSS at ¼ / ½ / ¾ / end kB "
        "| database growth kB | all AA |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for label, entry in rss.items():
        result, samples = entry["result"], entry["samples"]
        server = result["server"]
        quarters = " / ".join(f"{samples[min(len(samples) - 1, len(samples) * q // 4)]:,}" for q in (1, 2, 3, 4))
        database = f"{entry['database_growth_kb']:,}" if entry["database_growth_kb"] else "–"
        lines.append(
            f"| {label} | {result['acked']:,} | {server['before']['rss_kb']:,} | {server['after']['rss_kb']:,} "
            f"| {server['rss_growth_kb']:,} | {quarters} | {database} | {'yes' if result['ok'] else 'NO'} |"
        )
    return lines


def targets(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> list[str]:
    """The issue's targets against the medians, and how busy the listener process was."""

    def rate(label: str, connections: int) -> float:
        return median(runs.get((label, connections), [{"acks_per_s": 0}]), lambda r: r["acks_per_s"])

    lines = []
    if ("product-sqlite", 1) in runs:
        p99 = median(runs[("product-sqlite", 1)], lambda r: r["latency_ms"]["p99"])
        met = rate("product-sqlite", 1) >= 300 and p99 <= 50
        lines.append(
            f"- Target ≥ 300 msgs/s at C=1 on SQLite with ACK p99 ≤ 50 ms: {'met' if met else 'NOT met'} "
            f"({rate('product-sqlite', 1):,.0f} msgs/s, p99 {p99:.1f} ms)."
        )
    if ("product-postgresql", 4) in runs:
        met = rate("product-postgresql", 4) >= 600
        lines.append(
            f"- Target ≥ 600 msgs/s at C=4 on PostgreSQL: {'met' if met else 'NOT met'} "
            f"({rate('product-postgresql', 4):,.0f} msgs/s)."
        )
    for label, _c in sorted(key for key in runs if key[1] == 4 and key[0].startswith("product")):
        results = runs[(label, 4)]
        busy = median(results, lambda r: r["acks_per_s"] * r["server"]["cpu_ms_per_msg"] / 1000)
        lines.append(
            f"- {label} at C=4: the listener process used {busy:.2f} s of CPU per second; one Python process runs "
            "its Python code on one core at a time (GIL), so near 1.0 the CPU per message bounds the rate."
        )
    if ("product-postgresql", 4) in runs:
        results = runs[("product-postgresql", 4)]
        listener = median(results, lambda r: r["server"]["cpu_ms_per_msg"])
        database = median(results, lambda r: r.get("database_cpu_ms_per_msg", 0.0))
        client = median(results, lambda r: r["client_cpu"]["us_per_msg"] / 1000)
        total = listener + database + client
        cores = os.cpu_count() or 1
        lines.append(
            f"- CPU per message at C=4 on PostgreSQL: listener {listener:.2f} ms + PostgreSQL backends "
            f"{database:.2f} ms + load generator {client:.2f} ms = {total:.2f} ms. With the machine to itself "
            f"that bounds the rate at {cores * 1000 / total:,.0f} msgs/s on {cores} cores, and the listener alone "
            f"(one core, GIL) at {1000 / listener:,.0f} msgs/s; the machine was idle for "
            f"{median(results, lambda r: r['machine_idle_share']):.0%} of the runs (other work on it)."
        )
    return lines


def write_results(body: list[str], command: str) -> None:
    machine = (
        f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}"
    )
    lines = [
        f"Measured {dt.date.today().isoformat()} with `{command}` (harness: `hl7_bench.py`, `hl7_floor.py`).",
        f"Machine: {machine}; shared with other engineers' work while measuring, so compare the ratios to the",
        "floors measured in the same run, not the absolute numbers. The load generator runs on the same cores.",
        "Medians of the repetitions. `product-sqlite` / `product-postgresql`: `ris listen` on a fresh instance",
        "(default settings, log level INFO) — every message journaled, mapped, stored as an order with its",
        "worklist item, audit row and ACK in one transaction before the ACK is sent (new orders arriving together",
        'on several connections share one transaction: group commit, see README "HL7 interface"). `floor`:',
        "frame, split, ACK; `floor-durable`: the same plus one SQLite insert + commit (WAL, synchronous=FULL) per",
        "message. `server CPU`: the listener process; `PostgreSQL CPU`: the server processes serving the product's",
        "database connections; `machine idle`: share of all cores' time idle during the runs (low: other work).",
        "",
        *body,
    ]
    write_section("HL7 intake", lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--harness", type=Path, default=HARNESS)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rss-n", type=int, default=10_000)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, help="folder for the raw JSON (default: a temporary folder)")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args()
    harness = args.harness.resolve()
    if not (harness / "hl7_bench.py").exists():
        parser.error(f"no hl7_bench.py in {harness} (give --harness)")
    workdir = Path(tempfile.mkdtemp(prefix="hl7-intake-bench-"))
    out = args.out or workdir / "results"
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    rss: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        listeners: dict[str, tuple[int, int]] = {}  # label -> (port, pid)
        products = [("product-sqlite", "")]
        backends: dict[str, PostgresBackends] = {}
        if not args.no_postgres:
            database = stack.enter_context(postgres_database(args.postgres_url, "ris_bench_hl7"))
            products.append(("product-postgresql", database))
            backends["product-postgresql"] = PostgresBackends(products[-1][1])
        for label, url in products:
            port = free_port()
            command, env = product_command(workdir, label, url, port)
            listeners[label] = (port, stack.enter_context(running(command, port, workdir / f"{label}.log", env)))
        for label, extra in (("floor", []), ("floor-durable", ["--durable", "--db", str(workdir / "floor.sqlite")])):
            port = free_port()
            command = [sys.executable, str(harness / "hl7_floor.py"), "--port", str(port), *extra]
            listeners[label] = (port, stack.enter_context(running(command, port, workdir / f"{label}.log")))
        for rep in range(1, args.reps + 1):
            for connections in CONNECTIONS:
                for label, (port, pid) in listeners.items():
                    result = bench(
                        harness,
                        out / f"{label}_c{connections}_r{rep}.json",
                        port,
                        pid,
                        label,
                        args.n,
                        connections,
                        backends.get(label),
                    )
                    runs.setdefault((label, connections), []).append(result)
        for label, _url in products:
            port, pid = listeners[label]
            database_before = sqlite_size(workdir / label)
            with RssSampler(pid) as sampler:
                result = bench(harness, out / f"{label}_rss.json", port, pid, label, args.rss_n, 1)
            growth = sqlite_size(workdir / label) - database_before
            rss[label] = {"result": result, "samples": sampler.samples or [0], "database_growth_kb": growth // 1024}
    body = summarise(runs, rss)
    print("\n".join(body))
    command = "python bench/hl7_intake.py" + (" --no-postgres" if args.no_postgres else "")
    if not args.no_write:
        write_results(body, command)
    if args.out is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
