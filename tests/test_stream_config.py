"""The rig config is validated at start-up, naming the key that is wrong."""

from dataclasses import replace
from pathlib import Path

import pytest
import zmq.auth

from stream_decoder.runtime.backend import OPTIONS as BACKEND_OPTIONS
from stream_decoder.stream.config import DaemonConfig, check_endpoint, config_warnings, load_config

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
