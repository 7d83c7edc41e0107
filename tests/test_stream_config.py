"""The rig config is validated at start-up, naming the key that is wrong."""

import re
from dataclasses import fields, replace
from pathlib import Path

import pytest
import zmq.auth

from stream_decoder.runtime.backend import OPTIONS as BACKEND_OPTIONS
from stream_decoder.stream.config import (
    DaemonConfig,
    FrontEndSection,
    check_endpoint,
    config_warnings,
    load_config,
    load_frontend,
)

DEPLOY_EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "rig.toml"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "rig.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_loopback_defaults_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, '[model]\nartifact = "models/student"\n'))
    assert isinstance(cfg, DaemonConfig)
    assert cfg.model.artifact == tmp_path / "models/student"
    assert cfg.model.backend == "onnxruntime"
    assert cfg.endpoints.activity == "tcp://127.0.0.1:5555" and not cfg.endpoints.activity_bind
    assert cfg.endpoints.recon == "tcp://127.0.0.1:5556" and cfg.endpoints.control == "tcp://127.0.0.1:5557"
    assert cfg.stream.rate_hz == 30.0 and cfg.recorder.dir is None and not cfg.security.curve
    assert cfg.frontend == FrontEndSection() and cfg.frontend.rois is None  # activity only


def test_the_shipped_example_is_valid():
    cfg = load_config(DEPLOY_EXAMPLE)
    assert cfg.endpoints.allow_remote is False and config_warnings(cfg) == []
    assert cfg.realtime.priority == 0 and cfg.realtime.cpus == () and cfg.model.backend_options() == {}


def test_the_shipped_example_names_every_option_of_every_backend():
    """rig.toml documents each backend's [model.options] keys (commented: they depend on the backend)."""
    text = DEPLOY_EXAMPLE.read_text()
    for kind, options in BACKEND_OPTIONS.items():
        for name in options:
            assert f"# {name} = " in text, f"deploy/rig.toml does not document the {kind} option {name}"


def test_the_shipped_example_shows_every_frontend_key_with_its_default():
    """rig.toml's [frontend] names each key; those without a default (the ROIs...) commented out."""
    text = DEPLOY_EXAMPLE.read_text()
    assert "\n[frontend]\n" in text, "deploy/rig.toml has no [frontend] section"
    section = text.split("\n[frontend]\n")[1].split("\n[")[0]
    for f in fields(FrontEndSection):
        shown = rf"^{'# ' if f.default is None else ''}{f.name} = "
        assert re.search(shown, section, re.M), f"deploy/rig.toml [frontend] does not show {f.name}"
    assert load_config(DEPLOY_EXAMPLE).frontend == FrontEndSection()  # the values shown are the defaults


@pytest.mark.parametrize(
    ("backend", "options", "expected"),
    [
        ("onnxruntime", "threads = 2", {"threads": 2}),
        ("torch", 'device = "cpu"', {"device": "cpu"}),
        ("tensorrt", "fp16 = true\ncuda_graph = false", {"fp16": True, "cuda_graph": False}),
        ("tensorrt", "", {}),
    ],
)
def test_model_options_reach_the_chosen_backend(tmp_path, backend, options, expected):
    text = f'[model]\nartifact = "a"\nbackend = "{backend}"\n[model.options]\n{options}\n'
    assert load_config(write(tmp_path, text)).model.backend_options() == expected


def test_model_options_are_checked_again_when_the_backend_is_overridden(tmp_path):
    """`serve --backend` replaces the backend: options meant for another one are named, not dropped."""
    cfg = load_config(write(tmp_path, '[model]\nartifact = "a"\n[model.options]\nthreads = 2\n'))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['threads'\] for the tensorrt backend"):
        replace(cfg.model, backend="tensorrt")


def test_the_deprecated_threads_key_still_sets_onnxruntime_threads(tmp_path):
    cfg = load_config(write(tmp_path, '[model]\nartifact = "a"\nthreads = 2\n'))
    assert cfg.model.backend_options() == {"threads": 2}
    assert any("[model] threads is deprecated" in w for w in config_warnings(cfg))
    torch_cfg = load_config(write(tmp_path, '[model]\nartifact = "a"\nbackend = "torch"\nthreads = 2\n'))
    assert torch_cfg.model.backend_options() == {}
    assert any("ignored by the torch backend" in w for w in config_warnings(torch_cfg))


def test_remote_endpoints_without_curve_are_warned_about(tmp_path):
    remote = '[model]\nartifact = "a"\n[endpoints]\nallow_remote = true\nrecon = "tcp://*:5556"\n'
    (warning,) = config_warnings(load_config(write(tmp_path, remote)))
    assert "recon" in warning and "activity" not in warning and "[security] curve = true" in warning
    loopback_only = '[model]\nartifact = "a"\n[endpoints]\nallow_remote = true\n'
    assert config_warnings(load_config(write(tmp_path, loopback_only))) == []


