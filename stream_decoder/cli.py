"""`stream-decoder <verb>`: one entry point; each stage registers its own verbs."""

import argparse
import importlib
import logging
import sys

# Each module defines `register(subparsers)`, adding its verbs with `set_defaults(func=...)`.
COMMAND_MODULES = (
    "stream_decoder.data.commands",
    "stream_decoder.encoder.commands",
    "stream_decoder.teacher.commands",
    "stream_decoder.decoder.commands",
    "stream_decoder.stream.commands",
    "stream_decoder.runtime.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-decoder",
        description="Live reconstruction of the movie a mouse watches from two-photon activity: "
        "simulate data, train the encoder ensemble, run the gradient teacher, distill the "
        "streaming student, export it, and serve it over ZeroMQ at 30 Hz.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"stream-decoder {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
