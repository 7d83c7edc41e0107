"""docs/results.md and the README's results tables, rendered from bench/results/*.json.

Every measured figure has one home, the JSON its bench script wrote; this script is the only way
one reaches a page, so a page can never disagree with the run it quotes. Each section names the
command, commit and date that measured it; carried entries (a `--previous` run's) name their own.

    python bench/results_doc.py           # rewrite docs/results.md and the README's generated blocks
    python bench/results_doc.py --check   # exit 1 if either differs from what the results render

The CI test (tests/test_results_doc.py) runs the check, so a figure changed in bench/results/
without re-rendering, or a page edited by hand, fails the suite.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from stream_decoder.data.presets import simulator_version

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
RESULTS_MD = REPO / "docs" / "results.md"
README = REPO / "README.md"
BEGIN, END = "<!-- results_doc: {} -->", "<!-- results_doc: end -->"
# Benches that time the software alone (a step, the wire) and simulate no mouse: the simulator's
# version does not date them.
SIMULATOR_FREE = {"bench_step", "bench_step_gaze", "bench_step_residual", "bench_e2e", "bench_e2e_ramp"}
EARLIER_SIMULATOR = "**Measured on an earlier simulator than today's: not yet re-made.**"

GROUPS = {
    "oracle": "oracle",
    "final_test_main": "held-out photographs",
    "gaussian_dots": "gaussian dots",
    "pink_noise": "pink noise",
    "drifting_gratings": "drifting gratings",
}


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def f3(value) -> str:
    return "" if value is None else f"{value:.3f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def commit(source) -> str:
    if not isinstance(source, dict) or not source.get("commit"):
        return "commit not recorded"
    return f"commit {source['commit'][:8]}" + (" (uncommitted changes)" if source.get("dirty") else "")


def measured_on_earlier_simulator(name: str, report: dict) -> bool:
    return name not in SIMULATOR_FREE and report.get("simulator") != simulator_version()


def measured_by(name: str, report: dict) -> str:
    """Where a run's figures come from: its command, commit, date and machine, and whether it was
    measured on another simulator than the presets' today."""
    machine = report.get("machine") or {}
    where = (
        f"{machine.get('cores', '?')} cores, load {machine.get('load_average_1m', '?')}" if machine else ""
    )
    text = (
        f"Measured by `{report['command']}`, {commit(report.get('source'))}, "
        f"{report['date'][:10]}" + (f", {where}" if where else "") + "."
    )
    return f"{text} {EARLIER_SIMULATOR}" if measured_on_earlier_simulator(name, report) else text


def carried_from(entry: dict) -> str:
    """A carried entry's own run, as a footnote-sized cell."""
    origin = entry.get("measured")
    return "" if origin is None else f"{origin['date'][:10]}, {commit(origin.get('source'))}"


def picture(report: dict, key: str = "picture") -> str:
    name = report.get(key)
    return f"\n\n![{name}](../bench/results/{name})" if name else ""


def group_cells(groups: dict) -> list[str]:
    return [f3(groups.get(group)) for group in GROUPS]


# --- sections: each renders one bench's JSON (a bench that has not run has no section) ---


def realism(r: dict) -> str:
    return (
        "What the paper and the literature measured on real mice beside the same figures on this "
        "simulator's mouse, oracle clips / held-out photographs, the gaze baseline unless named. "
        "Each column is one run of the script (`--label`, `--preset`, `--neurons`, "
        "`--imaging-noise`, `--components`).\n\n" + r["table"] + picture(r)
    )


def decoders(r: dict) -> str:
    """The decoders a lab would choose between, on the demo mouse's held-out groups."""
    gaze = next(d for d in r["decoders"] if d["decoder"] == "gaze ridge")
    rows = [[d["decoder"], f"{d['gaze_gain']:g}", *group_cells(d["groups"])] for d in r["decoders"]]
    students = [d for d in r["decoders"] if d["decoder"].startswith("student")]
    ratios = [
        [f"{d['decoder']} / gaze ridge", "", *(f"{d['groups'][g] / gaze['groups'][g]:.2f}" for g in GROUPS)]
        for d in students
    ]
    return (
        f"Masked video correlation with the true stimulus on `{r['mouse']}` ({r['mask_pixels']}-px "
        "evaluation mask, first 30 frames skipped), the same clips and frames for every row. Plain "
        "ridge is the linear baseline (`stream-decoder baseline`); gaze ridge is the same read-out "
        "moved back by the eye's shift, its gain chosen on held-back training clips "
        f"(the simulator's: {r['simulated_gain']}).\n\n"
        + table(["decoder", "gaze gain", *GROUPS.values()], rows + ratios)
        + picture(r)
    )


