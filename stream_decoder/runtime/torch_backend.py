"""Student's step graph run by PyTorch eagerly: the reference the other backends are checked against."""

import numpy as np
import torch

from stream_decoder.data import BEHAVIOR_CHANNELS
from stream_decoder.decoder.artifact import Artifact
from stream_decoder.decoder.streaming import StepGraph
from stream_decoder.errors import UserError
from stream_decoder.runtime.backend import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, artifact: Artifact, device: str = "cpu"):
        super().__init__(artifact, device=device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(
                f"torch backend: device {device!r} asked for, but this torch build "
                f"({torch.__version__}) sees no CUDA GPU"
            )
        self.device = torch.device(device)
        self.graph = StepGraph(artifact.model()).to(self.device)
        # prefetch's inputs: zeros and a fresh state, made once (the graph never writes its inputs)
        self._scratch = (
            torch.zeros(1, self.n_neurons, device=self.device),
            torch.zeros(1, BEHAVIOR_CHANNELS, device=self.device),
            *self.graph.decoder.initial_state(1),
        )
        self.reset()

    def reset(self) -> None:
        self.state = self.graph.decoder.initial_state(1)

    @torch.inference_mode()
    def prefetch(self) -> None:
        self.graph(*self._scratch)

    @torch.inference_mode()
    def _step(self, activity: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        activity = torch.as_tensor(activity, dtype=torch.float32, device=self.device)[None]
        behavior = torch.as_tensor(behavior, dtype=torch.float32, device=self.device)[None]
        frame, *self.state = self.graph(activity, behavior, *self.state)
        return frame[0].cpu().numpy()
