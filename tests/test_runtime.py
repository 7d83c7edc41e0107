"""Artifacts and backends: what is saved is what is served, on every backend, or it is refused."""

import importlib.util
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from stream_decoder.cli import main
from stream_decoder.decoder import artifact as artifact_module
from stream_decoder.decoder.artifact import load_artifact, save_artifact
from stream_decoder.decoder.student import Student, StudentConfig
from stream_decoder.display.demo import DEMO_ARTIFACT
from stream_decoder.paths import cache_dir, local_path, portable_path
from stream_decoder.provenance import source_version
from stream_decoder.runtime import KINDS, open_backend
from stream_decoder.runtime import export as export_module
from stream_decoder.runtime.backend import OPTIONS as BACKEND_OPTIONS
from stream_decoder.runtime.export import (
    FP16_FRAME_TOLERANCE,
    FRAME_TOLERANCE,
    INT8_FRAME_TOLERANCE,
    OPSET,
    check_onnx,
    check_tensorrt_ops,
    export_artifact,
    export_onnx,
    max_frame_difference,
    stream_inputs,
)

N = 48
REPO = Path(__file__).resolve().parents[1]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def build_student(seed: int = 0, **overrides) -> Student:
    torch.manual_seed(seed)
    cfg = StudentConfig(
        **{"n_neurons": N, "latent": 16, "kernel": 3, "dilations": (1, 2), "lookahead": 2, **overrides}
    )
    student = Student(cfg).eval()
    student.set_normalisation(torch.rand(N) * 3, torch.rand(N) + 0.5, torch.randn(4), torch.rand(4) + 0.5)
    return student


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An artifact with model.onnx, written once through the CLI."""
    folder = tmp_path_factory.mktemp("artifact")
    save_artifact(folder, build_student(), unit_ids=np.arange(100, 100 + N), data_fingerprint="fp-test")
    assert main(["export", str(folder), "--steps", "16"]) == 0
    return folder


@pytest.fixture
def artifact_copy(exported, tmp_path):
    """A private copy to tamper with."""
    return shutil.copytree(exported, tmp_path / "copy")


def ticks(steps: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    return rng.random((steps, N), dtype=np.float32) * 6, rng.standard_normal((steps, 4)).astype(np.float32)


def test_artifact_roundtrip(exported):
    artifact = load_artifact(exported)
    meta = json.loads((exported / "meta.json").read_text())
    assert meta["model_id"] == artifact.model_id and len(artifact.model_id) == 12
    assert artifact.meta.unit_ids == list(range(100, 100 + N))
    assert artifact.meta.lookahead == 2 and artifact.meta.data_fingerprint == "fp-test"
    assert artifact.config == build_student().cfg
    torch.testing.assert_close(artifact.model().state_dict(), build_student().state_dict())


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_streamed_frames_equal_the_offline_clip(exported, kind):
    """The daemon's path (raw ticks through a backend) gives the frames `forward` gives the clip."""
    activity, behavior = ticks(20)
    backend = open_backend(exported, kind)
    backend.warmup()
    streamed = np.stack([backend.step(a, b) for a, b in zip(activity, behavior, strict=True)])
    with torch.no_grad():
        offline = (
            load_artifact(exported)
            .model()(
                torch.from_numpy(activity)[None],
                torch.from_numpy(behavior[:, :2])[None],
                torch.from_numpy(behavior[:, 2:])[None],
            )[0]
            .numpy()
        )
    assert streamed.shape == (20, 36, 64) and streamed.dtype == np.float32
    np.testing.assert_allclose(streamed, offline, atol=1e-2)