def budget(r: dict) -> str:
    def mouse(e: dict) -> str:
        return e["mouse"] + (f", repeat reliability {e['reliability']:.2f}" if "reliability" in e else "")

    rows = [[e["row"], mouse(e), *group_cells(e["groups"]), carried_from(e)] for e in r["rows"]]
    return (
        f"One table from the screen to the decoders, the same held-out clips of each mouse and "
        f"{r['mask_pixels']}-px mask (bench_budget.py's docstring says what each row fits).\n\n"
        + table(["row", "mouse", *GROUPS.values(), "carried from"], rows)
        + picture(r)
    )


def neurons(r: dict) -> str:
    rows = [
        [f"{p['neurons']:,}", f"{p['student']['model']} / {p['baseline']['model']}"]
        + [f"{p['student']['groups'][g]:.3f} / {p['baseline']['groups'][g]:.3f}" for g in GROUPS]
        for p in r["points"]
    ]
    paper = " / ".join(f"{c}" for c in r["paper"]["correlation"])
    return (
        f"The same clips simulated with each neuron count (a fresh population each), the residual "
        f"student ({r['epochs']} epochs on the recorded clips) / the gaze baseline it corrects, "
        f"{r['mask_pixels']}-px mask. The paper's decoder on real mice: {paper} at 12.5 / 25 / 50 / "
        "100 % of its neurons.\n\n" + table(["neurons", "models", *GROUPS.values()], rows) + picture(r)
    )


def baseline(r: dict) -> str:
    def rows(entries, key):
        return [[f"{e[key]:,}", f"{e['fit_seconds']:.0f}", *group_cells(e["groups"])] for e in entries]

    parts = [
        f"Ridge fits on `{r['mouse']}`'s train tier, scored in the {r['mask_pixels']}-px mask; neuron "
        "subsets drawn at random (seed 0)."
    ]
    if len(r["components"]) > 1:
        parts.append(table(["components", "fit s", *GROUPS.values()], rows(r["components"], "components")))
    parts.append(table(["neurons", "fit s", *GROUPS.values()], rows(r["neurons"], "neurons")))
    if "neurons_plain" in r:
        parts.append(
            "The same subsets without the gaze correction:\n\n"
            + table(["neurons", "fit s", *GROUPS.values()], rows(r["neurons_plain"], "neurons"))
        )
    return "\n\n".join(parts) + picture(r)


def fidelity(r: dict) -> str:
    groups = r["groups"]
    missing = sorted((m for m in next(iter(groups.values()))["missing"] if float(m) > 0), key=float)
    rows = [
        [group, g["clips"], f3(g["student"]), f3(g["baseline"])] + [f3(g["missing"][m]) for m in missing]
        for group, g in groups.items()
    ]
    parts = [
        f"`{r['artifact']}` (model {r['model']}, {r['kind']}) beside the baseline "
        f"`{r['baseline']['artifact']}` (model {r['baseline']['model']}) on `{r['mouse']}`, "
        f"{r['mask_pixels']}-px mask; the student again with a fraction of its neurons lost at random "
        "(held at their training mean, as a dropped ROI).",
        table(
            ["group", "clips", "student", "baseline", *(f"{float(m):.1%} lost" for m in missing)],
            rows,
        ),
    ]
    c = r["compute"]
    parts.append(
        f"Decoding one 300-frame clip on {c['backend']}: student {c['student_seconds_per_clip']:.3f} s, "
        f"baseline {c['baseline_seconds_per_clip']:.3f} s."
    )
    sweep = r.get("lookahead_sweep")
    if sweep:
        tiers = list(next(iter(sweep.values())))
        parts.append(
            "The lookahead L (ticks of 33 ms the decoded frame lies behind the newest activity): the "
            "artifact's recipe and its baseline retrained at each L.\n\n"
            + table(
                ["L", *(f"{GROUPS.get(t, t)}: {who}" for t in tiers for who in ("student", "baseline"))],
                [
                    [L, *(f3(sweep[L][t][who]) for t in tiers for who in ("student", "baseline"))]
                    for L in sorted(sweep, key=int)
                ],
            )
        )
    return "\n\n".join(parts) + picture(r)


