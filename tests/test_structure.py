"""One-way flow: data -> frontend -> encoder -> teacher -> decoder -> runtime -> stream (the daemon and its
wire) -> rig (what sends to it) -> display (what watches it). A stage imports only from
stages to its left and from the shared leaves (the modules beside the stages: metrics, paths, atomic,
distributed, ...), which import no stage; every import counts, those inside functions too. Each stage's
commands.py and cli.py compose the stages and are exempt."""

import ast
from pathlib import Path

import stream_decoder

STAGES = ("data", "frontend", "encoder", "teacher", "decoder", "runtime", "stream", "rig", "display")
PACKAGE = Path(stream_decoder.__file__).parent


def imported_modules(file: Path, package: str):
    """(line, absolute module) of every import in `file`, relative ones resolved against `package`."""
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from stream_decoder import data` imports the stage itself, not a name of the package.
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "stream_decoder" else [base]
            yield from ((node.lineno, name) for name in names)


def flow_violations(root: Path) -> list[str]:
    """Imports of `root` (a stream_decoder package folder) against the one-way flow, as 'file:line: ...'."""
    found = []
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(root)
        top = relative.parts[0].removesuffix(".py")
        if file.name == "commands.py" or top in ("cli", "__init__"):
            continue
        package = ".".join(("stream_decoder", *relative.parent.parts))
        if top in STAGES:
            allowed = set(STAGES[: STAGES.index(top) + 1])
        elif len(relative.parts) == 1:  # a shared leaf
            allowed = set()
        else:
            found.append(f"{relative}: in a folder that is no stage; add the folder to STAGES")
            continue
        for line, module in imported_modules(file, package):
            parts = module.split(".")
            if parts[0] != "stream_decoder" or len(parts) < 2:
                continue
            target = parts[1]
            if target == "cli" or parts[-1] == "commands":
                found.append(f"{relative}:{line}: imports the composition layer ({module})")
            elif target in STAGES and target not in allowed:
                found.append(f"{relative}:{line}: {top} imports {module}, a stage to its right")
    return found


def test_no_stage_imports_a_stage_to_its_right():
    assert flow_violations(PACKAGE) == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "teacher" / "job.py").write_text("def f():\n    from stream_decoder.decoder import x\n")
    (tmp_path / "teacher" / "commands.py").write_text("from stream_decoder.decoder import x\n")
    (tmp_path / "data" / "a.py").write_text("from ..encoder import model\nfrom . import b\n")
    (tmp_path / "metrics.py").write_text("from stream_decoder import data\n")
    assert flow_violations(tmp_path) == [
        "data/a.py:1: data imports stream_decoder.encoder, a stage to its right",
        "metrics.py:1: metrics imports stream_decoder.data, a stage to its right",
        "teacher/job.py:2: teacher imports stream_decoder.decoder, a stage to its right",
    ]