def test_backends_agree_over_a_stream(exported):
    artifact = load_artifact(exported)
    activity, behavior = stream_inputs(artifact, 40, seed=7)
    torch_backend = open_backend(exported, "torch")
    assert (
        max_frame_difference(torch_backend, open_backend(exported, "onnxruntime"), activity, behavior)
        <= FRAME_TOLERANCE
    )


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT and a CUDA GPU are not both available here")
def test_tensorrt_agrees_with_torch(artifact_copy):
    report = export_artifact(artifact_copy, tensorrt=True, steps=40)
    assert report.engine_path.is_file()
    assert report.max_abs_diff["tensorrt"] <= FRAME_TOLERANCE
    backend = open_backend(artifact_copy, "tensorrt")
    activity, behavior = ticks(10)
    first = [backend.step(a, b) for a, b in zip(activity, behavior, strict=True)]
    backend.reset()
    np.testing.assert_array_equal(first[0], backend.step(activity[0], behavior[0]))


def test_float16_graph_for_tensorrt_tracks_torch(artifact_copy):
    """The graph a --fp16 engine is built from: checked like model.onnx, run here by ONNX Runtime."""
    artifact = load_artifact(artifact_copy)
    path = export_onnx(artifact, fp16=True)
    assert check_onnx(path)["Cast"] > 0
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = open_backend(artifact_copy, "torch")
    state = [np.zeros(shape, np.float32) for shape in artifact.config.state_shapes(1)]
    activity, behavior = stream_inputs(artifact, 16)
    for a, b in zip(activity, behavior, strict=True):
        frame, *state = session.run(
            None, {"activity": a[None], "behavior": b[None], **{f"state{i}": s for i, s in enumerate(state)}}
        )
        np.testing.assert_allclose(frame[0], reference.step(a, b), atol=FP16_FRAME_TOLERANCE)


@pytest.fixture(scope="module")
def exported_int8(exported, tmp_path_factory):
    """A copy of `exported` with model.int8.onnx too, written through the CLI."""
    folder = shutil.copytree(exported, tmp_path_factory.mktemp("int8") / "artifact")
    assert main(["export", str(folder), "--int8-read-in", "--steps", "16"]) == 0
    return folder


def test_int8_read_in_tracks_torch_over_a_stream_and_is_not_the_float_graph(exported_int8):
    """Within INT8_FRAME_TOLERANCE of torch with the state carried, yet further from the float32
    graph than float reordering explains: the backend runs model.int8.onnx, not model.onnx."""
    activity, behavior = stream_inputs(load_artifact(exported_int8), 40, seed=7)
    int8 = open_backend(exported_int8, "onnxruntime", int8_read_in=True)
    assert int8.onnx_file == exported_int8 / "model.int8.onnx"
    assert int8.info["backend_options"] == {"threads": 1, "int8_read_in": True}
    assert max_frame_difference(open_backend(exported_int8, "torch"), int8, activity, behavior) <= (
        INT8_FRAME_TOLERANCE
    )
    float32 = open_backend(exported_int8, "onnxruntime")
    assert FRAME_TOLERANCE < max_frame_difference(float32, int8, activity, behavior) <= INT8_FRAME_TOLERANCE
    cached = open_backend(exported_int8, "onnxruntime", int8_read_in=True)  # its optimised graph, cached
    assert cached.graph_file.parent == cache_dir() / "ort" and cached.graph_file != float32.graph_file
    assert max_frame_difference(int8, cached, activity, behavior) == 0.0


def int8_weights(path: Path) -> np.ndarray:
    model = onnx.load(str(path))
    int8 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    return onnx.numpy_helper.to_array(max(int8, key=lambda t: int(np.prod(t.dims))))  # not its zero points