def blend(r: dict) -> str:
    rows = [
        [
            model,
            group,
            s["clips"],
            f3(s["student"]),
            f3(s["baseline"]),
            f3(s["average"]),
            f"{s['average_over_baseline']:.3f}",
        ]
        for model, groups in r["students"].items()
        for group, s in groups.items()
    ]
    return (
        f"Each student, the baseline {r['baseline']} and their frame-by-frame average on "
        f"`{r['mouse']}`: an average above both says the student sees what the baseline misses.\n\n"
        + table(["student", "group", "clips", "student", "baseline", "average", "average / baseline"], rows)
        + picture(r)
    )


def precision(r: dict) -> str:
    rows = []
    for run in r["runs"]:
        for g in GROUPS:
            if g in run["groups"]["float32"]:
                rows.append(
                    [
                        f"{run['model']} ({run['kind']}, {run['neurons']:,})",
                        GROUPS[g],
                        f3(run["groups"]["float32"][g]),
                        f3(run["groups"]["int8"][g]),
                        f"{run['int8_minus_float32'][g]:+.4f}",
                        carried_from(run),
                    ]
                )
    return (
        "Every held-out clip streamed tick by tick through ONNX Runtime with the float32 graph and "
        "the int8 one (`export --int8-read-in`).\n\n"
        + table(["model", "group", "float32", "int8", "int8 - float32", "carried from"], rows)
    )


def shifter_line(fits: list[dict] | None) -> str:
    """What each member's shifter learned, against the simulator's eye."""
    if not fits:
        return ""
    members = "; ".join(
        f"correlation {f['correlation'][0]:.2f} / {f['correlation'][1]:.2f}, "
        f"rms error {f['rms_error_px']:.2f} px"
        for f in fits
    )
    return (
        f"\n\nEach member's shifter against the simulator's eye (dx / dy, held-out photographs; the true "
        f"shift's sd {fits[0]['true_sd_px'][0]:.2f} / {fits[0]['true_sd_px'][1]:.2f} px): {members}."
    )


def encoder(r: dict) -> str:
    c = r["correlation"]
    rows = [
        [
            tier,
            c[tier]["clips"],
            " / ".join(f3(m) for m in c[tier]["members"]),
            f3(c[tier]["ensemble"]),
            f3(c[tier]["noise_free_rates"]),
        ]
        for tier in c
    ]
    e, fb = r["ensemble"], r["forward_backward"]
    return (
        f"{e['members']} `{e['preset']}`-preset members "
        f"({'with' if e.get('shifter') else 'without'} a shifter), {e['epochs']} epochs on "
        f"`{r['dataset']['mouse']}`: "
        "single-trial correlation with the recorded responses (per neuron over all frames, first 50 "
        "skipped, mean over neurons) beside the simulator's noise-free rates, the ceiling any model "
        "can reach. DwiseNeuro's ensemble on real data: 0.29 (REFERENCE.md section 2).\n\n"
        + table(["tier", "clips", "members", "ensemble", "noise-free rates"], rows)
        + shifter_line(r.get("shifter"))
        + f"\n\nTraining epoch p50 {r['epoch_s']['p50']:.0f} s; forward and backward of one 300-frame "
        f"clip {fb['cpu_preset_clip_s']['p50']:.2f} s (`cpu` preset); of one 16-frame stack of the published "
        f"`dwiseneuro` shape {fb['dwiseneuro_stack_s']['p50']:.1f} s."
    )


