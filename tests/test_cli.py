"""The command line a new user meets first: quick help, defaults shown once, -v anywhere, --version,
one-line errors and Ctrl-C, and the verbs' first-run behaviour."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from stream_decoder import cli
from stream_decoder.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (verbs,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return verbs.choices


def test_building_the_parser_loads_neither_torch_nor_onnx():
    # A fresh interpreter: this test process has imported torch already.
    probe = (
        "import sys; from stream_decoder.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_verb_prints_each_default_once():
    for verb, parser in verb_parsers().items():
        assert parser.formatter_class is cli.HelpFormatter, verb
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help is None or not action.option_strings:
                continue
            text = formatter._expand_help(action)
            default = action.default
            if default is None or isinstance(default, bool) or default is argparse.SUPPRESS:
                assert text.count("(default") <= 1, (verb, action.dest, text)
            else:
                shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
                assert text.count("default") == 1 and f"(default: {shown})" in text, (verb, action.dest, text)


def test_verbose_is_taken_before_and_after_the_verb():
    parse = build_parser().parse_args
    assert parse(["serve", "-v", "--config", "x.toml"]).verbose
    assert parse(["-v", "serve", "--config", "x.toml"]).verbose
    assert not parse(["serve", "--config", "x.toml"]).verbose


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert (
        done.value.code == 0 and capsys.readouterr().out.strip() == f"stream-decoder {cli.package_version()}"
    )
    assert cli.package_version()[0].isdigit()


def test_a_user_error_is_one_line_and_v_adds_its_traceback(tmp_path, capsys):
    argv = ["simulate", "--preset", "tiny", "--neurons", "0", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err == "stream-decoder simulate: error: n_neurons must be positive, got 0\n"
    assert main([*argv, "-v"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("error: n_neurons must be positive, got 0\n")


def test_os_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, tmp_path, capsys):
    from stream_decoder.data import commands

    def denied(*_, **__):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(commands, "simulate", denied)
    assert main(["simulate", "--out", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"stream-decoder simulate: error: [Errno 13] Permission denied: '{tmp_path}'\n"
    )

    def bug(*_, **__):
        raise TypeError("a bug")

    monkeypatch.setattr(commands, "simulate", bug)
    with pytest.raises(TypeError, match="a bug"):
        main(["simulate", "--out", str(tmp_path)])


def test_ctrl_c_during_start_up_is_one_line_and_exit_code_130(monkeypatch, tmp_path, capsys):
    from stream_decoder.data import commands

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "simulate", interrupted)
    assert main(["simulate", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "stream-decoder simulate: interrupted\n"


def test_ctrl_c_stops_view_with_one_line_and_130_after_writing_what_it_has(monkeypatch, tmp_path, capsys):
    import signal

    from stream_decoder.display import viewer

    def watch_until_ctrl_c(client, sink, *args, stop, **kwargs):
        signal.raise_signal(signal.SIGINT)  # as a person pressing Ctrl-C in view's terminal
        assert stop.is_set()  # caught: the loop (here, this stand-in) ends itself, nothing raised inside
        return viewer.LiveFigures()

    monkeypatch.setattr(viewer, "watch", watch_until_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    assert main(["view", "--endpoint", "ipc:///tmp/sd-none", "--no-window", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "stream-decoder view: interrupted"
    assert signal.getsignal(signal.SIGINT) is before


def test_view_names_its_endpoint_and_gives_up_after_wait_s(tmp_path, capsys):
    endpoint = f"ipc://{tmp_path}/recon"
    assert main(["view", "--endpoint", endpoint, "--wait-s", "0", "--no-window", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"view: waiting for frames on {endpoint} for up to 0 s" in err
    assert (
        err.splitlines()[-1]
        == f"stream-decoder view: error: no frame from {endpoint} within 0 s; is serve running there?"
    )
    assert main(["view", "--endpoint", "localhost:5556", "--no-window"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("stream-decoder view: error: --endpoint 'localhost:5556' is not a tcp://")


def test_train_encoder_asked_for_cuda_on_a_cpu_build_says_what_to_do(tiny_root, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv = ["train-encoder", "--data", str(tiny_root), "--device", "cuda", "--out", str(tmp_path)]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "device 'cuda':" in line and "use --device cpu" in line


def test_bench_step_help_runs_without_the_test_extra():
    probe = (
        "import runpy, sys; sys.modules['pytest'] = sys.modules['pytest_benchmark'] = None; "
        "sys.path.insert(0, 'bench'); sys.argv = ['bench_step.py', '--help']; "
        "runpy.run_path('bench/bench_step.py', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: bench_step.py" in done.stdout


def test_simulate_reuses_a_dataset_made_from_the_same_settings(tiny_root, tiny_mouse, capsys):
    assert main(["simulate", "--preset", "tiny", "--seed", "0", "--out", str(tiny_root)]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_mouse.path}: simulated before from the same preset, seed and settings; reusing it" in out
    assert f"fingerprint {tiny_mouse.fingerprint()}" in out
    # Other settings, same folder name: not the same data, so not reused (and not overwritten).
    assert main(["simulate", "--preset", "tiny", "--planes", "2", "--out", str(tiny_root)]) == 2
    assert "already exists, not from these settings; pass --force" in capsys.readouterr().err


def test_calibrate_names_its_endpoints_when_nothing_arrives(tiny_root, tmp_path, capsys):
    activity, stimulus = f"ipc://{tmp_path}/activity", f"ipc://{tmp_path}/stimulus"
    argv = ["calibrate", "--data", str(tiny_root), "--activity", activity, "--stimulus", stimulus]
    assert main([*argv, "--out", str(tmp_path / "day"), "--wait-s", "0"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("stream-decoder calibrate: error: nothing arrived for 0 s")
    assert activity in last and stimulus in last and not (tmp_path / "day").exists()


def test_only_the_project_s_own_errors_are_one_line_a_bug_keeps_its_traceback(monkeypatch, capsys):
    from stream_decoder.errors import UserError
    from stream_decoder.stream import commands

    def bug(args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")  # torch's, say

    monkeypatch.setattr(commands, "_swap", bug)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        main(["swap", "somewhere"])

    def fixable(args):
        raise UserError("no daemon answers on tcp://127.0.0.1:5557")

    monkeypatch.setattr(commands, "_swap", fixable)
    assert main(["swap", "somewhere"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "stream-decoder swap: error: no daemon answers on tcp://127.0.0.1:5557"
    )