def test_int8_export_falls_back_to_7_bit_weights_where_8_bit_saturates(artifact_copy, monkeypatch):
    """Where this CPU's int8 kernel strays past the tolerance with 8-bit weights (int16 saturation
    without VNNI), the export writes 7-bit ones and says so; the first check's result is injected,
    so the test does not depend on the CPU it runs on."""
    full = load_artifact(artifact_copy)
    assert np.abs(int8_weights(export_module.export_int8_read_in(full))).max() == 127
    assert np.abs(int8_weights(export_module.export_int8_read_in(full, reduce_range=True))).max() <= 64
    real, int8_checks = export_module.max_frame_difference, []

    def saturating_first(reference, candidate, *inputs):
        int8_checks.append(candidate.onnx_file.name == "model.int8.onnx")
        return (
            INT8_FRAME_TOLERANCE + 1
            if int8_checks.count(True) == 1 and int8_checks[-1]
            else real(reference, candidate, *inputs)
        )

    monkeypatch.setattr(export_module, "max_frame_difference", saturating_first)
    report = export_module.export_artifact(artifact_copy, steps=16, int8_read_in=True)
    assert report.int8_weight_bits == 7 and report.max_abs_diff["onnxruntime-int8"] <= INT8_FRAME_TOLERANCE
    assert np.abs(int8_weights(report.int8_path)).max() <= 64


def test_int8_graph_holds_int8_read_in_weights_and_a_float32_head(exported_int8):
    model = onnx.load(str(exported_int8 / "model.int8.onnx"))
    ops = check_onnx(exported_int8 / "model.int8.onnx", tensorrt=False)
    assert ops["MatMulInteger"] == ops["DynamicQuantizeLinear"] == 1
    read_in = N * 16  # N x latent
    sizes = [(t.data_type, int(np.prod(t.dims))) for t in model.graph.initializer]
    assert (onnx.TensorProto.INT8, read_in) in sizes and (onnx.TensorProto.FLOAT, read_in) not in sizes

    def float_weights(graph: onnx.ModelProto) -> int:
        return sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)

    # every other weight stays float32; the read-in gains one float scale per latent channel
    float_graph = onnx.load(str(exported_int8 / "model.onnx")).graph
    assert float_weights(model.graph) == float_weights(float_graph) - read_in + 16
    stamp = {p.key: p.value for p in model.metadata_props}["stream_decoder.model_id"]
    assert stamp == load_artifact(exported_int8).model_id
    with pytest.raises(ValueError, match="MatMulInteger"):  # CPU only: never offered to TensorRT
        check_onnx(exported_int8 / "model.int8.onnx")