def teacher_start(r: dict) -> str:
    rows = [
        [
            name,
            f3(row["mean"]),
            " / ".join(f"{v:.2f}" for v in row["per_clip"]),
            f3(row.get("encoder_loss")),
            row.get("seconds_per_clip", ""),
        ]
        for name, row in r["rows"].items()
    ]
    return (
        f"Inverting the {r['members']}-member ensemble from gray and from the baseline's decoding "
        f"(`{r['baseline']}`), on clips {', '.join(r['trials'])} of `{r['mouse']}`, frames "
        f"{r['frames_scored'][0]}-{r['frames_scored'][1]}, {r['eval_pixels']}-px mask; member 0's "
        "Poisson loss of each video beside its correlation (a video the encoder likes better than "
        "the truth while scoring lower against it says the encoder, not the optimiser, is the limit).\n\n"
        + table(["video", "mean", "per clip", "member 0's loss", "s per clip"], rows)
        + picture(r)
    )


def teacher_ceiling(r: dict) -> str:
    rows = [
        [
            name,
            f3(row["mean"]),
            " / ".join(f"{v:.2f}" for v in row["per_clip"]),
            row.get("sigma", ""),
            f3(row.get("encoder_loss")),
            row.get("seconds_per_clip", ""),
        ]
        for name, row in r["rows"].items()
    ]
    runs = "; ".join(
        f"{label}: {run['iterations']} iterations at rate {run['lr']:g}" for label, run in r["runs"].items()
    )
    return (
        "Gradient inversion with a perfect encoder (the mouse's own encoding, `simulator-encoder`) "
        f"and with member 0 of the trained ensemble, every pixel free, on clips {', '.join(r['trials'])} "
        f"of `{r['mouse']}` ({runs}); each run's smoothing chosen on training clips "
        f"{', '.join(r['selection_trials'])}. Frames {r['frames_scored'][0]}-{r['frames_scored'][1]}, "
        f"{r['eval_pixels']}-px mask; the perfect encoder's Poisson loss of each video beside it.\n\n"
        + table(["video", "mean", "per clip", "smoothing sd", "perfect encoder's loss", "s per clip"], rows)
        + picture(r)
    )


def teacher(r: dict) -> str:
    q, cost = r["quality"], r["cost"]
    rows = [
        ["members", " / ".join(f3(m) for m in q["members"])],
        ["ensemble", f3(q["ensemble"])],
        ["ensemble, unsmoothed", f3(q["ensemble_unsmoothed"])],
        ["no mask", f3(q["no_mask"])],
        *[[f"member 0, {float(k):.1%} of the neurons", f3(v)] for k, v in q["neuron_fraction"].items()],
        ["seconds per clip, ensemble", f"{cost['seconds_per_clip_ensemble']:.0f}"],
    ]
    return (
        f"The gradient-based teacher ({r['members']} members, {r['settings']['iterations']} iterations) "
        f"on clips {', '.join(r['trials'])} of `{r['mouse']}`, in its own {r['mask']['eval_pixels']}-px "
        "mask.\n\n" + table(["figure", "masked correlation"], rows) + picture(r)
    )


def loop(r: dict) -> str:
    rows = [
        [
            name,
            f3(m["fidelity"]),
            f"{m['total']['p50']:.0f} / {m['total']['p99']:.0f}",
            f"{m['picture_delay']['p50']:.0f}",
            f"{m['lookahead']['p50']:.0f}",
            f"{m['transport_compute']['p50']:.0f}",
            f"{m['daemon_receive_to_publish_ms']['p50']:.2f}",
        ]
        for name, m in r["models"].items()
    ]
    cost = [
        [
            name,
            f"{c['show']['p50']:.2f} / {c['show']['p99']:.2f}",
            f"{c['floor']['p50']:.2f} / {c['floor']['p99']:.2f}",
        ]
        for name, c in r["virtual_rig_cost_ms"].items()
    ]
    return (
        f"A step shown by the stimulus program -> the first reconstruction that shows it, through the "
        f"virtual rig on `{r['mouse']}` (ms; the biology and indicator's half rise alone: "
        f"{r['biology_indicator_half_rise_ms']:.0f} ms).\n\n"
        + table(
            ["model", "fidelity", "total p50 / p99", "picture delay", "lookahead", "the rest", "daemon"], rows
        )
        + "\n\nThe virtual rig's cost per tick (ms, p50 / p99) beside its floor:\n\n"
        + table(["case", "virtual rig", "floor"], cost)
        + picture(r)
    )


