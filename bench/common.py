"""What every bench script records beside its figures, so the next person compares like with like."""

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import torch

from stream_decoder.paths import portable_path
from stream_decoder.provenance import source_version

RESULTS = Path(__file__).parent / "results"
PACKAGES = ("numpy", "torch", "onnxruntime", "pyzmq")


def machine() -> dict:
    """Cores, CPU model, platform and the versions that move the numbers."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": models[0] if models else platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        **versions,
    }


def portable(value):
    """`value` with every absolute path string in it made portable (nested dicts and lists too)."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    return portable_path(value) if isinstance(value, str) and value.startswith("/") else value


def carried(previous: Path, field: str, measured: list[dict], key) -> list[dict]:
    """The entries of list `field` in an earlier run's JSON that this run did not measure (`key`
    of an entry: what makes two the same), each with where and when it was measured (`measured`), so
    one run can add entries without remeasuring every one."""
    report = json.loads(previous.read_text())
    here = {key(entry) for entry in measured}
    origin = {name: report[name] for name in ("command", "source", "date")}
    return [{"measured": origin} | entry for entry in report[field] if key(entry) not in here]


def write_result(name: str, figures: dict, out: Path | None = None) -> Path:
    """bench/results/<name>.json: the command line, source, machine and date, then the figures; paths
    in the cache or this checkout are recorded relative to it (`paths.portable_path`)."""
    out = out or RESULTS / f"{name}.json"
    report = {
        "command": " ".join([Path(sys.executable).name, *map(portable, sys.argv)]),
        "source": source_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **portable(figures),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return out
