"""Re-run the benchmarks behind the committed results, each as it was made.

Every result JSON in ``benchmarks/results/`` records the command that made it and the commit
it ran at. This script runs that command again at that commit (a temporary git worktree), with
its scratch folders under ``--workdir``, and puts the JSON it writes in place of the committed
one, so the figures can be compared (``git diff benchmarks/results``) and the tables remade
(``python benchmarks/tables.py``). ``--here`` runs the commands on the code checked out here
instead: to measure today's code with each result's own settings.

    python benchmarks/rerun.py --list                  # each result: commit, date, command
    python benchmarks/rerun.py live human              # these two, at their commits
    python benchmarks/rerun.py --all                   # all of them, oldest first (`make bench`)
    python benchmarks/rerun.py --here limits           # today's code, limits.json's settings

Results made in the same scratch folder (``/work/bench/verify`` for several) share it again
(``WORKDIR/verify``), oldest first, as when they were made. Several hours for ``--all`` on 2
cores; each result is written as soon as its run ends, so an interrupted ``--all`` can go on
with the names it had not reached.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provenance import RESULTS, ROOT, write_result

PATH_OPTIONS = ("--work", "--workdir")  # scratch folders: mapped under --workdir
JSON_OPTION = "--json"  # where the result went: mapped to its own name in results/


class RerunError(Exception):
    """A result that cannot be re-run as recorded (one line)."""


@dataclass(frozen=True)
class Plan:
    name: str  # the result's file name without .json
    commit: str
    date: str
    recorded: str  # the command as the JSON records it
    argv: list[str]  # the script and its arguments, paths mapped


def plan(path: Path, workdir: Path) -> Plan:
    """How to re-run the result at ``path``: its command with scratch folders under
    ``workdir`` (by their last part) and its ``--json`` written to its own name in results/."""
    name = path.stem
    try:
        result = json.loads(path.read_text())
        commit, date, command = result["commit"], result["date"], result["command"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RerunError(f"{name}: no commit, date and command recorded ({e})") from e
    if result.get("dirty"):
        raise RerunError(f"{name}: made from uncommitted changes to {commit[:12]}; cannot re-run")
    words = shlex.split(command)
    if len(words) < 2 or words[0] != "python" or not words[1].startswith("benchmarks/"):
        raise RerunError(f"{name}: not a benchmark command: {command!r}")
    argv = [words[1]]
    rest = iter(words[2:])
    for word in rest:
        option, eq, value = word.partition("=")
        if option in (*PATH_OPTIONS, JSON_OPTION):
            if not eq:
                value = next(rest, "")
            if option == JSON_OPTION:
                value = f"benchmarks/results/{name}.json"
            else:
                value = str(workdir / Path(value).name)
            argv += [option, value]
        elif word.startswith("/"):
            raise RerunError(f"{name}: a path the command reads cannot be mapped: {word}")
        else:
            argv.append(word)
    return Plan(name, commit, date, command, argv)


WRITES = ("--write", "--write-calibration")  # ship what a run chose: not when measuring --here


def _results(tree: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (tree / "benchmarks" / "results").glob("*.json")}


def _json_written(tree: Path, script_argv: list[str], before: dict[str, bytes]) -> Path:
    """The result JSON the run wrote: one under the tree's results/ that is new or changed
    since ``before``, whose own command is the one that ran."""
    want = " ".join(["python", *script_argv])  # as the scripts record it, but for spacing
    found = []
    for name, data in _results(tree).items():
        if before.get(name) == data:
            continue
        try:
            if " ".join(json.loads(data).get("command", "").split()) == want:
                found.append(tree / "benchmarks" / "results" / name)
        except (ValueError, AttributeError):
            continue
    if len(found) != 1:
        raise RerunError(f"the run wrote {len(found)} result JSONs for {want!r}, not one")
    return found[0]


def rerun(p: Plan, *, here: bool, env: dict[str, str]) -> Path:
    """Run ``p`` (at its commit, or on this checkout) and put its JSON in place of the
    committed one; returns that path. On this checkout, the other results the script may
    write by default are put back as they were, and it ships nothing (no ``--write``)."""
    holder = Path(tempfile.mkdtemp(prefix=f"rerun-{p.name}-"))
    tree = ROOT
    argv = [w for w in p.argv if w not in WRITES] if here else p.argv
    try:
        if not here:
            tree = holder / "tree"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree),
                 p.commit],
                check=True,
            )  # fmt: skip
            # the human-dev recordings are read from ../shared, beside the repository
            if (ROOT.parent / "shared").exists():
                (holder / "shared").symlink_to(ROOT.parent / "shared")
        run_env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [
            str(tree / "src"), env.get("PYTHONPATH", "")])))  # fmt: skip
        print(f"== {p.name}: {'here' if here else p.commit[:12]}: python {shlex.join(argv)}")
        before = _results(tree)
        try:
            subprocess.run([sys.executable, *argv], cwd=tree, env=run_env, check=True)
            written = _json_written(tree, argv, before)
            result = json.loads(written.read_text())
        finally:
            if here:  # what the script wrote besides, as it was
                for name, data in _results(tree).items():
                    if name not in before:
                        (tree / "benchmarks" / "results" / name).unlink()
                    elif before[name] != data:
                        (tree / "benchmarks" / "results" / name).write_bytes(before[name])
        target = RESULTS / f"{p.name}.json"
        write_result(target, result)
        return target
    finally:
        if not here:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(holder / "tree")],
                check=False,
            )
        shutil.rmtree(holder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="results to re-run (file names without .json)")
    ap.add_argument("--all", action="store_true", help="every result, oldest first")
    ap.add_argument("--here", action="store_true", help="run on this checkout, not the commit")
    ap.add_argument("--list", action="store_true", help="list the results and their commands")
    ap.add_argument(
        "--workdir", type=Path, default=ROOT / "bench-work", help="scratch [bench-work]"
    )
    args = ap.parse_args(argv)
    workdir = args.workdir.resolve()
    paths = sorted(RESULTS.glob("*.json"))
    known = {p.stem: p for p in paths}
    if args.names:
        unknown = [n for n in args.names if n.removesuffix(".json") not in known]
        if unknown:
            print(f"error: no such result: {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        paths = [known[n.removesuffix(".json")] for n in args.names]
    elif not (args.all or args.list):
        ap.error("name the results to re-run, or give --all or --list")
    plans, failed = [], 0
    for path in paths:  # one that cannot be re-run is said, the others go on
        try:
            plans.append(plan(path, workdir))
        except RerunError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    plans.sort(key=lambda p: p.date)
    if args.list:
        for p in plans:
            print(f"{p.name:28} {p.commit[:12]} {p.date}  {p.recorded}")
        return 2 if failed else 0
    for p in plans:
        try:
            print(f"-> {rerun(p, here=args.here, env=dict(os.environ))}")
        except (RerunError, subprocess.CalledProcessError) as e:
            print(f"error: {p.name}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
