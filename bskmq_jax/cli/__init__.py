"""The ``bskmq`` command line: one subcommand per job.

Each subcommand module exposes ``add_parser(subparsers)`` and ``run(args)``.
Errors in user input surface as one line on stderr and exit status 2, never
as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> module under bskmq_jax.cli; imported lazily so `bskmq --help` is fast.
SUBCOMMANDS = {
    "levels": "bskmq_jax.cli.levels",
    "ptq": "bskmq_jax.cli.ptq",
    "main": "bskmq_jax.cli.main",
    "hardware": "bskmq_jax.cli.hardware",
    "finetune": "bskmq_jax.cli.finetune",
}


def enable_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache (first compiles take 10-15 s)."""
    import jax

    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "bskmq_jax", "jax"
    )
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bskmq",
        description="Nonlinear-ADC level fitting (BS-KMQ) for analog in-memory computing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, mod in SUBCOMMANDS.items():
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bskmq`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compilation_cache()
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"bskmq {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
