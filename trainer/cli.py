"""The `trainer` command: a thin click group. Each command parses its arguments,
calls ``trainer.api``, prints, and maps errors to the documented exit codes:

0 success · 1 internal error · 2 bad usage or config · 3 bad or missing data ·
4 an `expect:` gate not met · 5 training diverged · 6 a run file could not be written
(full disk, read-only or deleted folder) · 130 interrupted (Ctrl-C) · 143 terminated
(SIGTERM); both write a resumable checkpoint first.

Heavy imports stay inside the commands so that `trainer --help` is instant.
"""

import functools
import json
import sys

import click

from trainer import __version__

EPILOG = """\b
Examples:
  trainer fit configs/quickstart.yaml
  trainer fit configs/quickstart.yaml --set fit.epochs=3 --set compile.optimizer.Adam.lr=0.01
  trainer evaluate runs/quickstart-20261126-101500 --json
  trainer summary configs/quickstart.yaml
"""


def _emit_error(message, code, as_json):
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    click.echo(f"error: {message}", err=True)


def handle_errors(fn):
    """One exit path: user errors print one message; internal errors a short note
    (the traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug", False)
        as_json = kwargs.get("as_json", False)
        from trainer.errors import TrainerError, out_of_memory

        try:
            try:
                return fn(*args, **kwargs)
            except MemoryError as exc:  # evaluate/predict/sweep as fit (api): exit 2
                if debug:
                    raise
                raise out_of_memory(exc) from None
        except TrainerError as exc:
            if debug:
                raise
            _emit_error(str(exc), exc.exit_code, as_json)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            from trainer.errors import Terminated

            code = 143 if isinstance(exc, Terminated) else 130
            _emit_error("terminated" if code == 143 else "interrupted", code, as_json)
            sys.exit(code)
        except Exception as exc:  # noqa: BLE001 - the one place internal errors surface
            if debug:
                raise
            from trainer.usercode import blame

            message = blame(exc)  # the user's own layer or callback failed: exit 2
            if message is not None:
                _emit_error(f"{message} (run with --debug for the traceback)", 2, as_json)
                sys.exit(2)
            _emit_error(f"internal error: {type(exc).__name__}: {exc} "
                        f"(run with --debug for the traceback)", 1, as_json)
            sys.exit(1)

    return wrapper


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainer")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug):
    """Declarative neural-network training: one YAML/JSON file, Keras 2 vocabulary."""
    from trainer import console

    console.use_stderr(False)  # each command decides (one process may run several)
    if not debug:
        quiet_float_warnings()


#: NumPy's floating-point warnings (any thread): a diverging run overflows on the way
#: to the NaN loss that the loop reports as one error (exit 5)
FLOAT_WARNINGS = r"(overflow|invalid value|divide by zero|underflow) encountered"


def quiet_float_warnings():
    """Silence NumPy's overflow/invalid-value warnings for this process: they point into
    trainer's internals and come before the one message the run ends with (a NaN loss
    is exit 5 with the checkpoint kept). ``--debug`` keeps them."""
    import warnings

    warnings.filterwarnings("ignore", message=FLOAT_WARNINGS, category=RuntimeWarning)


def _gate_items(cfg, cli_expect):
    from trainer import gates

    expect = dict(cfg.get("expect") or {})
    expect.update(gates.parse_cli(cli_expect))
    return expect


def _json_output(as_json, log_format):
    """Machine output owns stdout: human output moves to stderr."""
    from trainer import console, events

    console.use_stderr(as_json or log_format == "jsonl")
    if log_format == "jsonl":
        events.open_sink(sys.stdout)


EXPECT_HELP = "A gate like 'val_accuracy>=0.9' (repeatable); not met → exit 4."
LOG_FORMAT = click.option("--log-format", type=click.Choice(["text", "jsonl"]), default="text",
                          help="jsonl: stream events as JSON lines on stdout.")


@main.command(epilog="""\b
Examples:
  trainer fit configs/quickstart.yaml
  trainer fit configs/quickstart.yaml --set fit.epochs=5 --expect 'val_accuracy>=0.9'
  trainer fit configs/quickstart.yaml --json --run-dir runs/ci
  trainer fit --resume runs/quickstart-20261126-101500 --set fit.epochs=50""")
@click.argument("config_path", metavar="[CONFIG]", required=False,
                type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config value (repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Write the run here.")
@click.option("--resume", "resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last checkpoint, exactly as if it "
                   "had never stopped (config: RUN_DIR/config.yaml unless CONFIG is given).")
@click.option("--force", is_flag=True,
              help="With --resume: accept config changes beyond the safe ones "
                   "(fit.epochs, verbose, expect, logging callbacks).")
@click.option("--expect", "cli_expect", multiple=True, metavar="GATE", help=EXPECT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result on stdout.")
@LOG_FORMAT
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def fit(config_path, overrides, run_dir, resume, force, cli_expect, as_json, log_format, quiet):
    """Train the model of CONFIG; write the run folder; check `expect:` gates. With
    --resume, continue a stopped run."""
    from trainer import api, events, gates
    from trainer.callbacks.events import EventLogger
    from trainer.errors import ConfigError, GateError
    from trainer.resume import sigterm_as_interrupt

    _json_output(as_json, log_format)
    if resume is None and config_path is None:
        raise ConfigError("fit needs a CONFIG file (or --resume RUN_DIR)")
    if resume is not None and run_dir is not None:
        raise ConfigError("--run-dir and --resume exclude each other: a resumed run "
                          "continues in its own folder")
    if force and resume is None:
        raise ConfigError("--force only applies with --resume")
    if config_path is not None:
        cfg = api.load_config(config_path, overrides)
    else:
        cfg = api.load_run_config(resume, overrides)
    expect = _gate_items(cfg, cli_expect)
    events.emit("run_started", config=str(config_path or resume), resume=resume is not None)
    try:
        with sigterm_as_interrupt():
            run, logs = api.fit(cfg, run_dir=run_dir, verbose=0 if quiet else None,
                                resume=resume, force=force, callbacks=[EventLogger()])
    except Exception as exc:
        events.emit("error", message=str(exc), exit_code=getattr(exc, "exit_code", 1))
        raise
    result = {"run_dir": str(run.path), "metrics": logs}
    try:
        result["gates"] = gates.evaluate_and_report(expect, logs, run.path)
    except GateError as exc:
        result["gates"] = exc.results
        if as_json:
            click.echo(json.dumps({**result, "error": str(exc), "exit_code": exc.exit_code}))
        events.emit("error", message=str(exc), exit_code=exc.exit_code)
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    events.emit("run_finished", run_dir=str(run.path), metrics=logs)
    if as_json:
        click.echo(json.dumps(result))
    elif not quiet:
        from trainer.plot import read_history, terminal_chart

        losses = [v for _, v in read_history(run.path).get("loss", [])]
        for line in terminal_chart(losses) if len(losses) > 1 else []:
            click.echo(line, err=log_format == "jsonl")
        click.echo(f"run saved to {run.path}", err=log_format == "jsonl")


@main.command(epilog="""\b
Examples:
  trainer evaluate runs/quickstart-20261126-101500 --json
  trainer evaluate configs/quickstart.yaml --checkpoint best.h5 --expect 'accuracy>=0.9'
  trainer evaluate runs/quickstart-20261126-101500 --data holdout.npz""")
@click.argument("target", metavar="CONFIG|RUN", type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights to evaluate.")
@click.option("--data", metavar="SPLIT|FILE",
              help="Evaluate on this split of the config's data (train, validation, test) "
                   "or on a data file read like data.test (same array names). Default: "
                   "test, else validation.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--expect", "cli_expect", multiple=True, metavar="GATE", help=EXPECT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def evaluate(target, checkpoint, data, overrides, cli_expect, as_json):
    """Loss and metrics of a run (or CONFIG with --checkpoint) on its test data.

    Gates named `val_<metric>` are checked against the evaluated split's <metric>."""
    from pathlib import Path

    from trainer import api, console, gates

    console.use_stderr(as_json)
    results = api.evaluate(target, checkpoint, overrides, data=data)
    cfg = api.load_run_config(target, overrides) if Path(target).is_dir() else \
        api.load_config(Path(target), overrides)
    expect = {(k[4:] if k.startswith("val_") and k not in results else k): v
              for k, v in _gate_items(cfg, cli_expect).items()}
    if as_json:
        click.echo(json.dumps(results))
    else:
        from rich.table import Table

        table = Table("metric", "value")
        for k, v in results.items():
            table.add_row(k, f"{v:.6g}")
        console.console().print(table)
    gates.check(expect, results)


