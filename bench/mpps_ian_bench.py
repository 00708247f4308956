"""MPPS N-SET COMPLETED -> IAN received: latency through the product, against a floor.

The product runs as ``ris listen`` (its own process, SQLite in a temporary instance folder unless
``--database-url`` names another database) with one IAN destination: a pynetdicom IAN SCP in this
process on an ephemeral port. For each step this script, acting as the modality, opens an
association, sends the N-CREATE (IN PROGRESS) for a scheduled step, then the N-SET COMPLETED with
one series of ``--images`` images, and measures from just before the N-SET request is sent until
the IAN SCP has the notification for that step.

The floor, measured in the same run with the same SCU and IAN SCP: an in-memory pynetdicom MPPS
SCP in this process that answers the N-SET and then sends the IAN itself (association, N-CREATE,
release) from a thread, with no database. Everything listens on 127.0.0.1.

    .venv/bin/python bench/mpps_ian_bench.py --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchlib import free_port
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.events import Event

ROOT = Path(__file__).resolve().parents[1]
MPPS = "1.2.840.10008.3.1.2.3.3"
IAN = "1.2.840.10008.5.1.4.33"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MODALITY_AE = "BENCH_CT"


def _no_delay(event: Event) -> None:
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


NO_DELAY = [(evt.EVT_CONN_OPEN, _no_delay)]


# --- the IAN destination ----------------------------------------------------------------------


class IanReceiver:
    """An IAN SCP that notes when the notification for each MPPS arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.condition = threading.Condition()

    def on_n_create(self, event: Event) -> tuple[int, None]:
        ian = event.attribute_list
        mpps_uid = str(ian.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID)
        with self.condition:
            self.arrived.setdefault(mpps_uid, time.perf_counter())
            self.count[mpps_uid] = self.count.get(mpps_uid, 0) + 1
            self.condition.notify_all()
        return 0x0000, None

    def wait(self, mpps_uid: str, timeout: float = 30.0) -> float:
        with self.condition:
            if not self.condition.wait_for(lambda: mpps_uid in self.arrived, timeout):
                raise TimeoutError(f"no IAN for {mpps_uid} within {timeout}s")
            return self.arrived[mpps_uid]


@contextmanager
def scp(ae_title: str, sop_classes: list[str], handlers: list[Any]) -> Iterator[int]:
    ae = AE(ae_title=ae_title)
    ae.maximum_associations = 50
    for sop_class in sop_classes:
        ae.add_supported_context(sop_class)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[*handlers, *NO_DELAY])
    # Accepted sockets: TCP_NODELAY as the product's listener sets it.
    original = server.get_request

    def get_request() -> tuple[socket.socket, Any]:
        client, address = original()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    server.get_request = get_request  # type: ignore[method-assign]
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


# --- the floor: an in-memory MPPS SCP that sends the IAN itself ------------------------------------


class FloorBroker:
    def __init__(self, ian_port: int) -> None:
        self.ian_port = ian_port
        self.jobs: queue.Queue[tuple[str, Dataset] | None] = queue.Queue()
        self.sender = threading.Thread(target=self._send_loop, daemon=True)
        self.sender.start()

    def on_n_create(self, event: Event) -> tuple[int, None]:
        return 0x0000, None

    def on_n_set(self, event: Event) -> tuple[int, None]:
        modification = event.modification_list
        if modification.PerformedProcedureStepStatus == "COMPLETED":
            self.jobs.put((str(event.request.RequestedSOPInstanceUID), modification))
        return 0x0000, None

    def _send_loop(self) -> None:
        ae = AE(ae_title="FLOOR")
        ae.add_requested_context(IAN)
        while (job := self.jobs.get()) is not None:
            mpps_uid, modification = job
            assoc = ae.associate("127.0.0.1", self.ian_port, ae_title="PACS", evt_handlers=NO_DELAY)
            assoc.send_n_create(ian_for(mpps_uid, modification), IAN, generate_uid())
            assoc.release()

    def stop(self) -> None:
        self.jobs.put(None)


