"""``python -m simulations``: list, run and check the README's tables (see tables.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulations.tables import TABLES, compare, readme_block, run_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every table, its commands and wall time")
    for cmd in ("run", "check"):
        s = sub.add_parser(cmd, help="run a table (missing steps only)" if cmd == "run"
                           else "compare the README block with a run's table")
        s.add_argument("table", choices=list(TABLES))
        s.add_argument("--quick", action="store_true", help="the CI-sized version")
        s.add_argument("--out", type=Path, default=None,
                       help="output folder (default: the table's results folder, "
                            "runs/tables/<table>-quick with --quick)")
        if cmd == "run":
            s.add_argument("--jobs", type=int, default=1, help="steps run at once")
            s.add_argument("--fresh", action="store_true",
                           help="rerun steps whose output is already there")
            s.add_argument("--nice", type=int, default=0, help="nice level of the steps")
            s.add_argument("--check", action="store_true",
                           help="then compare with the README block")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for t in TABLES.values():
            print(f"{t.name}  [{t.section}]  full run: {t.wall}")
            print(f"    python -m simulations run {t.name}            # {len(t.steps)} steps,"
                  f" seeds {list(t.seeds)}")
            print(f"    python -m simulations run {t.name} --quick    # "
                  f"{len(t.quick_steps)} short steps")
        return 0
    table = TABLES[args.table]
    out = args.out or (Path("runs/tables") / f"{args.table}-quick" if args.quick
                       else Path(table.out))
    if args.cmd == "run":
        run_table(args.table, args.quick, out, jobs=args.jobs, fresh=args.fresh,
                  nice=args.nice)
        print((out / table.table_name).read_text())
        if not args.check:
            return 0
    got = out / table.table_name
    if not got.exists():
        print(f"{got}: not there; run `python -m simulations run {args.table}"
              f"{' --quick' if args.quick else ''} --out {out}` first", file=sys.stderr)
        return 2
    problems = compare(args.table, readme_block(args.table, args.quick), got.read_text())
    for line in problems:
        print(line)
    print(f"{args.table}: README {'differs from' if problems else 'matches'} {got}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