@main.command(epilog="\b\nExample:\n  trainer summary configs/quickstart.yaml")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@handle_errors
def summary(config_path, overrides):
    """Print the model table (layers, output shapes, parameter counts)."""
    from trainer import api, console
    from trainer.data.pipeline import make_preprocessor
    from trainer.summary import render

    cfg = api.load_config(config_path, overrides)
    model = api.build(cfg)
    render(model, console.console(), preprocessor=make_preprocessor(
        cfg, model.input_names, model.output_names))


@main.command(epilog="""\b
Examples:
  trainer validate configs/quickstart.yaml
  trainer validate configs/*.yaml --format github    # annotations in GitHub Actions""")
@click.argument("config_paths", metavar="CONFIG...", nargs=-1, required=True,
                type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--format", "fmt", type=click.Choice(["text", "github"]), default="text")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def validate(config_paths, overrides, fmt, as_json):
    """Check configs: schema, dry build with shape inference, and checks that read no
    data (loss vs output, labels vs loss, metric k, callback monitors, gates)."""
    from trainer.lint import lint_file

    report, failed = [], False
    for path in config_paths:
        problems, _ = lint_file(path, overrides)
        failed |= any(p.severity == "error" for p in problems)
        report.append({"config": path, "valid": not any(p.severity == "error"
                                                         for p in problems),
                       "problems": [p.as_dict() for p in problems]})
        if as_json:
            continue
        for p in problems:
            click.echo(p.github() if fmt == "github" else p.text())
        if not problems:
            click.echo(f"{path}: valid")
    if as_json:
        click.echo(json.dumps(report[0] if len(report) == 1 else report))
    if failed:
        sys.exit(2)


@main.command(epilog="""\b
Example:
  trainer predict runs/quickstart-20261126-101500 --input new.npy --output preds.csv""")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npy, .npz (arrays by input name) or .csv")
@click.option("--output", "output_path", type=click.Path(dir_okay=False),
              help=".npy, .npz or .csv (default: print a summary)")
@click.option("--checkpoint", type=click.Path(dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1),
              help="rows per batch (default: the fit batch size, raised up to 1024 rows "
                   "while a batch's inputs stay under 32 MB)")
@handle_errors
def predict(run_dir, input_path, output_path, checkpoint, batch_size):
    """Predict with a run's model; inputs get the run's preprocessing."""
    from trainer.predict import predict as run_predict

    outputs, names = run_predict(run_dir, input_path, output_path, batch_size, checkpoint)
    for name, out in zip(names, outputs):
        click.echo(f"{name}: {out.shape[0]} predictions of shape {out.shape[1:]}"
                   + (f" → {output_path}" if output_path else ""), err=output_path is None)
    if output_path is None:
        import numpy as np

        with np.printoptions(precision=4, suppress=True, threshold=50):
            for out in outputs:
                click.echo(str(out))


@main.command(epilog="""\b
Example:
  trainer plot runs/quickstart-20261126-101500 runs/other -o curves.png""")
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", default="curves.png", show_default=True,
              type=click.Path(dir_okay=False))