def loop_split(r: dict) -> str:
    rows = [[name.replace("_", " "), f"{v['p50']:.1f}", f"{v['p99']:.1f}"] for name, v in r["steps"].items()]
    software, relay = r["software_every_frame"], r["relay_every_message"]
    daemon, target = r["daemon_receive_to_publish_ms"], r["target_software_ms"]
    return (
        f"The loop in separate processes ({', '.join(r['processes'])}) on `{r['mouse']}`, "
        f"{r['neurons']:,} neurons in {r['planes']} planes, model {r['model']}: a step shown -> the first "
        f"frame that shows it, {r['steps_timed']} steps, ms (the biology and indicator's half rise alone: "
        f"{r['biology_indicator_half_rise_ms']:.0f} ms).\n\n"
        + table(["part", "p50", "p99"], rows)
        + "\n\nWhat the software adds, newest needed activity message -> frame, every frame, beside a bare "
        "ZeroMQ relay of the same messages (arrival at the stimulus program, ms):\n\n"
        + table(
            ["path", "p50", "p99", "max", "samples"],
            [
                ["daemon", *(f"{software[k]:.2f}" for k in ("p50", "p99", "max")), r["frames"]],
                ["bare ZeroMQ relay", *(f"{relay[k]:.2f}" for k in ("p50", "p99", "max")), relay["messages"]],
                [
                    "daemon's own receive -> publish",
                    *(f"{daemon[k]:.2f}" for k in ("p50", "p99", "max")),
                    daemon["samples"],
                ],
            ],
        )
        + f"\n\nTarget for the software: p50 <= {target['p50']:.0f} ms, p99 <= {target['p99']:.0f} ms."
        + picture(r)
    )


def calibrate(r: dict) -> str:
    groups = list(r["held_out_clips"])
    head = ["decoder", "minutes of data", "fit s", "gaze gain", *(g.replace("_", " ") for g in groups)]
    rows = [
        [
            f"calibrated on the day's block ({c['clips']} clips)",
            f"{c['minutes']:g}",
            f"{c['fit_s']:.0f}",
            c["gaze_gain"],
        ]
        + [f3(c["scores"][g]) for g in groups]
        for c in r["calibrated"]
    ]
    offline = r["offline"]
    rows.append(
        [
            "offline, the dataset's training clips",
            f"{offline['minutes']:.1f}",
            f"{offline['fit_s']:.0f}",
            offline["gaze_gain"],
        ]
        + [f3(offline["scores"][g]) for g in groups]
    )
    clips = ", ".join(f"{n} {g.replace('_', ' ')}" for g, n in r["held_out_clips"].items())
    return (
        f"The gaze baseline fitted on a calibration block of `{r['mouse']}` (a mouse no bundled model "
        f"has seen) taken through its virtual rig, beside the same decoder fitted offline; masked "
        f"correlation on the dataset's held-out clips ({clips}; {r['mask_pixels']}-px mask).\n\n"
        + table(head, rows)
        + picture(r)
    )


def e2e(r: dict) -> str:
    def cells(run):
        lat = run["latency_ms"]
        return [
            f"{lat['p50']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['p99.9']:.2f}",
            run["lost"],
            f"{run['cadence_jitter_ms']:.2f}",
        ]

    a, met = r["artifact"], r["targets_met"]
    return (
        f"Rig send -> display receive at 30 Hz, {a['neurons']:,} neurons ({a['note']}), {r['backend']} on "
        f"{r.get('threads', 1)} threads, {r.get('scheduling', 'default scheduling')}, {r['transport']}.\n\n"
        + table(
            ["path", "p50 ms", "p99 ms", "p99.9 ms", "lost", "cadence jitter ms"],
            [["daemon", *cells(r["e2e_30hz"])], ["bare ZeroMQ relay, interleaved", *cells(r["floor_30hz"])]],
        )
        + f"\n\nSustained rate with p99 under {r['ramp_p99_limit_ms']:.0f} ms: "
        f"{r['sustained_msg_per_s']:,.0f} msg/s. Targets ({r['targets']}) met: "
        f"{', '.join(k for k, v in met.items() if v) or 'none'}; missed: "
        f"{', '.join(k for k, v in met.items() if not v) or 'none'}." + picture(r, "histogram")
    )