def test_realtime_settings_are_read(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            '[model]\nartifact = "a"\nthreads = 2\n'
            "[realtime]\npriority = 50\ncpus = [0]\nlock_memory = true\n",
        )
    )
    assert cfg.realtime.priority == 50 and cfg.realtime.cpus == (0,) and cfg.realtime.lock_memory
    assert cfg.model.backend_options() == {"threads": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\n", r"\[model\] is missing required key\(s\) \['artifact'\]"),
        ('[model]\nartifact = "a"\nbakend = "torch"\n', r"unknown key\(s\) \['bakend'\] in \[model\]"),
        ('[model]\nartifact = "a"\n[strem]\n', r"unknown key\(s\) \['strem'\] in the top level"),
        ('[model]\nartifact = "a"\n[stream]\nrate_hz = "30"\n', r"\[stream\] rate_hz must be float"),
        ('[model]\nartifact = "a"\n[stream]\nsend_hwm = 1.5\n', r"\[stream\] send_hwm must be int"),
        ('[model]\nartifact = "a"\n[stream]\nrate_hz = 0\n', r"rate_hz must be > 0"),
        ('[model]\nartifact = "a"\n[stream]\noutput_dtype = "int8"\n', r"output_dtype 'int8'"),
        ('[model]\nartifact = "a"\nbackend = "tflite"\n', r"backend 'tflite' is not one of"),
        (
            '[model]\nartifact = "a"\n[endpoints]\nrecon = "udp://x"\n',
            r"\[endpoints\] recon 'udp://x' is not",
        ),
        ('[model]\nartifact = "a"\n[endpoints]\ncontrol = "tcp://127.0.0.1"\n', r"needs a port"),
        ('[model]\nartifact = "a"\n[endpoints]\nrecon = "tcp://0.0.0.0:5556"\n', r"allow_remote = true"),
        (
            '[model]\nartifact = "a"\n[security]\ncurve = true\n',
            r"needs server_secret_key and client_keys_dir",
        ),
        ('[model]\nartifact = "a"\n[endpoints\n', r"not valid TOML"),
        ('[model]\nartifact = "a"\nthreads = 0\n', r"\[model\] threads must be >= 1"),
        (
            '[model]\nartifact = "a"\nbackend = "tensorrt"\n[model.options]\nfp61 = true\n',
            r"\[model.options\] unknown key\(s\) \['fp61'\] for the tensorrt backend; valid keys: "
            r"\['cuda_graph', 'fp16'\]",
        ),
        (
            '[model]\nartifact = "a"\nbackend = "tensorrt"\n[model.options]\nfp16 = "yes"\n',
            r"\[model.options\] fp16 must be bool for the tensorrt backend, got 'yes'",
        ),
        (
            '[model]\nartifact = "a"\n[model.options]\nthreads = 2.0\n',
            r"\[model.options\] threads must be int for the onnxruntime backend, got 2.0",
        ),
        ('[model]\nartifact = "a"\n[model.options]\nthreads = 0\n', r"\[model.options\] threads must be >="),
        ('[model]\nartifact = "a"\noptions = 3\n', r"\[model\] options must be a table"),
        (
            '[model]\nartifact = "a"\nthreads = 2\n[model.options]\nthreads = 2\n',
            r"\[model\] threads and \[model.options\] threads are both set",
        ),
        ('[model]\nartifact = "a"\n[realtime]\npriority = 100\n', r"priority must be 0 \(off\) or 1-99"),
        ('[model]\nartifact = "a"\n[realtime]\ncpus = 1\n', r"\[realtime\] cpus must be a list of int"),
        ('[model]\nartifact = "a"\n[realtime]\ncpus = [0, "1"]\n', r"\[realtime\] cpus item must be int"),
        ('[model]\nartifact = "a"\n[realtime]\ncpus = [4096]\n', r"cpus \[4096\] are not cores"),
        (
            '[model]\nartifact = "a"\n[frontend]\nneuropil = 0.5\n',
            r"unknown key\(s\) \['neuropil'\] in \[frontend\]; known: \['rois', ",
        ),
        ('[model]\nartifact = "a"\n[frontend]\nvolume_rate_hz = 0\n', r"volume_rate_hz must be > 0, got 0"),
        ('[model]\nartifact = "a"\n[frontend]\nvolume_rate_hz = -7.5\n', r"volume_rate_hz must be > 0"),
        ('[model]\nartifact = "a"\n[frontend]\nreference_frames = 2.5\n', r"reference_frames must be int"),
        ('[model]\nartifact = "a"\n[frontend]\nrois = ""\n', r"\[frontend\] rois must be Path"),
    ],
)
def test_bad_configs_name_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ValueError, match=message) as caught:
        load_config(write(tmp_path, text))
    assert str(tmp_path / "rig.toml") in str(caught.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml")
    text = (
        '[model]\nartifact = "a"\n[security]\ncurve = true\nserver_secret_key = "s.key_secret"\n'
        'client_keys_dir = "clients"\n'
    )
    with pytest.raises(FileNotFoundError, match="server_secret_key: no file"):
        load_config(write(tmp_path, text))


FRONTEND = (
    '[frontend]\nrois = "rois.npz"\nreferences = "references.npy"\nvolume_rate_hz = 8\n'
    "neuropil_coefficient = 0.5\nfft_workers = 2\n"
)


def rois_and_references(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "rois.npz").write_bytes(b"")  # only their presence is checked when the config loads
    (folder / "references.npy").write_bytes(b"")
    return folder


def test_a_frontend_section_takes_raw_frames_with_paths_relative_to_the_config(tmp_path):
    cfg = load_config(write(rois_and_references(tmp_path), '[model]\nartifact = "a"\n' + FRONTEND))
    front = cfg.frontend
    assert front.rois == tmp_path / "rois.npz" and front.references == tmp_path / "references.npy"
    assert front.volume_rate_hz == 8.0 and isinstance(front.volume_rate_hz, float)
    assert front.neuropil_coefficient == 0.5 and front.fft_workers == 2
    assert front.dark_level == 0.0 and front.reference_frames == 30  # the rest keep their defaults


@pytest.mark.parametrize("key", ["rois", "references"])
def test_a_missing_rois_or_references_file_is_one_line_naming_it(tmp_path, key):
    rois_and_references(tmp_path)
    (tmp_path / f"{key}.{'npz' if key == 'rois' else 'npy'}").unlink()
    with pytest.raises(FileNotFoundError, match=rf"\[frontend\] {key}: no file") as caught:
        load_config(write(tmp_path, '[model]\nartifact = "a"\n' + FRONTEND))
    assert str(tmp_path / "rig.toml") in str(caught.value) and "\n" not in str(caught.value)


def test_serve_frontend_reads_a_file_holding_only_a_frontend_table(tmp_path):
    folder = rois_and_references(tmp_path / "mouse1")  # paths relative to that file, not to the cwd
    (folder / "frontend.toml").write_text(FRONTEND)
    front = load_frontend(folder / "frontend.toml")
    assert front.rois == folder / "rois.npz" and front.references == folder / "references.npy"
    assert front.volume_rate_hz == 8.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[model]\nartifact = "a"\n' + FRONTEND,
            r"expected only a \[frontend\] table, got \['frontend', 'model'\]",
        ),
        ('rois = "rois.npz"\n', r"expected only a \[frontend\] table, got \['rois'\]"),  # no table header
        ("[frontend]\nrois = 3\n", r"\[frontend\] rois must be Path, got 3"),
        ("[frontend]\nvolume_rate_hz = 0\n", r"\[frontend\] volume_rate_hz must be > 0"),
        ("[frontend]\nvolume_rate_hz = 8\n", r"\[frontend\] rois is unset"),  # raw frames, no ROIs
        ("[frontend\n", r"not valid TOML"),
    ],
)
def test_serve_frontend_refuses_anything_but_a_valid_frontend_table(tmp_path, text, message):
    path = rois_and_references(tmp_path) / "frontend.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        load_frontend(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_serve_frontend_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"front-end config .*nope\.toml does not exist"):
        load_frontend(tmp_path / "nope.toml")


def test_curve_config_with_real_certificates(tmp_path):
    (tmp_path / "clients").mkdir()
    zmq.auth.create_certificates(tmp_path, "server")
    zmq.auth.create_certificates(tmp_path / "clients", "rig")
    text = (
        '[model]\nartifact = "a"\n[endpoints]\nallow_remote = true\nrecon = "tcp://*:5556"\n'
        '[security]\ncurve = true\nserver_secret_key = "server.key_secret"\n'
        'client_keys_dir = "clients"\n'
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.security.curve and cfg.security.client_keys_dir == tmp_path / "clients"


def test_endpoint_rules():
    for ok in (
        "tcp://127.0.0.1:5555",
        "tcp://localhost:1",
        "tcp://[::1]:5555",
        "ipc:///tmp/x",
        "inproc://a",
        "tcp://127.0.0.1:*",
    ):
        check_endpoint(ok, "x", allow_remote=False)
    for remote in ("tcp://10.0.0.2:5555", "tcp://*:5555", "tcp://rig-pc:5555"):
        with pytest.raises(ValueError, match="beyond this host"):
            check_endpoint(remote, "x", allow_remote=False)
        check_endpoint(remote, "x", allow_remote=True)
