"""The `rlhf-stack` command: run, validate, status, report, serve-rm, score-rm, submit."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from rlhf_stack.app.doctor import doctor_report, print_report
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.app.report import write_report
from rlhf_stack.app.runner import print_status, run_recipe
from rlhf_stack.app.submit import submit_recipe
from rlhf_stack.core.errors import RlhfStackError
from stages import STAGE_NAMES
from stages.s3_ppo.serve_rm import serve
from stages.s4_evaluate.score_rm import RM_BENCHMARKS, format_breakdown
from stages.s4_evaluate.score_rm import score_rm as run_score_rm

log = logging.getLogger("rlhf_stack")


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("rlhf_stack")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """rlhf-stack: distill reward models from a generative teacher, train policies with them, compare."""
    _setup_logging(verbose)


_set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                           help="Override a recipe value (repeatable), e.g. --set distill.lr=1e-5.")


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@_set_option
def validate(recipe: Path, overrides: tuple[str, ...]) -> None:
    """Check a recipe (schema, cross-section rules, files) without running anything."""
    r = load_recipe(recipe, overrides)
    click.echo(f"{recipe}: ok ({', '.join(r.sections()) or 'no stages'}; run dir {r.run_path})")


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@_set_option
@click.option("--only", type=click.Choice(STAGE_NAMES), help="Run this stage only.")
@click.option("--from", "from_stage", type=click.Choice(STAGE_NAMES),
              help="Run this stage and the ones after it.")
@click.option("--fresh", is_flag=True, help="Rerun the selected stages even if their outputs are current.")
@click.option("--dry-run", is_flag=True, help="Prepare the selected stages' launch plans; publish nothing.")
@click.option("--rebuild-corrupt", is_flag=True,
              help="Rebuild finished folders whose files changed after they were published (else the run stops).")
def run(recipe: Path, overrides: tuple[str, ...], only: str | None, from_stage: str | None, fresh: bool,
        dry_run: bool, rebuild_corrupt: bool) -> None:
    """Run a recipe's stages in order, skipping those whose outputs are current.

    Holds the run folder's lock: a second `run` on the same folder exits with code 2.
    """
    run_recipe(recipe, overrides, only=only, from_stage=from_stage, fresh=fresh, dry_run=dry_run,
               rebuild_corrupt=rebuild_corrupt)


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path), required=False)
@_set_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(recipe: Path | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """The machine, versions, a 10-second compute probe; with RECIPE, each stage's precision and threads."""
    print_report(doctor_report(recipe, overrides), as_json)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--verify", is_flag=True,
              help="Check every finished folder's files against its manifest; exit 1 if one is corrupt.")
def status(run_dir: Path, verify: bool) -> None:
    """Show each stage folder of a run: done, stale, partial, missing (or corrupt, with --verify)."""
    print_status(run_dir, verify=verify)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def report(run_dir: Path) -> None:
    """Write RUN_DIR/report/report.md and its plots, and print the comparison table."""
    click.echo(write_report(run_dir).read_text())


@cli.command("serve-rm")
@click.argument("checkpoint", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address; 0.0.0.0 exposes it to the network.")
@click.option("--max-batch", type=int, default=16, show_default=True, help="Requests scored in one forward pass.")
def serve_rm(checkpoint: Path, port: int, host: str, max_batch: int) -> None:
    """Serve a reward model over HTTP in OpenRLHF's remote-RM schema."""
    serve(checkpoint, host=host, port=port, max_batch=max_batch)


@cli.command("score-rm")
@click.argument("model")
@click.option("--benchmark", required=True, type=click.Choice(RM_BENCHMARKS))
@click.option("--data", required=True, help="Hub dataset id, or a local file or folder of the official files.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Write the breakdown as JSON (per-item rewards beside it).")
@click.option("--split", help="Split to read (default: the benchmark's official one).")
@click.option("--file", "file_", help="Read only this file of a hub dataset (e.g. total_dataset.json).")
@click.option("--max-items", type=int, help="Score this many items, round-robin over subsets (a smoke test).")
@click.option("--max-length", type=int, help="Longest sequence in tokens (default: the model's context).")
@click.option("--tokens-per-batch", type=int, default=16384, show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float32"]), default="auto", show_default=True)
def score_rm(model: str, benchmark: str, data: str, out: Path | None, split: str | None, file_: str | None,
             max_items: int | None, max_length: int | None, tokens_per_batch: int, dtype: str) -> None:
    """Score MODEL (a sequence-classification RM folder or hub id) on an RM benchmark, as its official code does."""
    result = run_score_rm(model, benchmark, data, out=out, split=split, file=file_, max_items=max_items,
                          max_length_tokens=max_length, tokens_per_batch=tokens_per_batch, dtype=dtype)
    click.echo(format_breakdown(benchmark, result))


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@_set_option
@click.option("--address", required=True, help="Ray dashboard address of the cluster, e.g. http://HEAD:8265.")
@click.option("--no-follow", is_flag=True, help="Print the job id and return without following its logs.")
def submit(recipe: Path, overrides: tuple[str, ...], address: str, no_follow: bool) -> None:
    """Submit the whole pipeline of RECIPE to a Ray cluster as a Ray job and follow its logs."""
    submit_recipe(recipe, overrides, address=address, follow=not no_follow)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a bad recipe or a run folder another run is writing)."""
    try:
        cli.main(args=argv, prog_name="rlhf-stack", standalone_mode=False)
    except RlhfStackError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
