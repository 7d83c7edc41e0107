"""The front end on the simulator's microscope: its ROIs (the soma footprints, what a lab's offline
segmentation gives), and a synthetic mouse's training trials as the front end extracts them from
the raw frames: the decoder's training inputs in the representation the daemon serves with raw
frames in.

A lab runs its extraction offline for training and online for serving; this is that offline half
for the simulator's mouse. Each training trial is imaged (`simulate.raw_trial`, the same calcium and
scan phase as its recorded responses), run through the front end plane by plane (`process_stack`,
the numbers `step` gives online; the state carries on from trial to trial as on the rig), and its
events are put on the 30 Hz grid as the dataset's were (linear interpolation from the sample
times). The other tiers keep their recorded responses. The result is a Sensorium mouse folder of
the same neurons, so `baseline` and `distill` train on it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from stream_decoder.data import CLIP_FRAMES, FRAME_RATE_HZ, open_mouse
from stream_decoder.data.imaging import interpolate
from stream_decoder.data.microscope import Microscope
from stream_decoder.data.simulate import raw_trial
from stream_decoder.data.truth import Truth
from stream_decoder.data.writer import MouseWriter

from .extraction import ExtractionConfig
from .motion import MotionConfig
from .pipeline import FrontEnd, FrontEndConfig
from .rois import RoiSet


def simulator_rois(microscope: Microscope) -> RoiSet:
    fp = microscope.footprints
    return RoiSet.from_matrix(fp.matrix, fp.plane, fp.frame_shape)


def simulator_front_end(microscope: Microscope, motion: MotionConfig | None = None) -> FrontEnd:
    """The front end for the microscope's frames: its ROIs, its references, its dark level."""
    cfg = FrontEndConfig(motion or MotionConfig(), ExtractionConfig(dark_level=microscope.cfg.offset_adu))
    references = [microscope.reference_image(p) for p in range(microscope.timing.n_planes)]
    return FrontEnd(simulator_rois(microscope), 1 / microscope.timing.volume_rate_hz, cfg, references)


def extracted_responses(fe: FrontEnd, microscope: Microscope, truth: Truth, trial: str, n_frames: int):
    """(n_frames, N) the front end's activity of one trial on the 30 Hz grid."""
    frames = list(raw_trial(microscope, truth, trial))
    grid = np.arange(n_frames) / FRAME_RATE_HZ
    responses = np.zeros((n_frames, microscope.mouse.n_neurons), np.float32)
    for plane, front in enumerate(fe.planes):
        mine = [f for f in frames if f.plane == plane]
        events = fe.process_stack(plane, np.stack([f.image for f in mine]))
        times = np.array([f.t for f in mine])
        responses[:, front.neurons] = interpolate(events, times, grid)
    return responses


def write_extracted_dataset(
    fe: FrontEnd,
    microscope: Microscope,
    truth: Truth,
    mouse_path: Path,
    out: Path,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """`out`/<mouse name>: the mouse with its training trials' responses (the first `limit`; all by
    default) extracted by `fe` from the raw frames. Returns the mouse folder."""
    mouse = open_mouse(mouse_path)
    train = mouse.trials("train")[:limit]
    folder = Path(out) / mouse.name
    writer = MouseWriter(folder, mouse.n_neurons, CLIP_FRAMES, overwrite=overwrite)
    for trial in tqdm(mouse.trial_ids, desc="extract", unit="trial", disable=not progress):
        clip = mouse.clip(trial)
        extract = trial in train
        responses = (
            extracted_responses(fe, microscope, truth, trial, len(clip.video)) if extract else clip.responses
        )
        writer.write_trial(
            int(trial),
            clip.video,
            responses,
            clip.behavior,
            clip.pupil_center,
            in_statistics=extract,
        )
    return writer.finish(mouse.tiers.tolist(), mouse.unit_ids, mouse.cell_motor_coordinates)
