"""The bench harness: the options every script shares, the held-out clips every fit-and-score bench
scores on, and what every script records beside its figures, so the next person compares like with
like. Each script keeps only what it measures."""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # every picture is a file: no bench opens a window
import numpy as np
import torch

from stream_decoder.data import load_truth, open_mouse
from stream_decoder.data.presets import simulator_version
from stream_decoder.decoder.artifact import load_artifact
from stream_decoder.decoder.baseline import TrialClips
from stream_decoder.decoder.evaluate import clip_groups, decode_clip
from stream_decoder.decoder.ridge import fit_ridge
from stream_decoder.metrics import video_correlation
from stream_decoder.paths import portable_path
from stream_decoder.provenance import source_version

RESULTS = Path(__file__).parent / "results"
PACKAGES = ("numpy", "torch", "onnxruntime", "pyzmq")
# The held-out groups every decoder is scored on, and the tiers they are drawn from.
GROUPS = ("oracle", "final_test_main", "gaussian_dots", "pink_noise", "drifting_gratings")
TIERS = ("oracle", "live_test_bonus", "final_test_main", "final_test_bonus")
REQUIRED = object()  # `arguments(data=REQUIRED)`: --data must be given


def arguments(
    doc: str, name: str | None = None, data=None, data_help: str = "dataset root", mask_from=None
) -> argparse.ArgumentParser:
    """A bench script's parser: its docstring (usage lines kept) as the description, and the shared
    options it asks for, each REQUIRED or with a default path: --data, --mask-from (the artifact
    whose evaluation mask every score uses); given the script's `name`, --out (the results JSON; the
    picture goes beside it)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    _path_option(parser, "--data", data, data_help, "DIR")
    _path_option(
        parser, "--mask-from", mask_from, "artifact whose evaluation mask every score uses", "ARTIFACT"
    )
    if name is not None:
        parser.add_argument(
            "--out",
            type=Path,
            default=RESULTS / f"{name}.json",
            metavar="JSON",
            help=f"results file; the picture goes beside it as .png (default: bench/results/{name}.json)",
        )
    return parser


def _path_option(parser: argparse.ArgumentParser, flag: str, default, help: str, metavar: str) -> None:
    if default is REQUIRED:
        parser.add_argument(flag, type=Path, required=True, metavar=metavar, help=help)
    elif default is not None:
        parser.add_argument(
            flag, type=Path, default=default, metavar=metavar, help=f"{help} (default: {default})"
        )


def picture_path(out: Path) -> Path:
    """Where the picture of results `out` goes: beside it, same name."""
    return out.with_suffix(".png")


class Subset(Sequence):
    """The clips with only some neurons (columns), as a rig recording fewer of them would give."""

    def __init__(self, clips, neurons: np.ndarray):
        self.clips, self.neurons = clips, neurons

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        activity, behavior4, video = self.clips[index]
        return activity[:, self.neurons], behavior4, video


def held_out_setup(data: Path, mask_from: Path):
    """The mask of artifact `mask_from`, the first mouse under `data`, its train clips, its
    held-out groups and their clips: what every fit-and-score bench starts from."""
    mask = load_artifact(mask_from).evaluation_mask
    mouse = open_mouse(data)
    clips = TrialClips(mouse, mouse.trials("train"), multi_plane=False)
    groups = clip_groups(mouse, TIERS)
    held_out = TrialClips(mouse, sorted({t for g in GROUPS for t in groups.get(g, [])}, key=int), False)
    return mask, mouse, clips, groups, held_out


def score(model, held_out, neurons: np.ndarray, groups: dict, mask) -> dict[str, float]:
    """`model`'s mean masked correlation on each held-out group, reading only `neurons`."""
    scores = {}
    for group in GROUPS:
        values = []
        for trial in groups.get(group, []):
            activity, behavior4, video = Subset(held_out, neurons)[held_out.trials.index(trial)]
            end = len(video) - model.cfg.lookahead
            decoded = decode_clip(model, activity, behavior4[:, :2], behavior4[:, 2:])
            values.append(video_correlation(decoded[:end], video[:end], mask))
        scores[group] = float(np.nanmean(values)) if values else float("nan")
    return scores


def fit_and_score(clips, held_out, neurons, cfg, mask, groups) -> dict:
    """A ridge fit on `clips` reading only `neurons`, its fit time, and its scores on the held-out groups."""
    started = time.perf_counter()
    model, report = fit_ridge(Subset(clips, neurons), cfg, mask, progress=False)
    seconds = time.perf_counter() - started
    result = {"neurons": len(neurons), "components": model.cfg.components, "fit_seconds": seconds}
    result |= {key: report[key] for key in ("penalty", "penalty_at_grid_edge", "gaze_gain")}
    result["groups"] = score(model, held_out, neurons, groups, mask)
    print(result)
    return result


def held_out_trials(mouse, per_tier: int) -> list[str]:
    """The first `per_tier` distinct movies of the oracle tier and of final_test_main: the clips a
    bench too slow for every held-out clip (the teacher) scores on."""
    records = load_truth(mouse.path).trials
    picked = []
    for tier in ("oracle", "final_test_main"):
        seen = set()
        for trial in mouse.trials(tier):
            if records[trial]["video_id"] not in seen and len(seen) < per_tier:
                seen.add(records[trial]["video_id"])
                picked.append(trial)
    return picked


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
    """bench/results/<name>.json: the command line, source, machine, date and simulator version, then
    the figures; paths in the cache or this checkout are recorded relative to it
    (`paths.portable_path`)."""
    out = out or RESULTS / f"{name}.json"
    report = {
        "command": " ".join([Path(sys.executable).name, *map(portable, sys.argv)]),
        "source": source_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "simulator": simulator_version(),
        **portable(figures),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return out