def step(r: dict) -> str:
    def timed(s: dict) -> list[list]:
        best = s["best_repeat"]
        if "floor" in best:  # the read-in matvec floor, on all cores and on one
            return [
                [s["neurons"], s["latent"], f"floor, {how}", f"{t['p50_us']:.0f}", f"{t['p99_us']:.0f}", ""]
                for how, t in (("all cores", best["floor"]), ("1 thread", best["floor_1thread"]))
            ]
        ratio = f"{best['p99_over_floor_1thread_p99']:.2f}"
        return [
            [s["neurons"], s["latent"], s["backend"], f"{best['p50_us']:.0f}", f"{best['p99_us']:.0f}", ratio]
        ]

    paced = [
        [p["neurons"], p["latent"], p["backend"], p["mode"], f"{p['p50_us']:.0f}", f"{p['p99_us']:.0f}"]
        for p in r["paced_30hz"]
    ]
    return (
        "`Backend.step` in µs, a student of the standard shape with random weights ("
        + ", ".join(f"{key} {value}" for key, value in r["student"].items())
        + f"). {r['notes']}\n\n"
        + table(
            ["neurons", "read-in width", "backend", "p50", "p99", "p99 / 1-thread floor"],
            [row for s in r["summary"] for row in timed(s)],
        )
        + "\n\nAt 30 Hz, one step a tick:\n\n"
        + table(["neurons", "read-in width", "backend", "mode", "p50", "p99"], paced)
    )


def frontend(r: dict) -> str:
    stages = [
        [
            name,
            f"{s['whole_ms']['p50']:.1f} / {s['whole_ms']['p99']:.1f}",
            f"{s['floor_ms']['p50']:.1f} / {s['floor_ms']['p99']:.1f}",
        ]
        for name, s in r["stages"].items()
    ]
    parts = [
        f"The front end per 512 x 512 frame at 30 Hz (ms, p50 / p99; target p99 {r['target_p99_ms']:.0f}) "
        "beside its floor (one FFT and one sparse product):",
        table(["case", "front end", "floor"], stages),
    ]
    if "end_to_end" in r:
        e2e = r["end_to_end"]
        d, f = e2e["daemon"]["latency_ms"], e2e["floor"]["latency_ms"]
        activity = e2e.get("activity", {}).get("latency_ms")  # runs before the activity path had none
        beside = f"the activity path {activity['p50']:.1f} / {activity['p99']:.1f} ms; " if activity else ""
        parts.append(
            f"Raw frames of {e2e['rois']:,} ROIs, rig send -> display receive: p50 {d['p50']:.1f}, "
            f"p99 {d['p99']:.1f} ms, {e2e['daemon']['lost']} lost; in the same run {beside}"
            f"bare relay {f['p50']:.1f} / {f['p99']:.1f} ms."
        )
    if "fidelity" in r:
        c = r["fidelity"]["correlation_in_mask"]
        parts.append(table(["decoding", "masked correlation"], [[k, f3(v)] for k, v in c.items()]))
    return "\n\n".join(parts) + picture(r)


def frontend_vs_suite2p(r: dict) -> str:
    targets = r["targets"]
    return (
        f"The live front end (causal, frame by frame, in each overlap mode) beside suite2p 1.1 (offline, "
        f"all frames) and a naive weighted mean with the true shift undone, on the same frames and ROIs: "
        f"median Pearson r "
        f"per ROI with the true dF/F and, both smoothed by 2 frames, of the events with the true spikes. "
        f"Targets: live >= {targets['live_over_suite2p']} x suite2p and >= naive, shift error <= "
        f"{targets['shift_rms_px']} px rms.\n\n" + r["table"] + picture(r)
    )


def simulate(r: dict) -> str:
    rows = [
        [
            s["preset"],
            f"{s['neurons']:,}",
            s["trials"],
            f"{s['clips_per_s']:.2f}",
            f"{s['peak_rss_mb']:.0f}",
            f3(s.get("repeat_reliability_mean")),
            s.get("fingerprint", ""),
        ]
        for s in r["runs"]
    ]
    return (
        r["note"]
        + "\n\n"
        + table(
            ["preset", "neurons", "trials", "clips/s", "peak MB", "repeat reliability", "fingerprint"], rows
        )
    )


