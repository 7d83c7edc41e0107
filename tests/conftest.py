"""Shared fixtures: one tiny synthetic dataset per test session, and what is built from it."""

import time

import numpy as np
import pytest

from stream_decoder.decoder.config import RidgeConfig


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The cache (ONNX Runtime's optimised graphs, default outputs) in a temporary folder for the
    session, and in every process a test starts: a test run never writes into the checkout's .cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAM_DECODER_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A `tiny` synthetic dataset root (one mouse, a few hundred neurons), generated once."""
    from stream_decoder.data import simulate

    root = tmp_path_factory.mktemp("tiny")
    simulate("tiny", seed=0, out=root)
    return root


@pytest.fixture(scope="session")
def tiny_mouse(tiny_root):
    from stream_decoder.data import open_mouse

    return open_mouse(tiny_root)


@pytest.fixture(scope="session")
def untrained_artifact(tmp_path_factory, tiny_mouse):
    """A student artifact for the tiny mouse with random weights: enough to test serving, not quality."""
    import torch

    from stream_decoder.decoder.artifact import save_artifact
    from stream_decoder.decoder.student import Student, StudentConfig

    torch.manual_seed(0)
    student = Student(StudentConfig(n_neurons=tiny_mouse.n_neurons, latent=32, lookahead=2))
    folder = tmp_path_factory.mktemp("untrained-artifact")
    return save_artifact(
        folder, student, tiny_mouse.unit_ids, tiny_mouse.fingerprint(), neuron_set=tiny_mouse.neuron_set()
    ).path


@pytest.fixture(scope="session")
def rf_coverage(tiny_mouse) -> np.ndarray:
    """(36, 64) the tiny mouse's pixels within 6 px of some simulated receptive-field centre."""
    from stream_decoder.data import load_truth

    neurons = load_truth(tiny_mouse.path).neurons
    yy, xx = np.mgrid[0:36, 0:64]
    distance = np.min(np.hypot(yy[..., None] - neurons["rf_row"], xx[..., None] - neurons["rf_col"]), axis=-1)
    return distance < 6


TINY_RIDGE = RidgeConfig(components=48, lags=4, lag_step=2, lookahead=4, validation_clips=4)


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, tiny_root):
    """The tiny mouse's linear baseline artifact (ridge on the true stimuli), exported to ONNX: a
    decoder whose frames mean something, fitted in seconds."""
    from stream_decoder.decoder.baseline import fit_baseline
    from stream_decoder.runtime.export import export_artifact

    out = tmp_path_factory.mktemp("baseline")
    artifact = fit_baseline(tiny_root, out, TINY_RIDGE, progress=False)
    export_artifact(out)
    return artifact


@pytest.fixture
def stream_endpoints():
    """Private ipc endpoints for one daemon, as a dict of role -> endpoint."""
    from stream_decoder.display.loopback import private_endpoints

    with private_endpoints() as endpoints:
        yield {role: getattr(endpoints, role) for role in ("activity", "recon", "control")}


@pytest.fixture
def start_daemon(untrained_artifact, stream_endpoints):
    """Factory: `start_daemon(stream=StreamConfig(...), ...)` -> a Loopback on private endpoints.

    `curve`: the CurveKeys its rig, display and control client use.
    """
    from stream_decoder.display.loopback import Loopback
    from stream_decoder.runtime import open_backend
    from stream_decoder.stream.config import DaemonConfig, EndpointsConfig, LogConfig, ModelConfig

    running = []

    def start(backend=None, curve=None, **sections) -> Loopback:
        sections.setdefault("endpoints", EndpointsConfig(**stream_endpoints))
        sections.setdefault("log", LogConfig(interval_s=60.0))
        cfg = DaemonConfig(model=ModelConfig(untrained_artifact, "torch"), **sections)
        daemon = Loopback(cfg, backend or open_backend(untrained_artifact, "torch"), curve)
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        daemon.stop()


HANG_GUARD_S = 30.0  # waits for what must happen anyway: only a hang (or a 100x slower machine) hits it