def test_int8_read_in_needs_its_export_and_must_match_the_weights(artifact_copy, tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        open_backend(artifact_copy, "onnxruntime", int8_read_in=True)
    assert str(missing.value) == (
        f"{artifact_copy / 'model.int8.onnx'} is missing: run "
        f"`stream-decoder export {artifact_copy} --int8-read-in` first"
    )
    other = tmp_path / "other"
    save_artifact(other, build_student(seed=1), unit_ids=np.arange(N), data_fingerprint="x")
    export_artifact(other, steps=2, int8_read_in=True)
    shutil.copy(other / "model.int8.onnx", artifact_copy / "model.int8.onnx")
    with pytest.raises(ValueError, match=r"model.int8.onnx: exported from model .*--int8-read-in`$"):
        open_backend(artifact_copy, "onnxruntime", int8_read_in=True)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT and a GPU are present")
def test_tensorrt_without_it_is_a_clear_error(exported):
    with pytest.raises(RuntimeError, match=r"tensorrt backend needs .*(tensorrt|CUDA GPU)"):
        open_backend(exported, "tensorrt")
    with pytest.raises(RuntimeError, match="tensorrt backend needs"):
        export_artifact(exported, tensorrt=True)


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_reset_restores_the_initial_state(exported, kind):
    activity, behavior = ticks(12)
    backend = open_backend(exported, kind)
    first = [backend.step(a, b) for a, b in zip(activity, behavior, strict=True)]
    assert not np.allclose(first[0], first[-1])
    backend.reset()
    again = [backend.step(a, b) for a, b in zip(activity, behavior, strict=True)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_prefetch_leaves_the_stream_untouched(exported, kind):
    """The daemon prefetches between ticks: the frames must be those of a stream without it."""
    activity, behavior = ticks(12)
    backend = open_backend(exported, kind)
    plain = [backend.step(a, b) for a, b in zip(activity, behavior, strict=True)]
    backend.reset()
    prefetched = []
    for a, b in zip(activity, behavior, strict=True):
        backend.prefetch()
        prefetched.append(backend.step(a, b))
        backend.prefetch()
    np.testing.assert_array_equal(np.stack(plain), np.stack(prefetched))
    assert not np.allclose(plain[0], plain[-1])


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_wrong_input_shapes_are_clear_errors(exported, kind):
    backend = open_backend(exported, kind)
    with pytest.raises(ValueError, match=rf"activity has shape \({N - 1},\).*expects \({N},\)"):
        backend.step(np.zeros(N - 1, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="behavior has shape"):
        backend.step(np.zeros(N, np.float32), np.zeros(2, np.float32))
    float64 = backend.step(np.ones(N), np.zeros(4))
    backend.reset()
    np.testing.assert_array_equal(float64, backend.step(np.ones(N, np.float32), np.zeros(4, np.float32)))


def test_info_describes_the_model(exported):
    info = open_backend(exported, "onnxruntime").info
    assert info["backend"] == "onnxruntime" and info["neurons"] == N
    assert info["frame_shape"] == [36, 64] and info["lookahead"] == 2
    assert info["model"] == load_artifact(exported).model_id


def listing(folder) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_onnxruntime_caches_its_optimised_graph_outside_a_read_only_artifact(artifact_copy, tmp_path):
    """The optimised graph goes to <cache>/ort (an installed package may be read-only), is reused on
    the next open, and nothing is ever written into the artifact folder."""
    cache = cache_dir() / "ort"
    shutil.rmtree(cache, ignore_errors=True)
    before = listing(artifact_copy)
    artifact_copy.chmod(0o555)  # root ignores this: the listing below is what proves nothing was written
    try:
        first = open_backend(artifact_copy, "onnxruntime")
        (saved,) = cache.iterdir()
        assert first.graph_file == artifact_copy / "model.onnx"
        assert saved.name.startswith(load_artifact(artifact_copy).model_id)
        assert f"ort-{onnxruntime.__version__}" in saved.name
        stamp = saved.stat().st_ino, saved.stat().st_mtime_ns
        reused = open_backend(artifact_copy, "onnxruntime")
        assert reused.graph_file == saved and (saved.stat().st_ino, saved.stat().st_mtime_ns) == stamp
        assert listing(artifact_copy) == before
    finally:
        artifact_copy.chmod(0o755)
    activity, behavior = ticks(8)
    torch_backend = open_backend(artifact_copy, "torch")
    assert max_frame_difference(torch_backend, reused, activity, behavior) <= FRAME_TOLERANCE


def test_a_new_export_never_runs_an_optimised_graph_cached_from_the_old_one(artifact_copy):
    """Same weights, another model.onnx (a newer exporter, a fixed step graph): a cache entry of its
    own, which replaces the old one; other models' entries stay."""
    from stream_decoder.runtime.onnxruntime_backend import optimised_graph_path

    old = open_backend(artifact_copy, "onnxruntime")
    old_graph = optimised_graph_path(old.artifact, artifact_copy / "model.onnx")
    other = cache_dir() / "ort" / "0123456789ab.model.0123456789ab.ort-1.0.onnx"
    other.write_bytes(b"another model's graph")
    model = onnx.load(str(artifact_copy / "model.onnx"))
    model.doc_string += " (exported again)"
    onnx.save(model, str(artifact_copy / "model.onnx"))
    again = open_backend(artifact_copy, "onnxruntime")
    assert again.graph_file == artifact_copy / "model.onnx"  # optimised afresh, not the cached one
    new_graph = optimised_graph_path(again.artifact, artifact_copy / "model.onnx")
    assert new_graph.is_file() and not old_graph.exists() and other.is_file()
    assert open_backend(artifact_copy, "onnxruntime").graph_file == new_graph


def test_tests_cache_outside_the_checkout():
    """conftest points the cache at a temporary folder: a test run leaves the repository's .cache alone."""
    assert not cache_dir().resolve().is_relative_to(REPO)


def test_exported_graph_is_small_static_and_stamped(exported):
    model = onnx.load(str(exported / "model.onnx"))
    assert len(model.graph.initializer) > 0 and not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
    )
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }
    assert shapes["activity"] == [1, N] and shapes["frame"] == [1, 36, 64]
    assert shapes["state1"] == shapes["next_state1"] == [1, 4, 16]
    assert {p.key: p.value for p in model.metadata_props}["stream_decoder.model_id"] == load_artifact(
        exported
    ).model_id
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]