@handle_errors
def plot(run_dirs, output):
    """Loss and metric curves of one or several runs (or a sweep folder) in one PNG."""
    from trainer.plot import plot_runs

    click.echo(f"wrote {plot_runs(run_dirs, output)}")


@main.command(epilog="""\b
Examples:
  trainer sweep sweeps/lr.yaml --workers 2
  trainer sweep sweeps/lr.yaml --shard 1/4        # one job of a 4-job CI matrix
  trainer sweep sweeps/lr.yaml --status""")
@click.argument("sweep_path", metavar="SWEEP", type=click.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials run in parallel processes (threads per worker are divided).")
@click.option("--shard", "shard_spec", metavar="i/N", help="Run only this share of the trials.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed trial.")
@click.option("--status", "only_status", is_flag=True, help="Report progress; run nothing.")
@click.option("--runs-root", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def sweep(sweep_path, workers, shard_spec, fail_fast, only_status, runs_root, as_json):
    """Run a grid or random search over config keys; resumable; ranked results."""
    from trainer import console
    from trainer.sweeps import api as sweeps
    from trainer.sweeps.summary import render

    console.use_stderr(as_json)
    out = console.console()

    def progress(trial, status, metrics, error):
        metric = sweep_cfg_metric[0]
        value = metrics.get(metric)
        note = f"{metric}={value:.4f}" if isinstance(value, float) else (error or status)
        from rich.markup import escape

        out.print(escape(f"trial {trial.id} seed {trial.seed} [{trial.label()}]: {status} "
                         f"{note}"))

    sweep_cfg_metric = ["val_loss"]
    if only_status:
        spec_, rows, table = sweeps.status(sweep_path, runs_root)
    else:
        from trainer.sweeps.spec import load
        sweep_cfg_metric[0] = load(sweep_path)["metric"]
        spec_, rows, table = sweeps.run(sweep_path, workers, shard_spec, fail_fast, runs_root,
                                        progress)
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if as_json:
        click.echo(json.dumps({"sweep": spec_.name, "counts": counts, "ranking": table,
                               "trials": rows}, default=str))
    else:
        out.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        if table:
            render(spec_, table, out)
    if not only_status:
        if any(r["status"] == "failed" for r in rows) and fail_fast:
            raise SystemExit(1)
        sweeps.check_gates(spec_, table)


@main.command(epilog="""\b
Examples:
  trainer export runs/quickstart-20261126-101500 model.keras    # Keras 3
  trainer export runs/quickstart-20261126-101500 --format keras-h5 model.h5
  trainer export runs/quickstart-20261126-101500 model.json     # the architecture only
  trainer export runs/quickstart-20261126-101500 model.onnx --with-preprocessing
  trainer export configs/quickstart.yaml model.onnx             # untrained or imported""")
@click.argument("run_dir", metavar="RUN|CONFIG", type=click.Path(exists=True))
@click.argument("output", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["keras", "keras-h5", "keras-json", "onnx"]),
              help="Default: from OUT's suffix (.keras → keras, .h5 → keras-h5, .json → "
                   "keras-json, .onnx → onnx).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Weights to export.")
@click.option("--with-preprocessing", is_flag=True,
              help="ONNX: put the run's preprocessing steps in front of the graph.")
@handle_errors
def export(run_dir, output, fmt, checkpoint, with_preprocessing):
    """Write a run's model as Keras files (a Keras 3 .keras archive, an .h5 that
    Keras 2's (and 3's) load_model reads, or the to_json() architecture) or as ONNX
    (also a CONFIG's model: imported or untrained)."""
    from pathlib import Path

    if fmt == "onnx" or (fmt is None and Path(output).suffix.lower() == ".onnx"):
        from trainer.onnx_export import export_onnx

        click.echo(f"wrote {export_onnx(run_dir, output, checkpoint, with_preprocessing)}")
        return
    from trainer.keras_io.export import export_run

    click.echo(f"wrote {export_run(run_dir, output, fmt, checkpoint)}")


@main.command(epilog="\b\nExample:\n  trainer schema > config.schema.json")
@click.option("--sweep", "of_sweep", is_flag=True, help="The schema of sweep files instead.")
def schema(of_sweep):
    """Print the JSON Schema of the config language (or of sweep files)."""
    from trainer.schema import schema_text

    if of_sweep:
        from trainer.sweeps.spec import sweep_schema
        click.echo(json.dumps(sweep_schema(), indent=2))
    else:
        click.echo(schema_text(), nl=False)