def until(done, what: str = "the condition"):
    """`done()`'s first true result: waits for what must happen anyway, whatever the machine's speed."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not (result := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come within the {HANG_GUARD_S} s hang guard")
        time.sleep(0.01)
    return result


class SteppedDaemon:
    """A daemon without a thread, on a fake clock: the test sends, then steps the loop itself.

    `now` is the daemon's clock (monotonic seconds); it moves only when the test sets it, so the
    prefetch forecast, log rate limits, recorder flushes and reports are decided by the test.
    Socket waits in `deliver` and `attach` are hang guards, never a condition of passing.
    """

    def __init__(self, cfg, backend):
        from stream_decoder.rig.replay import Rig
        from stream_decoder.stream.client import ReconClient
        from stream_decoder.stream.daemon import Daemon

        self.now = 1000.0
        self.daemon = Daemon(cfg, backend, clock=lambda: self.now)
        self.rig = Rig(cfg.endpoints.activity, bind=not cfg.endpoints.activity_bind, session="warmup")
        self.display = ReconClient(cfg.endpoints.recon, timeout_s=HANG_GUARD_S)
        if not self.rig.wait_for_subscriber(HANG_GUARD_S):
            raise RuntimeError("the daemon did not subscribe to the rig")

    def deliver(self, count: int = 1) -> None:
        """Step the loop until it has read `count` more activity messages (sent before the call)."""
        target = self.daemon.stats.received + count
        deadline = time.monotonic() + HANG_GUARD_S
        while self.daemon.stats.received < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"{target - self.daemon.stats.received} sent messages never arrived")
            self.daemon.run_once(self.daemon.poll(timeout_ms=50))

    def attach(self, client) -> None:
        """Warm-up messages until `client` gets a frame, then read up to the last one's frame."""
        for _ in range(100):
            self.rig.send(np.zeros(self.daemon.n_neurons, np.float32), 0.0)
            self.deliver()
            if (item := client.receive(timeout_s=0.05)) is not None:
                break
        else:
            raise RuntimeError("no frame reached the client")
        while item[1].seq_newest != self.rig.seq - 1:
            item = client.receive(timeout_s=HANG_GUARD_S)
            assert item is not None, "a warm-up frame never reached the client"

    def close(self) -> None:
        self.display.close()
        self.rig.close(linger_ms=0)
        self.daemon.close()


@pytest.fixture
def step_daemon(untrained_artifact, stream_endpoints):
    """Factory: `step_daemon(stream=StreamConfig(...), ...)` -> a SteppedDaemon on private endpoints."""
    from stream_decoder.runtime import open_backend
    from stream_decoder.stream.config import DaemonConfig, EndpointsConfig, LogConfig, ModelConfig

    made = []

    def make(backend=None, **sections) -> SteppedDaemon:
        sections.setdefault("endpoints", EndpointsConfig(**stream_endpoints))
        sections.setdefault("log", LogConfig(interval_s=60.0))
        cfg = DaemonConfig(model=ModelConfig(untrained_artifact, "torch"), **sections)
        made.append(SteppedDaemon(cfg, backend or open_backend(untrained_artifact, "torch")))
        return made[-1]

    yield make
    for stepped in made:
        stepped.close()


@pytest.fixture(scope="session")
def tiny_encoders(tiny_root, tmp_path_factory):
    """Two cpu-preset encoders trained briefly on `tiny_root` through the CLI: their member directories."""
    from stream_decoder.cli import main
    from stream_decoder.encoder import member_dirs

    out = tmp_path_factory.mktemp("encoders")
    argv = ["train-encoder", "--data", str(tiny_root), "--members", "2", "--epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    return member_dirs(out)


@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread, as the rig service runs it: tiny per-tick ops lose more to
    thread hand-offs than they gain, badly so on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stepped_frames(model, activity, behavior, pupil):
    """A (1, T, ...) clip decoded tick by tick through the serving graph, state carried: (T, H, W),
    to compare with `model(activity, behavior, pupil)[0]`."""
    import torch

    from stream_decoder.decoder.streaming import StepGraph

    behavior4 = torch.cat([behavior, pupil], -1)
    with torch.no_grad():
        graph, state, steps = StepGraph(model), model.initial_state(1), []
        for t in range(activity.shape[1]):
            frame, *state = graph(activity[:, t], behavior4[:, t], *state)
            steps.append(frame[0])
    return torch.stack(steps)
