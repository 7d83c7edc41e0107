"""`write_report`: one HTML page of a demo run that opens offline, to show a colleague what was decoded.

From the run record (run.npz) and summary.json the demo wrote: the stimulus with the evaluation
mask drawn, the student as it streamed, the baseline (the gaze baseline where the demo fitted it)
decoding the same clips offline (aligned frame by frame) and the teacher where a store is given;
the masked correlation per clip beside a shuffled control; latency and output cadence; the figures
table. Every number on the page comes from the run folder or from a file it names. Images are
embedded as data URIs.
"""

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_decoder.data import FRAME_RATE_HZ, GRAY, MouseDataset, open_mouse
from stream_decoder.decoder.artifact import META_FILE
from stream_decoder.decoder.baseline import ensure_baseline
from stream_decoder.decoder.evaluate import Contestant
from stream_decoder.display.run_record import RunRecord, load_summary
from stream_decoder.display.viewer import PLAUSIBLE_LATENCY_S
from stream_decoder.metrics import video_correlation
from stream_decoder.teacher.store import TeacherStore

REPORT_FILE = "report.html"
MOVIE_FILE = "report.gif"  # also beside the page, small enough for a README
STRIP_FILE = "report_strip.png"
GIF_LIMIT_BYTES = 2_000_000
GIF_FRAMES = 150  # at most; frames are taken evenly over the run and play at the rig's pace
GIF_GRAYS = 64  # palette levels: fewer compress better, 64 still shows a natural movie
SKIP = 30  # first frames of each clip left out of the correlations, as `evaluate` scores them
SHUFFLES = 32  # time shifts of the truth for the control
MIN_SHIFT_S = 2.0  # a shifted truth this far away shares no more with the frame than chance
BENCH_E2E = Path(__file__).resolve().parents[2] / "bench" / "results" / "bench_e2e.json"
BASELINE_ROW = "baseline, offline"
TEACHER_NOT_RUN = "teacher: not run for these clips"
TEACHER_LACKS = "teacher: not in the store for clip(s)"
TEACHER_NOT_MEASURED = "not measured for these clips"
NOT_IN_STORE = "not in the\nteacher store"  # over a row's panel where it has no frames of the clip
STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:1em auto;color:#222} img{max-width:100%} "
    "table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
)


@dataclass
class Videos:
    """The run's frames by row of the movie, (F, H, W) each, aligned with the run record."""

    rows: dict[str, np.ndarray]
    notes: list[str]  # what is not shown and why
    lookahead: int  # frames at each clip's end the offline decoders leave gray
    missing: dict[str, set[int]]  # per row: the clips (indices into the run's trials) it has no frames of
    # per trial: the teacher's wall time, where its store records one; None: no store given
    teacher_seconds: dict[str, float] | None
    baseline: str  # which baseline the BASELINE_ROW is (`baseline_kind`)

    def has(self, name: str, clip: int) -> bool:
        return name in self.rows and clip not in self.missing.get(name, ())


def offline_videos(record: RunRecord, summary: dict, mouse: MouseDataset, teacher: Path | None) -> Videos:
    """Stimulus and student from the record; the baseline (and the teacher, on the clips its store
    holds) decoded or loaded per clip."""
    baseline = Path(summary["beside_the_baseline"].get("artifact", ""))
    if not (baseline / META_FILE).is_file():
        baseline = ensure_baseline(mouse.path.parent, record.mask, mouse.name)
    rival = Contestant.open(baseline, mouse, "baseline")
    rows = {
        "stimulus": record.truth.astype(np.float32),
        "student, live": record.recon.astype(np.float32),
        BASELINE_ROW: align(record, [rival.decode(mouse, t) for t in record.trials]),
    }
    videos = Videos(rows, [], rival.artifact.meta.lookahead, {}, None, baseline_kind(rival.artifact))
    if teacher is None:
        videos.notes.append(TEACHER_NOT_RUN)
    else:
        add_teacher(videos, record, TeacherStore(teacher), mouse.name)
    return videos


