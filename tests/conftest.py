"""Shared fixtures: one tiny synthetic dataset per test session, and what is built from it."""

import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A `tiny` synthetic dataset root (one mouse, a few hundred neurons), generated once."""
    from stream_decoder.data import simulate

    root = tmp_path_factory.mktemp("tiny")
    simulate("tiny", seed=0, out=root)
    return root


@pytest.fixture(scope="session")
def tiny_mouse(tiny_root):
    from stream_decoder.data import MouseDataset, find_mice

    return MouseDataset(find_mice(tiny_root)[0])


@pytest.fixture(scope="session")
def untrained_artifact(tmp_path_factory, tiny_mouse):
    """A student artifact for the tiny mouse with random weights: enough to test serving, not quality."""
    import torch

    from stream_decoder.decoder.artifact import save_artifact
    from stream_decoder.decoder.student import Student, StudentConfig

    torch.manual_seed(0)
    student = Student(StudentConfig(n_neurons=tiny_mouse.n_neurons, latent=32, lookahead=2))
    folder = tmp_path_factory.mktemp("untrained-artifact")
    return save_artifact(folder, student, tiny_mouse.unit_ids, tiny_mouse.fingerprint()).path


@pytest.fixture
def stream_endpoints():
    """Private ipc endpoints for one daemon, as a dict of role -> endpoint."""
    from stream_decoder.stream.loopback import private_endpoints

    with private_endpoints() as endpoints:
        yield {role: getattr(endpoints, role) for role in ("activity", "recon", "control")}


@pytest.fixture
def start_daemon(untrained_artifact, stream_endpoints):
    """Factory: `start_daemon(stream=StreamConfig(...), ...)` -> a Loopback on private endpoints.

    `curve`: the CurveKeys its rig, display and control client use.
    """
    from stream_decoder.runtime import open_backend
    from stream_decoder.stream.config import DaemonConfig, EndpointsConfig, LogConfig, ModelConfig
    from stream_decoder.stream.loopback import Loopback

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