def test_tensorrt_op_check_refuses_an_unlisted_op():
    node = onnx.helper.make_node("Unique", ["x"], ["y"])  # TensorRT's ONNX parser has no Unique
    graph = onnx.helper.make_graph([node], "g", [], [])
    with pytest.raises(ValueError, match="Unique"):
        check_tensorrt_ops(onnx.helper.make_model(graph))


def test_tampered_weights_are_refused(artifact_copy):
    weights = torch.load(artifact_copy / "weights.pt", weights_only=True)
    weights["to_frame.bias"] += 1.0
    torch.save(weights, artifact_copy / "weights.pt")
    with pytest.raises(ValueError, match=r"weights.pt and .*config.json do not hash to the model id"):
        open_backend(artifact_copy, "torch")


def test_weights_of_another_shape_are_refused(artifact_copy):
    torch.save(build_student(latent=8).state_dict(), artifact_copy / "weights.pt")
    with pytest.raises(ValueError, match=r"weights.pt: weights do not fit the model in config.json"):
        load_artifact(artifact_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 99}, "format_version 99 is not supported"),
        ({"unit_ids": list(range(N - 1))}, f"{N - 1} unit ids for n_neurons = {N}"),
        ({"unit_ids": [0] * N}, "unit ids are not unique"),
        (
            {"n_neurons": N + 1, "unit_ids": list(range(N + 1))},
            f"config.json.*n_neurons = {N + 1} in meta but {N} in the config",
        ),
        ({"lookahead": 0}, "lookahead = 0 in meta but 2"),
    ],
)
def test_inconsistent_meta_is_refused(artifact_copy, change, message):
    meta = json.loads((artifact_copy / "meta.json").read_text())
    (artifact_copy / "meta.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(ValueError, match=rf"meta.json.*{message}"):
        load_artifact(artifact_copy)


@pytest.mark.parametrize("name", ["config.json", "weights.pt", "meta.json"])
def test_missing_files_are_named(artifact_copy, name):
    (artifact_copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_artifact(artifact_copy)


def test_onnx_needs_export_and_must_match_the_weights(artifact_copy, tmp_path):
    (artifact_copy / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="stream-decoder export"):
        open_backend(artifact_copy, "onnxruntime")
    other = tmp_path / "other"
    save_artifact(other, build_student(seed=1), unit_ids=np.arange(N), data_fingerprint="x")
    export_artifact(other, steps=2)
    shutil.copy(other / "model.onnx", artifact_copy / "model.onnx")
    with pytest.raises(ValueError, match=r"model.onnx: exported from model"):
        load_artifact(artifact_copy)


def test_unknown_backend_kind(exported):
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        open_backend(exported, "cuda")


def test_options_of_another_backend_are_a_clear_error(exported):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['fp16'\] for the onnxruntime backend; valid"):
        open_backend(exported, "onnxruntime", fp16=True)
    with pytest.raises(ValueError, match=r"threads must be int for the onnxruntime backend, got '2'"):
        open_backend(exported, "onnxruntime", threads="2")


@pytest.mark.parametrize("kind", KINDS)
def test_each_backends_options_are_its_keyword_arguments(kind):
    """The table the rig config is checked against is the backends' own signatures: they cannot drift."""
    module, cls = {
        "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeBackend"),
        "torch": ("torch_backend", "TorchBackend"),
        "tensorrt": ("tensorrt_backend", "TensorRTBackend"),
    }[kind]
    backend = getattr(importlib.import_module(f"stream_decoder.runtime.{module}"), cls)
    parameters = list(inspect.signature(backend.__init__).parameters.values())[2:]  # self, artifact
    assert {p.name: p.annotation for p in parameters} == BACKEND_OPTIONS[kind]


def test_an_interrupted_save_leaves_the_previous_artifact_whole(artifact_copy, monkeypatch):
    old_id = load_artifact(artifact_copy).model_id

    def crash(obj, f, *args, **kwargs):
        """Half the weights reach the disk, then the write fails."""
        if isinstance(f, str | Path):
            Path(f).write_bytes(b"half")
        else:
            f.write(b"half")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(artifact_module.torch, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        save_artifact(artifact_copy, build_student(seed=5), unit_ids=np.arange(N), data_fingerprint="new")
    monkeypatch.undo()
    assert load_artifact(artifact_copy).model_id == old_id
    assert sorted(p.name for p in artifact_copy.parent.iterdir()) == ["copy"]  # no temporary left behind


def test_saving_over_an_artifact_replaces_it_whole(artifact_copy):
    (artifact_copy / "model.fp16.onnx").write_bytes(b"from the old weights")
    saved = save_artifact(artifact_copy, build_student(seed=5), unit_ids=np.arange(N), data_fingerprint="new")
    assert load_artifact(artifact_copy).model_id == saved.model_id
    assert sorted(p.name for p in artifact_copy.iterdir()) == ["config.json", "meta.json", "weights.pt"]
    assert sorted(p.name for p in artifact_copy.parent.iterdir()) == ["copy"]


def test_save_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files that are not an artifact's \(notes.txt\)"):
        save_artifact(tmp_path, build_student(), unit_ids=np.arange(N), data_fingerprint="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_artifacts_record_the_source_they_were_built_from(exported):
    source = load_artifact(exported).meta.provenance["source"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    if head.returncode != 0:
        pytest.skip("not run from a git checkout")
    assert source == {"commit": head.stdout.strip(), "dirty": source["dirty"]}
    assert isinstance(source["dirty"], bool)


def test_source_version_is_none_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    assert source_version(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to run
    assert source_version() is None


def test_paths_are_recorded_relative_to_the_cache(tmp_path, monkeypatch):
    inside = cache_dir() / "teacher" / "demo-train"
    assert portable_path(inside) == "<cache>/teacher/demo-train"
    assert local_path(portable_path(inside)) == inside
    monkeypatch.chdir(REPO)
    assert portable_path(REPO / "deploy" / "rig.toml") == "deploy/rig.toml"
    assert portable_path(tmp_path) == str(tmp_path.absolute())  # elsewhere: a shared location, kept
    (tmp_path / "venv-python").symlink_to(sys.executable)
    assert portable_path(tmp_path / "venv-python") == str(tmp_path / "venv-python")  # a link stays one
    assert local_path(str(tmp_path)) == tmp_path


def test_the_bundled_demo_records_no_path_of_the_machine_that_made_it():
    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    meta = load_artifact(DEMO_ARTIFACT).meta
    assert not [s for s in strings(meta.provenance) if s.startswith("/")]
    assert meta.provenance["teacher_store"] is None  # trained on the true stimuli of the training clips
    assert len(meta.provenance["source"]["commit"]) == 40  # the commit that built it


def test_save_refuses_unit_ids_that_do_not_fit(tmp_path):
    with pytest.raises(ValueError, match=f"save_artifact: 3 unit ids for n_neurons = {N}"):
        save_artifact(tmp_path, build_student(), unit_ids=[1, 2, 3], data_fingerprint="x")
    assert not (tmp_path / "weights.pt").exists()
