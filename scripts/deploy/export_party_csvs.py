r"""Write each party's own columns to its own CSV: a built-in dataset, or a joined table.

    python scripts/deploy/export_party_csvs.py --dataset digits --out party-data
    -> party-data/party0.csv, party-data/party1.csv (record_id + that party's columns)

    python scripts/deploy/export_party_csvs.py --csv winequality-red.csv --out wine \\
        --party "fixed acidity,volatile acidity,citric acid,residual sugar,chlorides" \\
        --party "free sulfur dioxide,total sulfur dioxide,density,pH,sulphates,alcohol,quality"
    -> wine/party0.csv, wine/party1.csv

``--csv`` reads any dialect pandas can sniff (the UCI wine files are ``;``-separated).
Without ``--party`` the columns are split into ``--num-parties`` contiguous groups. When
the table has no ``--id-column`` (default ``record_id``), the row number becomes it.

In a real federation every party already holds its file; this only stages a demo, or
a table one organisation holds in full, for a walkthrough on one machine.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def split_columns(columns: list[str], parties: list[str] | None, num_parties: int,
                  id_column: str) -> list[list[str]]:
    """Each party's column names (``--party`` lists, or contiguous groups).

    Raises:
        SystemExit: an unknown, repeated or unassigned column, or fewer than 2 parties.
    """
    data_cols = [c for c in columns if c != id_column]
    if parties:
        groups = [[c.strip() for c in p.split(",") if c.strip()] for p in parties]
        named = [c for g in groups for c in g]
        unknown = [c for c in named if c not in data_cols]
        repeated = sorted({c for c in named if named.count(c) > 1})
        missing = [c for c in data_cols if c not in named]
        for what, cols in (("unknown", unknown), ("repeated", repeated),
                           ("unassigned", missing)):
            if cols:
                sys.exit(f"export_party_csvs.py: --party: {what} column(s) {cols}; expected "
                         f"each of {data_cols} in exactly one --party")
    else:
        groups = [list(g) for g in np.array_split(np.array(data_cols, dtype=object),
                                                  num_parties)]
    if len(groups) < 2 or any(not g for g in groups):
        sys.exit(f"export_party_csvs.py: {len(groups)} parties with columns "
                 f"{[len(g) for g in groups]}; expected at least 2, each with a column")
    return groups


def main() -> None:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default="digits", help="a built-in dataset (default: digits)")
    src.add_argument("--csv", help="a joined table to split instead")
    p.add_argument("--party", action="append", metavar="COLS",
                   help="with --csv: one party's comma-separated columns (repeat per party)")
    p.add_argument("--id-column", default="record_id", help="(default: record_id)")
    p.add_argument("--num-parties", type=int, default=2, help="(default: 2)")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--out", default="party-data", help="(default: party-data)")
    a = p.parse_args()
    out = Path(a.out)
    if a.csv:
        from vflgan_app.data.sources import read_csv_any

        table = read_csv_any(Path(a.csv))
        if a.id_column not in table.columns:
            table.insert(0, a.id_column, np.arange(len(table)))
        if a.max_rows:
            table = table.iloc[: a.max_rows]
        groups = split_columns(list(table.columns), a.party, a.num_parties, a.id_column)
        tables = [table[[a.id_column, *g]] for g in groups]
        cats = []
    else:
        if a.party:
            sys.exit("export_party_csvs.py: --party needs --csv")
        from vflgan_app.data.sources import load_dataset

        ds = load_dataset(a.dataset, max_rows=a.max_rows, num_parties=a.num_parties)
        tables, cats = ds.party_tables(), ds.categorical
    out.mkdir(parents=True, exist_ok=True)
    for k, t in enumerate(tables):
        t.to_csv(out / f"party{k}.csv", index=False)
        print(f"{out / f'party{k}.csv'}: {len(t)} rows, {t.shape[1] - 1} columns")
    if cats:
        print("categorical columns:", ",".join(cats))
    if not a.csv and ds.bounded:
        low, high = next(iter(ds.bounded.values()))
        print(f"bounds for the SuperNodes: BOUNDS={low:g}:{high:g}")


if __name__ == "__main__":
    main()