def baseline_kind(artifact) -> str:
    """What a baseline artifact is, in words: the gaze baseline with its gain, or plain ridge."""
    gain = artifact.meta.provenance.get("baseline", {}).get("gaze_gain", 0.0)
    if gain:
        return f"gaze baseline: ridge on the true stimuli, moved back by the eye's shift at gain {gain:g}"
    return "plain ridge on the true stimuli, no eye-shift correction"


def add_teacher(videos: Videos, record: RunRecord, store: TeacherStore, mouse: str) -> None:
    """The teacher's row on the clips the store holds (gray and not scored on the others, named in the
    notes) and its seconds per clip."""
    store.manifest()  # a clear error where it is no store
    videos.teacher_seconds = {}
    held = [t for t in record.trials if store.has(mouse, t)]
    lacking = [t for t in record.trials if t not in held]
    if not held:
        videos.notes.append(f"{TEACHER_NOT_RUN}: the store {store.root} holds none of them")
        return
    videos.rows["teacher"] = align(
        record, [store.load(mouse, t) if t in held else None for t in record.trials]
    )
    metrics = {t: store.metrics(mouse, t) for t in held}
    videos.teacher_seconds = {t: m["seconds"] for t, m in metrics.items() if "seconds" in m}
    if lacking:
        videos.missing["teacher"] = {record.trials.index(t) for t in lacking}
        videos.notes.append(
            f"{TEACHER_LACKS} {', '.join(lacking)} (store {store.root}): gray there and not scored"
        )


def align(record: RunRecord, clips: list[np.ndarray | None]) -> np.ndarray:
    """Per-clip videos in stimulus time, as the run's frames: (F, H, W), gray where none exists."""
    out = np.full(record.recon.shape, GRAY, np.float32)
    for i, video in enumerate(clips):
        if video is None:
            continue
        at = np.flatnonzero((record.clip == i) & (record.frame < len(video)))
        out[at] = video[record.frame[at]]
    return out


def scored(record: RunRecord, clip: int, end: int) -> np.ndarray:
    """Indices of the run's frames of `clip` that every decoder decoded (SKIP <= frame < end), in order."""
    at = np.flatnonzero((record.clip == clip) & (record.frame >= SKIP) & (record.frame < end))
    return at[np.argsort(record.frame[at], kind="stable")]


def shuffled_control(recon: np.ndarray, truth: np.ndarray, mask) -> np.ndarray:
    """Correlations of the frames with the truth shifted in time (circularly, >= MIN_SHIFT_S away)."""
    near = round(MIN_SHIFT_S * FRAME_RATE_HZ)
    if len(truth) <= 2 * near:
        return np.full(1, np.nan)
    shifts = np.unique(np.linspace(near, len(truth) - near, SHUFFLES).astype(int))
    return np.array([video_correlation(recon, np.roll(truth, s, axis=0), mask, skip=0) for s in shifts])


def clip_scores(record: RunRecord, videos: Videos, lengths: list[int]) -> list[dict]:
    """Per clip: masked correlation of each decoder with the stimulus, and the student's control."""
    rows = []
    for i, trial in enumerate(record.trials):
        at = scored(record, i, lengths[i] - videos.lookahead)
        row = {"trial": trial, "frames": len(at)}
        if len(at) < 2:
            rows.append(row)
            continue
        truth = videos.rows["stimulus"][at]
        for name, video in videos.rows.items():
            if name != "stimulus" and videos.has(name, i):
                row[name] = video_correlation(video[at], truth, record.mask, skip=0)
        control = shuffled_control(videos.rows["student, live"][at], truth, record.mask)
        row["shuffled control, mean"] = float(np.nanmean(control))
        row["shuffled control, p95"] = float(np.nanpercentile(control, 95))
        rows.append(row)
    return rows


