"""The rig config is validated at start-up, naming the key that is wrong."""

from pathlib import Path

import pytest
import zmq.auth

from stream_decoder.stream.config import DaemonConfig, check_endpoint, load_config

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
    assert cfg.endpoints.allow_remote is False
    assert cfg.realtime.priority == 0 and cfg.realtime.cpus == () and cfg.model.threads == 1


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
