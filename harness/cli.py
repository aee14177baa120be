"""Command line: argument parsing and exit codes, nothing else.

    python -m harness sweep experiments/quickstart.yaml     # run or resume a sweep
    python -m harness sweep experiments/grid.yaml --device cuda --out results/run2
    python -m harness sweep experiments/grid.yaml --dry-run  # every point, two batches
    python -m harness summary experiments/grid.yaml          # per-layer model summary

Exit codes: 0 the sweep finished (failed trials are results, not errors); 2 bad input,
with one line on stderr naming the field, the value and the fix; 130 interrupted after
saving what was done; 1 internal error.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import pandas as pd

from harness.config import Config, ConfigError, load_config
from harness.data import DataError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block: bad flags are bad input like any other."""
        self.exit(EXIT_BAD_INPUT, f"harness: {message} (see python -m harness --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sweep = commands.add_parser("sweep", help="run or resume a sweep")
    sweep.add_argument("config", type=Path, help="YAML config, e.g. experiments/grid.yaml")
    sweep.add_argument("--out", type=Path, help="results directory (default results/<name>)")
    sweep.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    sweep.add_argument("--storage", help="Optuna storage URL (default: SQLite in the "
                       "results directory), e.g. postgresql://user:pass@host/db")
    sweep.add_argument("--fresh", action="store_true",
                       help="discard earlier results of this sweep and start over")
    sweep.add_argument("--dry-run", action="store_true", help="run every point for two "
                       "batches in memory; files go to --out only when it is given")
    sweep.add_argument("--visdom", metavar="URL|off", help="Visdom server for the live "
                       "view, e.g. http://localhost:8097, or off (overrides logging.visdom)")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    sweep.set_defaults(func=_sweep)
    visdom = commands.add_parser("visdom", help="start a local Visdom server (127.0.0.1)")
    visdom.add_argument("--port", type=int, default=8097, help="port (default 8097)")
    visdom.add_argument("--env-path", type=Path, default=Path("results/visdom"),
                        help="where saved environments live (default results/visdom)")
    visdom.set_defaults(func=_visdom)
    summary = commands.add_parser("summary", help="per-layer model summary")
    summary.add_argument("config", type=Path, nargs="?", help="config naming the model")
    summary.set_defaults(func=_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError) as err:
        print(f"harness: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("harness: interrupted; finished trials are saved: run the same command to "
              "resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _sweep(args: argparse.Namespace) -> int:
    from harness.sweep import SweepOptions, run_sweep
    from harness.tables import state_counts, top_trials

    config = load_config(args.config)
    signal.signal(signal.SIGTERM, _interrupt)
    options = SweepOptions(out=args.out, storage=args.storage, device=args.device,
                           fresh=args.fresh, dry_run=args.dry_run, progress=not args.quiet,
                           visdom=args.visdom)
    outcome = run_sweep(config, options)
    trials = outcome.trials
    maximize = config.objective.direction == "maximize"
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        top = top_trials(trials, 5, maximize).round(
            {"lr": 6, "best_test_acc": 4, "final_test_loss": 4, "duration_s": 1})
        print(top.to_string(index=False))
    ran = f"ran {outcome.ran}" if outcome.ran else "nothing left to run"
    print(f"\n{state_counts(trials)} ({ran})")
    if args.dry_run:
        print("dry run passed" + (f"; files in {outcome.out}" if args.out else ""))
    else:
        print(f"results: {outcome.out}")
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    from harness.models import build_model, model_summary

    name = load_config(args.config).model if args.config else Config(name="x").model
    table = model_summary(build_model(name))
    print(table.to_string(index=False))
    print(f"\ntotal: {table['params'].sum():,} parameters, "
          f"{table['mult_adds'].sum():,} mult-adds per sample")
    return EXIT_OK


def _visdom(args: argparse.Namespace) -> int:
    """Visdom's own launcher downloads web assets (and fails offline) and listens on
    every interface; this one needs no network and listens on 127.0.0.1 only."""
    import logging

    from visdom.server.run_server import start_server

    args.env_path.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(logging.WARNING)

    def announce(port: int) -> None:
        print(f"Visdom listening on http://127.0.0.1:{port} (environments in "
              f"{args.env_path}); sweeps reach it with --visdom http://localhost:{port}",
              flush=True)

    # base_url="" as Visdom's own main() passes it; its default "/" breaks every route.
    start_server(port=args.port, base_url="", env_path=f"{args.env_path}/",
                 bind_local=True, print_func=announce)
    return EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