SECTIONS: list[tuple[str, str, Callable[[dict], str]]] = [
    ("bench_realism", "How real the synthetic mouse is", realism),
    ("bench_gaze", "Where the decoder stands", decoders),
    ("bench_budget", "Where the fidelity is lost", budget),
    ("bench_neurons", "Neuron count: the student and its baseline", neurons),
    ("bench_baseline", "The linear baseline: components and neurons", baseline),
    ("bench_baseline_gaze", "The neuron curve with and without gaze correction", baseline),
    ("bench_fidelity", "Lookahead and lost neurons", fidelity),
    ("bench_blend", "Does the student see what the baseline misses", blend),
    ("bench_precision", "int8 weights", precision),
    ("bench_encoder", "The encoder ensemble", encoder),
    ("bench_encoder_no_shifter", "The encoder ensemble without a shifter", encoder),
    ("bench_teacher_ceiling", "The teacher with a perfect encoder", teacher_ceiling),
    ("bench_teacher_start", "The teacher from a good start", teacher_start),
    ("bench_teacher", "The teacher", teacher),
    ("bench_calibrate", "Calibrating on the day", calibrate),
    ("bench_loop", "Closed-loop latency", loop),
    ("bench_loop_split", "Closed-loop latency in separate processes", loop_split),
    ("bench_e2e", "Rig to display latency", e2e),
    ("bench_step", "Backend.step", step),
    ("bench_step_residual", "Backend.step, residual student", step),
    ("bench_step_gaze", "Backend.step, gaze-corrected residual student", step),
    ("bench_frontend", "Raw frames in", frontend),
    ("bench_frontend_vs_suite2p", "Raw frames in, beside suite2p", frontend_vs_suite2p),
    ("bench_simulate", "The simulator", simulate),
]


def results_md() -> str:
    parts = [
        "# Measured figures\n\n"
        "Generated by `python bench/results_doc.py` from `bench/results/*.json`; do not edit by hand "
        "(a test fails when this page and the results disagree). Every section names the run that "
        "measured it; rerun that command to remeasure, then re-render. Masked correlations are with "
        "the true stimulus in the decoder's evaluation mask, first 30 frames of each clip skipped."
    ]
    for name, title, render in SECTIONS:
        report = load(name)
        if report is not None:
            parts.append(f"## {title}\n\n{measured_by(name, report)}\n\n{render(report)}")
    return "\n\n".join(parts) + "\n"


README_BLOCKS = {"realism": ("bench_realism", realism), "decoders": ("bench_gaze", decoders)}


def readme_block(name: str) -> str:
    """The README's block `name`: one section's tables, with the run that measured them."""
    bench, render = README_BLOCKS[name]
    report = load(bench)
    if report is None:
        return f"Not measured yet: run bench/{bench}.py."
    body = f"{render(report)}\n\n{measured_by(bench, report)}"
    return body.replace("../bench/results/", "bench/results/")


def readme_with_blocks(text: str) -> str:
    """`text` with every `<!-- results_doc: NAME -->` ... `<!-- results_doc: end -->` block re-rendered."""
    for name in README_BLOCKS:
        begin = BEGIN.format(name)
        if begin not in text or END not in text.split(begin, 1)[1]:
            raise ValueError(f"README.md has no {begin} ... {END} block to render the results into")
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{readme_block(name)}\n{END}{rest.split(END, 1)[1]}"
    return text


def stale() -> list[Path]:
    """The pages whose text differs from what the results render."""
    wanted = {RESULTS_MD: results_md(), README: readme_with_blocks(README.read_text())}
    return [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 where a page differs; write nothing")
    args = parser.parse_args()
    if args.check:
        for path in stale():
            print(f"{path.relative_to(REPO)}: differs from bench/results; run python bench/results_doc.py")
        return 1 if stale() else 0
    RESULTS_MD.write_text(results_md())
    README.write_text(readme_with_blocks(README.read_text()))
    print(f"wrote {RESULTS_MD.relative_to(REPO)} and the results blocks of README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