def percentiles(values_ms: np.ndarray) -> dict:
    return {"p50": float(np.median(values_ms)), "p99": float(np.percentile(values_ms, 99))}


def timing(record: RunRecord, summary: dict) -> dict:
    """Latency (shown minus rig time) and cadence (inter-arrival intervals) of the run, in ms."""
    latency = record.latency_s * 1e3
    speed = summary["demo"].get("speed", 1.0)
    note = ""
    if speed != 1.0:
        note = f"n/a: replayed at speed {speed}, so rig time is not real time"
    elif not (latency.size and latency.min() >= 0 and latency.max() <= PLAUSIBLE_LATENCY_S * 1e3):
        note = "n/a: the rig clock is not this host's"
    intervals = np.diff(record.arrival_s) * 1e3
    return {
        "latency_ms": None if note else percentiles(latency),
        "latency_note": note,
        "daemon_latency_ms": summary.get("daemon_latency_ms"),
        "interval_ms": percentiles(intervals) if intervals.size else None,
        "interval_jitter_ms": float(intervals.std()) if intervals.size else None,
    }


def zmq_floor(path: Path = BENCH_E2E) -> dict | None:
    """The bare-ZeroMQ latency floor (no model) that bench/bench_e2e.py measured, where its file is."""
    try:
        bench = json.loads(path.read_text())
        floor = bench["floor_30hz"]["latency_ms"]
        return {
            "file": str(path),
            "date": bench["date"],
            "transport": bench["transport"],
            "latency_ms": floor,
        }
    except (OSError, ValueError, KeyError):
        return None


def mean_over(clips: list[dict], keys: list[str]) -> dict:
    """Each key's mean over the clips that have it (NaN where none has)."""
    return {k: float(np.nanmean(v)) if (v := [c[k] for c in clips if k in c]) else float("nan") for k in keys}


def compute_cost(summary: dict, videos: Videos, lengths: dict[str, int]) -> dict:
    """Student compute per clip (the daemon's receive-to-publish p50 times the clip's frames: one step
    per frame, the demo's input being single-plane) against the teacher's seconds per clip that its
    store records, both over the clips the store timed (all the run's clips where none)."""
    per_frame = (summary.get("daemon_latency_ms") or {}).get("p50")
    seconds = videos.teacher_seconds or {}
    timed = [t for t in lengths if t in seconds]
    frames = float(np.mean([lengths[t] for t in timed or lengths]))
    student = None if per_frame is None else per_frame / 1e3 * frames
    teacher = float(np.mean([seconds[t] for t in timed])) if timed else None
    untimed = "no teacher store given" if videos.teacher_seconds is None else "its store times none of them"
    return {
        "student_ms_per_frame": per_frame,
        "frames_per_clip": frames,
        "student_s_per_clip": student,
        "student_backend": summary["demo"].get("backend"),
        "teacher_s_per_clip": teacher,
        "teacher_timed_clips": timed,
        "teacher_note": None if timed else f"{TEACHER_NOT_MEASURED}: {untimed}",
        "teacher_over_student": teacher / student if teacher is not None and student else None,
    }


def report_figures(record: RunRecord, summary: dict, videos: Videos, lengths: list[int]) -> dict:
    """Every number of the page (also embedded in it as JSON, id "figures")."""
    clips = clip_scores(record, videos, lengths)
    decoders = [name for name in videos.rows if name != "stimulus"]
    mean = mean_over(clips, [*decoders, "shuffled control, mean", "shuffled control, p95"])
    taught = [c for c in clips if "teacher" in c]
    return {
        "clips": clips,
        "mean_over_clips": mean,  # each over the clips it was scored on
        # Every decoder on the clips the teacher was scored on: the comparison a partial store allows.
        "teacher_clips": {"trials": [c["trial"] for c in taught], **mean_over(taught, decoders)}
        if taught
        else None,
        "student_over_baseline": mean["student, live"] / mean[BASELINE_ROW],
        "baseline": videos.baseline,
        "cost": compute_cost(summary, videos, dict(zip(record.trials, lengths, strict=True))),
        "mask_pixels": None if record.mask is None else int(record.mask.sum()),
        "timing": timing(record, summary),
        "zmq_floor": zmq_floor(),
        "frames_received": len(record.recon),
        "frames_lost": summary["frames_lost"],
        "daemon": {
            k: record.daemon_stats.get(k) for k in ("received", "emitted", "lost", "rejected", "dropped")
        },
        "tier": summary["beside_the_baseline"],
        "models": record.model_spans(),  # more than one: the daemon swapped models live
        "notes": videos.notes,
    }


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _plt().close(fig)
    return buffer.getvalue()


