"""`stream-decoder <verb>`: one entry point; each stage registers its own verbs.

Building the parser loads neither torch nor onnx (each verb imports what it runs when it runs), so
`--help` answers at once. Errors a user can fix are one line; `-v` adds their traceback.
"""

import argparse
import importlib
import importlib.metadata
import logging
import sys
import traceback

from stream_decoder.errors import UserError

# (module, function): each function adds its verbs with `set_defaults(func=...)`; this order is the
# order `--help` lists them in, the pipeline's, whichever stage a verb lives in.
COMMANDS = (
    ("stream_decoder.data.commands", "register"),
    ("stream_decoder.encoder.commands", "register"),
    ("stream_decoder.teacher.commands", "register"),
    ("stream_decoder.decoder.commands", "register"),
    ("stream_decoder.stream.commands", "register_serve"),
    ("stream_decoder.rig.commands", "register_replay"),
    ("stream_decoder.rig.commands", "register_microscope"),
    ("stream_decoder.display.commands", "register_view"),
    ("stream_decoder.rig.commands", "register_bridge"),
    ("stream_decoder.rig.commands", "register_virtual_rig"),
    ("stream_decoder.stream.commands", "register_swap"),
    ("stream_decoder.rig.commands", "register_calibrate"),
    ("stream_decoder.display.commands", "register_demo"),
    ("stream_decoder.display.commands", "register_report"),
    ("stream_decoder.runtime.commands", "register"),
)
# What a user causes and can fix (a bad value, a missing or unreadable file, no daemon answering):
# a one-line error. Anything else, torch's own RuntimeErrors included, is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, UserError)
VERBOSE_HELP = "log debug messages and show the traceback of an error"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every verb's help: each option's default appended once; none for flags and for options
    without a default (their help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        if isinstance(action.default, list | tuple):  # as it is typed: `--seed 0 1`, not `[0, 1]`
            shown = " ".join(map(str, action.default)).replace("%", "%%")
            return f"{action.help} (default: {shown})"
        return super()._get_help_string(action)


class VerbParser(argparse.ArgumentParser):
    """A verb's parser: the one help formatter, and `-v` accepted after the verb too."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)
        # SUPPRESS: absent after the verb, it leaves the value parsed before the verb alone.
        self.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )


def package_version() -> str:
    try:
        return importlib.metadata.version("stream-decoder")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        from stream_decoder import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-decoder",
        description="Live reconstruction of the movie a mouse watches from two-photon activity: "
        "simulate data, train the encoder ensemble, run the gradient teacher, distill the "
        "streaming student, export it, and serve it over ZeroMQ at 30 Hz.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True, parser_class=VerbParser)
    for module, function in COMMANDS:
        getattr(importlib.import_module(module), function)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; its exit code. Ctrl-C anywhere (start-up included) ends it with 130, one line."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _report(args, "interrupted")
        return 130
    except USER_ERRORS as exc:
        if args is None:
            raise
        _report(args, f"error: {exc}")
        return 2


def _report(args: argparse.Namespace | None, message: str) -> None:
    """One line naming the verb; with -v, the traceback of what is being handled above it."""
    if args is not None and args.verbose:
        traceback.print_exc()
    verb = "stream-decoder" if args is None else f"stream-decoder {args.verb}"
    print(f"{verb}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