def ian_for(mpps_uid: str, modification: Dataset) -> Dataset:
    ian = Dataset()
    pps = Dataset()
    pps.ReferencedSOPClassUID = MPPS
    pps.ReferencedSOPInstanceUID = mpps_uid
    ian.ReferencedPerformedProcedureStepSequence = [pps]
    ian.StudyInstanceUID = generate_uid()
    series = Dataset()
    series.SeriesInstanceUID = modification.PerformedSeriesSequence[0].SeriesInstanceUID
    sops = []
    for image in modification.PerformedSeriesSequence[0].ReferencedImageSequence:
        sop = Dataset()
        sop.ReferencedSOPClassUID = image.ReferencedSOPClassUID
        sop.ReferencedSOPInstanceUID = image.ReferencedSOPInstanceUID
        sop.InstanceAvailability = "ONLINE"
        sop.RetrieveAETitle = "PACS"
        sops.append(sop)
    series.ReferencedSOPSequence = sops
    ian.ReferencedSeriesSequence = [series]
    return ian


# --- the modality ------------------------------------------------------------------------------


def n_create(item: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    reference = Dataset()
    reference.StudyInstanceUID = item["study_instance_uid"]
    reference.AccessionNumber = item["accession_number"]
    reference.RequestedProcedureID = item["requested_procedure_id"]
    reference.ScheduledProcedureStepID = item["sps_id"]
    ds.ScheduledStepAttributesSequence = [reference]
    ds.PatientName = item["patient_name"]
    ds.PatientID = item["patient_id"]
    ds.PerformedProcedureStepID = "PPS" + item["sps_id"][-8:]
    ds.PerformedStationAETitle = MODALITY_AE
    ds.PerformedProcedureStepStartDate = item["sps_start_date"]
    ds.PerformedProcedureStepStartTime = item["sps_start_time"]
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


def n_set_completed(images: int) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20261123"
    ds.PerformedProcedureStepEndTime = "101500"
    series = Dataset()
    series.ProtocolName = "Thorax"
    series.SeriesInstanceUID = generate_uid()
    series.RetrieveAETitle = "PACS"
    refs = []
    for _ in range(images):
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = generate_uid()
        refs.append(ref)
    series.ReferencedImageSequence = refs
    ds.PerformedSeriesSequence = [series]
    return ds


def run_steps(
    port: int, called_ae: str, items: list[dict[str, str]], images: int, receiver: IanReceiver
) -> tuple[list[float], list[float]]:
    """(N-SET response times, N-SET -> IAN latencies) in seconds, one per item."""
    ae = AE(ae_title=MODALITY_AE)
    ae.add_requested_context(MPPS)
    responses, latencies = [], []
    for item in items:
        mpps_uid = generate_uid()
        assoc = ae.associate("127.0.0.1", port, ae_title=called_ae, evt_handlers=NO_DELAY)
        if not assoc.is_established:
            raise RuntimeError("association with the MPPS SCP failed")
        status, _ = assoc.send_n_create(n_create(item), MPPS, mpps_uid)
        _expect_success(status, "N-CREATE")
        completed = n_set_completed(images)
        started = time.perf_counter()
        status, _ = assoc.send_n_set(completed, MPPS, mpps_uid)
        answered = time.perf_counter()
        _expect_success(status, "N-SET")
        assoc.release()
        arrived = receiver.wait(mpps_uid)
        responses.append(answered - started)
        latencies.append(arrived - started)
    return responses, latencies


def _expect_success(status: Dataset, what: str) -> None:
    if status.get("Status", -1) != 0:
        raise RuntimeError(f"{what} answered {status.get('Status')!r}: {status.get('ErrorComment', '')}")


# --- the product -------------------------------------------------------------------------------


def items_for(count: int) -> list[dict[str, str]]:
    return [
        {
            "specific_character_set": "ISO_IR 100",
            "patient_id": f"B{n:07d}",
            "issuer_of_patient_id": "BENCH",
            "patient_name": "MÜLLER^JÜRGEN",
            "patient_birth_date": "19600101",
            "patient_sex": "M",
            "accession_number": f"BA{n:08d}",
            "requested_procedure_id": f"BRP{n:08d}",
            "requested_procedure_description": "CT Thorax",
            "study_instance_uid": f"2.25.77{n:08d}",
            "sps_id": f"BSPS{n:08d}",
            "sps_description": "CT Thorax",
            "sps_status": "SCHEDULED",
            "modality": "CT",
            "scheduled_station_ae_title": MODALITY_AE,
            "sps_start_date": "20261123",
            "sps_start_time": "090000",
        }
        for n in range(count)
    ]


def ris(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "ris.cli", *args], env=env, check=True, capture_output=True, cwd=ROOT)


def wait_for_echo(port: int, timeout: float = 60.0) -> None:
    ae = AE(ae_title=MODALITY_AE)
    ae.add_requested_context(VERIFICATION)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assoc = ae.associate("127.0.0.1", port, ae_title="RISBROKER")
        if assoc.is_established:
            assoc.send_c_echo()
            assoc.release()
            return
        time.sleep(0.2)
    raise TimeoutError("ris listen did not answer C-ECHO")


