"""Command line: argument parsing and exit codes, nothing else.

    python -m harness sweep experiments/quickstart.yaml     # run or resume a sweep
    python -m harness sweep grid.yaml                        # the same as experiments/grid.yaml
    python -m harness sweep experiments/grid.yaml --device cuda --out results/run2
    python -m harness sweep experiments/grid.yaml --dry-run  # every point, two batches
    python -m harness sweep experiments/grid.yaml --population 32  # 32 trials at once (GPU)
    python -m harness summary experiments/grid.yaml          # per-layer model summary
    python -m harness compare results/run-a results/run-b    # each directory its own sweep
    python -m harness tensorboard results/run-a results/run-b   # both sweeps side by side
    python -m harness report results/quickstart              # results/quickstart/report.html
    python -m harness report results/run-a results/run-b     # ./report.html, both sweeps

Exit codes: 0 the sweep finished (failed trials are results, not errors); 2 bad input,
with one line on stderr per problem (at most 20) naming the field, the value and the fix;
3 no space left on device, naming the file (free some space and run the same command:
the trial that was running runs again); 130 interrupted after saving what was done;
1 internal error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from harness import stop
from harness.checks import check_device, parse_population
from harness.config import Config
from harness.errors import (
    ConfigError,
    DatabaseFull,
    DataError,
    MachineFault,
    SetupError,
    no_space,
)
from harness.hyperparams import LR
from harness.parse import load_config

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_NO_SPACE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXPERIMENTS = Path("experiments")  # where `sweep NAME.yaml` looks when NAME.yaml is not here


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
    sweep.add_argument("--workers", type=int, default=1, help="processes that run trials "
                       "at once on this machine (default 1)")
    sweep.add_argument("--storage", help="Optuna storage URL (default: SQLite in the "
                       "results directory), e.g. postgresql://user:pass@host/db")
    sweep.add_argument("--fresh", nargs="?", const="", metavar="STUDY",
                       help="discard earlier results of this sweep and start over; with "
                       "a shared --storage (not SQLite), name the study: --fresh=NAME")
    sweep.add_argument("--dry-run", action="store_true", help="run every point for two "
                       "batches in memory; files go to --out only when it is given")
    sweep.add_argument("--visdom", metavar="URL|off", help="Visdom server for the live "
                       "view, e.g. http://localhost:8097, or off (overrides logging.visdom)")
    sweep.add_argument("--population", metavar="N|auto|off", help="the most trials trained "
                       "together as one model (overrides train.population; auto: 32 on "
                       "CUDA, off on the CPU)")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    sweep.set_defaults(func=_sweep)
    visdom = commands.add_parser("visdom", help="start a local Visdom server (127.0.0.1)")
    visdom.add_argument("--port", type=int, default=8097, help="port (default 8097)")
    visdom.add_argument("--env-path", type=Path, default=Path("results/visdom"),
                        help="where saved environments live (default results/visdom)")
    visdom.set_defaults(func=_visdom)
    compare = commands.add_parser("compare", help="comparison tables of one or more sweeps, "
                                  "each its own (the sweep column: its directory)")
    compare.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="results directory")
    compare.add_argument("--format", choices=["table", "csv", "md", "html"], default="table",
                         help="table (terminal), csv (the leaderboard), md or html")
    compare.set_defaults(func=_compare)
    report = commands.add_parser("report", help="write DIR/report.html with plots; of "
                                 "several sweeps, each its own (labelled as compare does)")
    report.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="results directory")
    report.add_argument("--out", type=Path, help="the page to write (default DIR/report.html "
                        "for one sweep, report.html here for several)")
    report.set_defaults(func=_report)
    board = commands.add_parser("tensorboard", help="TensorBoard on 127.0.0.1 over one or "
                                "more sweeps, each labelled as compare labels it")
    board.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="results directory")
    board.add_argument("--port", type=int, default=6006, help="port (default 6006; 0: any "
                       "free one)")
    board.set_defaults(func=_tensorboard)
    export = commands.add_parser("export", help="rebuild a results directory from a "
                                 "study in any storage (for sweeps shared by machines)")
    export.add_argument("--storage", required=True, help="Optuna storage URL")
    export.add_argument("--study", required=True, help="study name (the config's name)")
    export.add_argument("--out", type=Path, required=True, help="results directory to write")
    export.set_defaults(func=_export)
    summary = commands.add_parser("summary", help="per-layer model summary")
    summary.add_argument("config", type=Path, nargs="?", help="config naming the model")
    summary.set_defaults(func=_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `--fresh` alone names no study, so that `sweep --fresh grid.yaml` reads grid.yaml
    # as the config: a study is named only as --fresh=NAME.
    args = build_parser().parse_args(["--fresh=" if a == "--fresh" else a for a in argv])
    try:
        if args.command == "sweep":
            stop.check()  # a signal while Python was starting: nothing to save yet
        else:
            stop.immediate()  # nothing to save: Ctrl-C stops at once
        return args.func(args)
    except (ConfigError, DataError) as err:
        full = no_space(err)  # "cannot open the storage", say, because the disk is full
        if full is not None:
            return _no_space(args, full)
        for line in getattr(err, "lines", [str(err)]):
            print(f"harness: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SetupError, MachineFault) as err:  # one line; nothing recorded as a result
        print(f"harness: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        if args.command == "sweep":
            print("harness: interrupted; finished trials are saved: run the same command "
                  "to resume", file=sys.stderr)
        else:
            print(f"harness: {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        full = no_space(err)
        if full is None:
            raise
        return _no_space(args, full)


def _no_space(args: argparse.Namespace, full: OSError) -> int:
    """One line naming the file, instead of a traceback that blames something else."""
    where = full.filename or "a results file"
    if isinstance(full, DatabaseFull):
        where = getattr(args, "database", None) or "the study's database"
    print(f"harness: {where}: no space left on device; free some space and run the same "
          "command: it goes on where it stopped", file=sys.stderr)
    return EXIT_NO_SPACE


def find_config(path: Path) -> Path:
    """`path`, or experiments/`path` when only that exists (`sweep grid.yaml`)."""
    if path.exists() or path.is_absolute():
        return path
    if (EXPERIMENTS / path).is_file():
        print(f"harness: {path} is not here; using {EXPERIMENTS / path}", file=sys.stderr)
        return EXPERIMENTS / path
    known = sorted(p.name for p in EXPERIMENTS.glob("*.yaml"))
    if known:
        raise ConfigError(f"{path}: no such config file, here or in {EXPERIMENTS}/; the "
                          f"configs in {EXPERIMENTS}/ are {', '.join(known)}")
    return path  # load_config says it is missing


def _sweep(args: argparse.Namespace) -> int:
    config = load_config(find_config(args.config))  # bad input is answered before torch loads
    if args.workers < 1:
        raise ConfigError(f"--workers: {args.workers} is too small; use 1 or more")
    if args.device is not None:
        check_device(args.device, "--device")  # as train.device is checked
    population = None if args.population is None else parse_population(args.population,
                                                                         "--population")
    from harness.quiet import quiet_dependencies
    from harness.study.storage import check_fresh
    from harness.sweep import SweepOptions, run_sweep

    quiet_dependencies()
    check_fresh(args.fresh, args.storage, config.name)
    options = SweepOptions(out=args.out, storage=args.storage, device=args.device,
                           fresh=args.fresh is not None, dry_run=args.dry_run,
                           progress=not args.quiet, visdom=args.visdom, workers=args.workers,
                           population=population)
    args.database = args.storage or (args.out or Path("results") / config.name) / "study.db"
    outcome = run_sweep(config, options)
    stop.check()  # asked to stop while the last files were written: say so
    if not args.quiet:  # --quiet: nothing but errors and warnings
        _ending(config, outcome, args)
    return EXIT_OK


def _ending(config: Config, outcome: Any, args: argparse.Namespace) -> None:
    """The answer in words, the top trials, the counts, and where the results are."""
    import textwrap

    import pandas as pd

    from harness.config import to_dict
    from harness.reporting import answer, summary
    from harness.reporting.tables import Spec, config_columns, state_counts, top_trials

    trials = outcome.trials
    spec = Spec.from_config(to_dict(config))
    if not args.dry_run:  # two batches of one epoch answer nothing
        c = summary.build(trials, spec)
        for line in answer.answer(c.trials, c.board, config_columns(trials, spec), spec):
            print(textwrap.fill(line, summary.WIDTH, subsequent_indent="  "))
        print()
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        top = top_trials(trials, 5, config.objective.maximize, config.objective.metric)
        top = top.round({LR: 6, config.objective.metric: 4, "test_acc": 4,
                         "final_test_loss": 4, "duration_s": 1})
        print(top.to_string(index=False))
    ran = f"ran {outcome.ran}" if outcome.ran else "nothing left to run"
    print(f"\n{state_counts(trials)} ({ran})")
    if args.dry_run:
        print("dry run passed" + (f"; files in {outcome.out}" if args.out else ""))
        return
    print(f"results: {outcome.out}")
    where = shlex.quote(str(outcome.out))
    looks = [f"python -m harness {command} {where}" for command in ("compare", "report")]
    if config.logging.tensorboard is not None:
        looks.insert(0, f"python -m harness tensorboard {where}")
    if outcome.visdom:
        looks.append(f"the live view: {outcome.visdom}")
    print("look at it:\n" + "\n".join(f"  {line}" for line in looks))


def _compare(args: argparse.Namespace) -> int:
    from harness.reporting import summary
    from harness.reporting.saved import read_sweeps

    sweep = read_sweeps(args.dirs)
    _say(sweep.notes)
    trials, spec = sweep.trials, sweep.spec
    if args.format == "csv":  # the table itself has no room for what the headline says
        running = summary.still_running(sweep.running).removeprefix("; ")
        _say([line for line in (summary.warning(spec), running) if line])
        print(summary.build(trials, spec).board.to_csv(index=False), end="")
        return EXIT_OK
    comparison = summary.build(trials, spec, running=sweep.running)
    if args.format == "md":
        print(summary.markdown(comparison, sweep.name))
    elif args.format == "html":
        from harness.reporting.report import render

        print(render(comparison, sweep.history, sweep.name))
    else:
        print(summary.text(comparison, sweep.name))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from harness.reporting.report import write_report
    from harness.reporting.saved import read_sweeps

    sweep = read_sweeps(args.dirs)
    _say(sweep.notes)
    path = args.out or (args.dirs[0] / "report.html" if len(args.dirs) == 1
                        else Path("report.html"))
    write_report(path, sweep.trials, sweep.history, sweep.spec, sweep.name, sweep.running)
    print(f"report: {path}")
    return EXIT_OK


def _say(lines: list[str]) -> None:
    """What a reader should know before the tables, one line each on stderr."""
    for line in lines:
        print(f"harness: {line}", file=sys.stderr)


def _tensorboard(args: argparse.Namespace) -> int:
    from harness.reporting.boards import serve

    serve(args.dirs, args.port)
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from harness.quiet import quiet_dependencies
    from harness.reporting.export import export_study

    quiet_dependencies()
    args.database = args.storage
    n = export_study(args.storage, args.study, args.out)
    print(f"{n} trials of {args.study} written to {args.out}")
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    from harness.models import build_model, example_input, model_summary

    name = load_config(find_config(args.config)).model if args.config else Config(name="x").model
    table = model_summary(build_model(name), example_input(name))
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