def _panel(ax, image: np.ndarray, title: str, mask) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if mask is not None and title == "stimulus":
        ax.contour(mask.astype(np.float32), levels=[0.5], colors="red", linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])


def _not_in_store(ax):
    """The label over a teacher panel of a clip its store lacks (the panel is gray there)."""
    return ax.text(
        0.5, 0.5, NOT_IN_STORE, transform=ax.transAxes, ha="center", va="center", fontsize=5, color="red"
    )


def clip_time(record: RunRecord, i: int) -> str:
    if record.clip[i] < 0:
        return "between clips"
    return f"clip {record.trials[record.clip[i]]}, t = {record.frame[i] / FRAME_RATE_HZ:.2f} s"


def strip_png(record: RunRecord, videos: Videos, columns: int = 8) -> bytes:
    """Rows of the movie at `columns` moments evenly over the run, each titled with its time."""
    plt = _plt()
    located = np.flatnonzero(record.located())
    picks = located[np.linspace(0, len(located) - 1, min(columns, len(located))).astype(int)]
    fig, axes = plt.subplots(
        len(videos.rows), len(picks), figsize=(1.6 * len(picks), 1.1 * len(videos.rows) + 0.4), squeeze=False
    )
    for row, (name, video) in enumerate(videos.rows.items()):
        for col, i in enumerate(picks):
            _panel(axes[row, col], video[i], name, record.mask)
            if not videos.has(name, record.clip[i]):
                _not_in_store(axes[row, col])
            if row == 0:
                axes[row, col].set_title(clip_time(record, i).replace(", ", "\n"), fontsize=6)
        axes[row, 0].set_ylabel(name.replace(", ", "\n"), fontsize=7)
    mask = "evaluation mask outlined in red" if record.mask is not None else "no evaluation mask: all pixels"
    fig.suptitle("; ".join([mask, *videos.notes]), fontsize=7, y=0.01, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _png(fig)


def movie_gif(record: RunRecord, videos: Videos, path: Path) -> Path:
    """The rows side by side, titled, with the time, as a GIF under GIF_LIMIT_BYTES (fewer frames
    until it fits), playing at the rig's pace."""
    from PIL import Image

    plt = _plt()
    located = np.flatnonzero(record.located())
    stride = max(1, -(-len(located) // GIF_FRAMES))
    palette = Image.new("P", (1, 1))
    grays = np.linspace(0, 255, GIF_GRAYS).astype(np.uint8)
    palette.putpalette([*np.repeat(grays, 3).tolist(), 255, 0, 0])
    fig, axes = plt.subplots(1, len(videos.rows), figsize=(1.45 * len(videos.rows), 1.25), squeeze=False)
    artists, labels = [], []
    for ax, (name, video) in zip(axes[0], videos.rows.items(), strict=True):
        _panel(ax, video[located[0]], name, record.mask)
        ax.set_title(name, fontsize=6)
        artists.append(ax.images[0])
        labels.append(_not_in_store(ax))
    caption = fig.text(0.5, 0.02, "", ha="center", fontsize=6)
    note = f"   ({'; '.join(videos.notes)})" if videos.notes else ""
    fig.subplots_adjust(left=0.01, right=0.99, top=0.85, bottom=0.14, wspace=0.04)
    while True:
        frames = []
        for i in located[::stride]:
            for artist, label, (name, video) in zip(artists, labels, videos.rows.items(), strict=True):
                artist.set_data(video[i])
                label.set_visible(not videos.has(name, record.clip[i]))
            caption.set_text(clip_time(record, i) + note)
            fig.canvas.draw()
            rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
            frames.append(rgb.quantize(palette=palette, dither=Image.Dither.NONE))
        duration_ms = round(1000 * stride / FRAME_RATE_HZ)
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
        if path.stat().st_size < GIF_LIMIT_BYTES or len(frames) <= 10:
            break
        stride *= 2
    plt.close(fig)
    return path


def correlation_png(figures: dict) -> bytes:
    plt = _plt()
    clips = [c for c in figures["clips"] if "student, live" in c]
    names = [k for k in figures["mean_over_clips"] if not k.startswith("shuffled")]
    fig, ax = plt.subplots(figsize=(max(3.5, 1.2 * len(clips) + 1.5) + 2.5, 2.6))
    width = 0.8 / (len(names) + 1)
    x = np.arange(len(clips))
    for k, name in enumerate(names):
        ax.bar(x + k * width, [c.get(name, np.nan) for c in clips], width, label=name)
        for at in x[[name not in c for c in clips]]:
            ax.text(at + k * width, 0, "not scored", rotation=90, fontsize=5, ha="center", va="bottom")
    k = len(names)
    ax.bar(
        x + k * width,
        [c["shuffled control, mean"] for c in clips],
        width,
        color="lightgray",
        label="student vs time-shifted truth (mean; bar: p95)",
    )
    ax.errorbar(
        x + k * width,
        [c["shuffled control, mean"] for c in clips],
        yerr=[
            np.zeros(len(clips)),
            [c["shuffled control, p95"] - c["shuffled control, mean"] for c in clips],
        ],
        fmt="none",
        ecolor="black",
        capsize=2,
    )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(x + width * len(names) / 2, [f"clip {c['trial']}" for c in clips], fontsize=7)
    ax.set_ylabel("masked correlation", fontsize=8)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return _png(fig)


def timing_png(record: RunRecord, timing_figures: dict) -> bytes:
    """Latency histogram and over time (where it means something); inter-arrival intervals."""
    plt = _plt()
    with_latency = timing_figures["latency_ms"] is not None
    fig, axes = plt.subplots(
        1, 3 if with_latency else 1, figsize=(9 if with_latency else 3.5, 2.4), squeeze=False
    )
    axes = axes[0]
    if with_latency:
        latency = record.latency_s * 1e3
        axes[0].hist(latency, bins=40, color="tab:blue")
        axes[0].set_xlabel("latency, ms (shown minus rig time)", fontsize=7)
        axes[0].set_ylabel("frames", fontsize=7)
        axes[1].plot(record.arrival_s, latency, ".", markersize=1.5)
        axes[1].set_xlabel("time in the run, s", fontsize=7)
        axes[1].set_ylabel("latency, ms", fontsize=7)
    intervals = np.diff(record.arrival_s) * 1e3
    axes[-1].hist(intervals, bins=40, color="tab:green")
    axes[-1].axvline(1e3 / FRAME_RATE_HZ, color="black", linewidth=0.6)
    axes[-1].set_xlabel("output cadence: interval between frames, ms", fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _png(fig)


def _ms(p: dict | None, note: str = "n/a") -> str:
    return note if not p else f"p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms"


def teacher_rows(figures: dict) -> list[tuple[str, str, str]]:
    """The teacher over the clips its store holds, and where it lacks some, every decoder on those."""
    same = figures["teacher_clips"]
    if same is None:
        notes = [n for n in figures["notes"] if n.startswith("teacher")]
        return [("masked correlation, teacher", "; ".join(notes) or TEACHER_NOT_RUN, "")]
    clips = ", ".join(same["trials"])
    rows = [
        (
            f"masked correlation, teacher (on clip(s) {clips}: those its store holds)",
            f"{same['teacher']:.3f}",
            "the teacher store given, scored on the same frames",
        )
    ]
    if len(same["trials"]) < len([c for c in figures["clips"] if "student, live" in c]):
        rows.append(
            (
                f"on the teacher's clip(s) {clips}: student / baseline / teacher",
                " / ".join(f"{same[k]:.3f}" for k in ("student, live", BASELINE_ROW, "teacher")),
                "run.npz frames of those clips, scored alike (the rows above are over every clip)",
            )
        )
    return rows


def cost_rows(cost: dict) -> list[tuple[str, str, str]]:
    """Student against teacher compute per clip, each with where it was measured."""
    student, teacher = cost["student_s_per_clip"], cost["teacher_s_per_clip"]
    ratio = cost["teacher_over_student"]
    rows = [
        (
            "compute per clip, student (daemon receive to publish p50 x the clip's frames in the dataset)",
            "n/a: summary.json holds no daemon latency"
            if student is None
            else f"{student:.3f} s per clip ({cost['student_ms_per_frame']:.2f} ms per frame x "
            f"{cost['frames_per_clip']:.0f} frames)",
            f"summary.json daemon_latency_ms over the run ({cost['student_backend']}, this run's machine; "
            "the model step plus assembling and publishing: an upper bound on the step alone)",
        )
    ]
    if teacher is None:
        return [*rows, ("compute per clip, teacher", cost["teacher_note"], "")]
    return [
        *rows,
        (
            "compute per clip, teacher (wall time of its reconstruction)",
            f"{teacher:.1f} s per clip, mean over clip(s) {', '.join(cost['teacher_timed_clips'])}",
            "the teacher store's per-clip metric `seconds` (as `stream-decoder reconstruct` timed it, "
            "on the machine that ran it)",
        ),
        (
            "teacher / student compute per clip",
            "n/a" if ratio is None else f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x",
            "the two rows above, on the same clips' frames (their machines may differ)",
        ),
    ]


def swap_rows(spans: list[dict]) -> list[tuple[str, str, str]]:
    """A row naming the models that made the frames, where a live swap made it more than one."""
    if len(spans) < 2:
        return []
    made = "; ".join(f"{s['model']} from frame {s['first_frame']} ({s['frames']} frames)" for s in spans)
    return [("models swapped live", made, "run.npz, each frame's model id")]


def table_rows(figures: dict) -> list[tuple[str, str, str]]:
    """(figure, value, where it comes from) for the figures table."""
    mean, t, tier = figures["mean_over_clips"], figures["timing"], figures["tier"]
    mask = "all pixels" if figures["mask_pixels"] is None else f"{figures['mask_pixels']} mask pixels"
    n = len(figures["clips"])
    rows = [
        (
            "masked correlation, student (live)",
            f"{mean['student, live']:.3f}",
            f"run.npz, {n} clip(s), {mask}",
        ),
        (
            "masked correlation, baseline (offline, same frames)",
            f"{mean[BASELINE_ROW]:.3f}",
            f"run.npz clips decoded with the baseline artifact ({figures['baseline']})",
        ),
        ("student / baseline", f"{figures['student_over_baseline']:.2f}", "the two rows above"),
        (
            "shuffled control: student vs truth shifted >= 2 s",
            f"mean {mean['shuffled control, mean']:.3f}, p95 {mean['shuffled control, p95']:.3f}",
            "run.npz",
        ),
        *teacher_rows(figures),
        (
            f"student / baseline over the whole tier {tier['tier']} ({tier['clips']} clips)",
            f"{tier['student']:.3f} / {tier['baseline']:.3f} = {tier['student_over_baseline']:.2f}",
            "summary.json (as `stream-decoder evaluate` scores them)",
        ),
        ("latency, rig time to shown", _ms(t["latency_ms"], t["latency_note"]), "run.npz"),
        ("latency in the daemon, receive to publish", _ms(t["daemon_latency_ms"]), "summary.json"),
        *swap_rows(figures["models"]),
    ]
    floor = figures["zmq_floor"]
    if floor:
        rows.append(
            (
                f"bare-ZeroMQ floor (no model, {floor['transport']}, that file's machine)",
                _ms(floor["latency_ms"]),
                f"{floor['file']}, {floor['date']}",
            )
        )
    rows += cost_rows(figures["cost"])
    rows += [
        (
            "output cadence: interval between frames",
            f"{_ms(t['interval_ms'])}, std {t['interval_jitter_ms']:.2f} ms" if t["interval_ms"] else "n/a",
            "run.npz",
        ),
        ("frames received", str(figures["frames_received"]), "run.npz"),
        ("frames lost", str(figures["frames_lost"]), "summary.json (daemon to display, and rig gaps)"),
        ("daemon counts", ", ".join(f"{k} {v}" for k, v in figures["daemon"].items()), "run.npz"),
    ]
    return rows


def _img(data: bytes, kind: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{base64.b64encode(data).decode()}">'


def render(
    summary: dict, figures: dict, movie: bytes, strip: bytes, correlation: bytes, timing_: bytes
) -> str:
    table = "\n".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in table_rows(figures)
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in figures["notes"])
    title = f"stream-decoder run: model {summary['model']} on {summary['mouse']}"
    clips = html.escape(f"Clips {', '.join(summary['trials'])} of tier {summary['demo']['tier']}")
    machine_readable = json.dumps(figures).replace("</", "<\\/")  # cannot end the script element
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{clips}, streamed through the daemon (replay, daemon and display in one process). The student row
is what the daemon sent, live; the baseline ({html.escape(figures["baseline"])}) decoded the same clips
offline, frame by frame; the evaluation mask (where the recorded neurons see) is outlined in red on
the stimulus.</p>
<h2>Movie</h2>{_img(movie, "gif", "movie")}
<h2>Strip</h2>{_img(strip, "png", "strip")}
<h2>Masked correlation per clip</h2>{_img(correlation, "png", "correlation per clip")}
<p>Frames {SKIP} onwards of each clip, up to the last the baseline decoded. The control correlates the
student's frames with the truth shifted in time by at least {MIN_SHIFT_S:g} s: what chance gives.</p>
<h2>Latency and output cadence</h2>{_img(timing_, "png", "latency and cadence")}
<h2>Figures</h2><table><tr><th>figure</th><th>value</th><th>from</th></tr>
{table}</table>
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
<script type="application/json" id="figures">{machine_readable}</script>
</body></html>
"""


def write_report(run_dir: Path, data: Path | None = None, teacher: Path | None = None) -> Path:
    """RUN_DIR/report.html (and report.gif, report_strip.png beside it) of a demo run's folder;
    `data`: the dataset root (default: the one the run used); `teacher`: a teacher store."""
    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    record = RunRecord.load(run_dir)
    if not record.located().any():
        raise ValueError(f"{run_dir}: no frame of the run belongs to a clip; nothing to report")
    root = data or summary.get("data")
    if root is None:
        raise ValueError(f"{run_dir}: the run does not name its dataset; pass --data")
    mouse = open_mouse(root, summary["mouse"])
    videos = offline_videos(record, summary, mouse, teacher)
    figures = report_figures(record, summary, videos, [mouse.length(t) for t in record.trials])
    if not any("student, live" in c for c in figures["clips"]):
        raise ValueError(f"{run_dir}: no clip has frames from {SKIP} on to score; play longer clips")
    movie = movie_gif(record, videos, run_dir / MOVIE_FILE).read_bytes()
    strip = strip_png(record, videos)
    (run_dir / STRIP_FILE).write_bytes(strip)
    page = render(
        summary, figures, movie, strip, correlation_png(figures), timing_png(record, figures["timing"])
    )
    path = run_dir / REPORT_FILE
    path.write_text(page)
    return path
