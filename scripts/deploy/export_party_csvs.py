"""Write each party's own columns of a built-in dataset to its own CSV (demo data).

    python scripts/deploy/export_party_csvs.py --dataset digits --out party-data
    -> party-data/party0.csv, party-data/party1.csv (record_id + that party's columns)

In a real federation every party already holds its file; this only stages the demo.
"""

import argparse
from pathlib import Path

from vflgan_app.data.sources import load_dataset


def main() -> None:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--num-parties", type=int, default=2)
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--out", default="party-data")
    a = p.parse_args()
    ds = load_dataset(a.dataset, max_rows=a.max_rows, num_parties=a.num_parties)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for k, t in enumerate(ds.party_tables()):
        t.to_csv(out / f"party{k}.csv", index=False)
        print(f"{out / f'party{k}.csv'}: {len(t)} rows, {t.shape[1] - 1} columns")
    if ds.categorical:
        print("categorical columns:", ",".join(ds.categorical))
    if ds.bounded:
        low, high = next(iter(ds.bounded.values()))
        print(f"bounds for the SuperNodes: BOUNDS={low:g}:{high:g}")


if __name__ == "__main__":
    main()