@contextmanager
def product(args: argparse.Namespace, items: list[dict[str, str]], ian_port: int) -> Iterator[int]:
    instance = Path(tempfile.mkdtemp(prefix="mpps-ian-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIS_")} | {
        "RIS_INSTANCE_PATH": str(instance),
        "RIS_TIMEZONE": "Europe/Berlin",
        "RIS_DICOM_BIND": "127.0.0.1",
        "RIS_DICOM_PORT": str(port),
        "RIS_HL7_BIND": "127.0.0.1",
        "RIS_HL7_PORT": str(free_port()),
        "RIS_LOG_LEVEL": "WARNING",
    }
    if args.database_url:
        env["RIS_DATABASE_URL"] = args.database_url
    (instance / "items.json").write_text(json.dumps(items), encoding="utf-8")
    ris(env, "db", "upgrade")
    ris(env, "import", str(instance / "items.json"))
    ris(env, "ae", "add", "PACS", "--role", "ian-destination", "--host", "127.0.0.1", "--port", str(ian_port))
    listener = subprocess.Popen([sys.executable, "-m", "ris.cli", "listen"], env=env, cwd=ROOT)
    try:
        wait_for_echo(port)
        yield port
    finally:
        listener.terminate()
        listener.wait(30)
        shutil.rmtree(instance, ignore_errors=True)


# --- report ------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    quantiles = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 2),
        "p95": round(quantiles[94], 2),
        "p99": round(quantiles[98], 2),
        "max": round(ms[-1], 2),
    }


def measure(
    label: str,
    run: Callable[[list[dict[str, str]]], tuple[list[float], list[float]]],
    args: argparse.Namespace,
    items: list[dict[str, str]],
) -> dict[str, Any]:
    run(items[: args.warmup])
    responses, latencies = run(items[args.warmup :])
    result = {"label": label, "n_set_response_ms": summary(responses), "n_set_to_ian_ms": summary(latencies)}
    print(json.dumps(result), file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="measured steps per server")
    parser.add_argument("--warmup", type=int, default=20, help="steps before measuring")
    parser.add_argument("--images", type=int, default=20, help="images in the one series of each step")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary instance folder")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    items = items_for(args.warmup + args.steps)
    receiver = IanReceiver()
    results = {}
    with scp("PACS", [IAN], [(evt.EVT_N_CREATE, receiver.on_n_create)]) as ian_port:
        floor = FloorBroker(ian_port)
        handlers = [(evt.EVT_N_CREATE, floor.on_n_create), (evt.EVT_N_SET, floor.on_n_set)]
        with scp("FLOOR", [MPPS], handlers) as floor_port:
            results["floor"] = measure(
                "floor", lambda batch: run_steps(floor_port, "FLOOR", batch, args.images, receiver), args, items
            )
        floor.stop()
        with product(args, items, ian_port) as product_port:
            results["product"] = measure(
                "product", lambda batch: run_steps(product_port, "RISBROKER", batch, args.images, receiver), args, items
            )
    duplicates = sum(1 for count in receiver.count.values() if count > 1)
    p, f = results["product"]["n_set_to_ian_ms"], results["floor"]["n_set_to_ian_ms"]
    report = {
        "steps": args.steps,
        "images_per_step": args.images,
        "database": args.database_url.split("://")[0].split("+")[0] if args.database_url else "sqlite",
        "duplicate_ians": duplicates,
        "ratio_p50": round(p["p50"] / f["p50"], 2),
        "ratio_p95": round(p["p95"] / f["p95"], 2),
        **results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(_markdown(report))
    return 0


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['steps']} steps, {report['images_per_step']} images each, database {report['database']}, "
        f"duplicate IANs: {report['duplicate_ians']}",
        "",
        "| server | N-SET answered p50 / p95 (ms) | N-SET -> IAN received p50 / p95 / p99 / max (ms) |",
        "|---|---|---|",
    ]
    for label in ("floor", "product"):
        r, i = report[label]["n_set_response_ms"], report[label]["n_set_to_ian_ms"]
        lines.append(f"| {label} | {r['p50']} / {r['p95']} | {i['p50']} / {i['p95']} / {i['p99']} / {i['max']} |")
    lines.append(f"\nproduct / floor: p50 x{report['ratio_p50']}, p95 x{report['ratio_p95']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
