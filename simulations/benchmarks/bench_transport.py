"""Transport cost of VFLGAN: in-process vs Flower simulation vs loopback deployment.

Same 2-party digits model throughout. Prints, and appends to a CSV (device, commit):

* in-process wall time for N steps (exact algorithm), and for the exact-mode step count;
* Flower simulation (`flwr run .`), exact mode: s/step (goal <= 0.5);
* Flower simulation, chunked K=32 on N steps: wall ratio to in-process (goal <= 1.5);
* loopback deployment with TLS + SuperNode auth through the nginx proxy (the production
  layout; ``--no-tls`` for plain HTTP), one federation per node kind:
  - stock ``flower-supernode``: median s per round trip (exact mode, a few steps);
  - the party node launcher (``scripts/deploy/party_node.py``): median s per round trip
    (goal <= 1.0), exact mode on ``--exact-deploy-steps`` as a ratio to in-process
    (goal <= 10), chunked K=32 on N steps as a ratio to in-process (goal <= 2.0).

Training time is the ServerApp's own ``train_s`` (report.json): it excludes process and
Ray start-up, which are printed separately as ``total wall``. The load average is
printed before and after (the machine is shared).

    python simulations/benchmarks/bench_transport.py --only-deploy [--steps 2000] \
        [--exact-deploy-steps 500] [--no-tls] [--skip-stock] [--device cuda]
"""

import argparse
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "deploy"))
try:  # run as a script: simulations/benchmarks/ is on sys.path
    from summary import goal_met, report
except ImportError:  # imported as simulations.benchmarks.<name>
    from simulations.benchmarks.summary import goal_met, report


def in_process(steps: int, device: str, k: int = 1) -> float:
    import torch

    from vflgan_app.api import build_federation
    from vflgan_app.config import VFLGANConfig
    from vflgan_app.run import prepare_dataset

    torch.set_num_threads(1)
    cfg = VFLGANConfig(dataset="digits", steps=steps, threads=1, progress=False, device=device)
    _, parties = prepare_dataset(cfg)
    model = build_federation(parties, cfg)
    t0 = time.perf_counter()
    model.coordinator.fit(steps, steps_per_round=k)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def flwr_sim(steps: int, k: int, device: str, out: Path) -> dict:
    from flwr_local import run_flwr

    fed = "num-supernodes=2 client-resources-num-cpus=1"
    if device == "cuda":
        fed += " client-resources-num-gpus=0.5"
    rc = (f'steps={steps} flower.steps-per-round={k} flower.evaluate=false '
          f'flower.run-name="sim-k{k}" output-dir="{out}" device="{device}"')
    r = run_flwr(ROOT, rc, federation_config=fed, timeout=1800)
    if not r.ok:
        raise RuntimeError(f"flwr run failed ({r.status}):\n{r.log[-3000:]}")
    rep = json.loads((out / f"sim-k{k}" / "report.json").read_text())
    return {**rep["timings_s"], "wall_s": r.wall_s}


def deploy(runs, out: Path, device: str, tls: bool, launcher: bool) -> dict:
    """``runs`` = [(name, steps, K)] in order on one loopback federation."""
    from loopback import Loopback

    res = {}
    tag = "launcher" if launcher else "stock"
    with Loopback(out / f"fed-{tag}", tls=tls, launcher=launcher) as fed:
        for name, n, kk in runs:
            run = f"deploy-{tag}-{name}"
            rc = (f'steps={n} flower.steps-per-round={kk} flower.evaluate=false '
                  f'flower.run-name="{run}" output-dir="{out}" device="{device}"')
            r = fed.run(rc, timeout=5400)
            if r["status"] != "finished:completed":
                raise RuntimeError(f"deployment run {run} failed ({r['status']}):\n"
                                   f"{r['log'][-3000:]}")
            rep = json.loads((out / run / "report.json").read_text())
            res[name] = {**rep["timings_s"], "wall_s": r["wall_s"]}
    return res


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _sim_rows(a, row, sim, t_in_exact, t_in, out) -> None:
    row("flower sim exact", sim["train_s"] / a.exact_steps, "s/step", "<= 0.5",
        steps=a.exact_steps, round_trips=sim["round_trips"],
        s_per_round_trip=sim["train_s"] / (sim["round_trips"] - 2), total_wall_s=sim["wall_s"],
        in_process_s_per_step=t_in_exact / a.exact_steps)
    sim32 = flwr_sim(a.steps, 32, a.device, out)
    row("flower sim chunked K=32 / in-process", sim32["train_s"] / t_in, "ratio", "<= 1.5",
        train_s=sim32["train_s"], round_trips=sim32["round_trips"],
        total_wall_s=sim32["wall_s"])


def _deploy_rows(a, row, t_in: float, out: Path) -> None:
    kind = "TLS+auth" if a.tls else "HTTP"
    if not a.skip_stock:
        st = deploy([("latency", a.latency_steps, 1)], out, a.device, a.tls, False)["latency"]
        row(f"deploy {kind} stock s/round trip (median)", st["round_trip_median_s"],
            "s/round trip", steps=a.latency_steps, round_trips=st["round_trips"],
            train_s=st["train_s"], total_wall_s=st["wall_s"])
    runs = [("latency", a.launcher_latency_steps, 1)]
    if a.exact_deploy_steps:
        runs.append(("exact", a.exact_deploy_steps, 1))
    runs.append(("chunked", a.steps, 32))
    d = deploy(runs, out, a.device, a.tls, True)
    lat = d["latency"]
    row(f"deploy {kind} launcher s/round trip (median)", lat["round_trip_median_s"],
        "s/round trip", "<= 1.0", steps=a.launcher_latency_steps,
        round_trips=lat["round_trips"], train_s=lat["train_s"], total_wall_s=lat["wall_s"])
    if "exact" in d:
        ex = d["exact"]
        t_ex = in_process(a.exact_deploy_steps, a.device)
        row(f"deploy {kind} launcher exact / in-process", ex["train_s"] / t_ex, "ratio",
            "<= 10", steps=a.exact_deploy_steps, train_s=ex["train_s"], in_process_s=t_ex,
            round_trips=ex["round_trips"], median_s=ex["round_trip_median_s"],
            total_wall_s=ex["wall_s"])
    ch = d["chunked"]
    row(f"deploy {kind} launcher chunked K=32 / in-process", ch["train_s"] / t_in, "ratio",
        "<= 2.0", train_s=ch["train_s"], round_trips=ch["round_trips"],
        median_s=ch["round_trip_median_s"], total_wall_s=ch["wall_s"])


def write_table(rows: list[dict], md: Path, loads: tuple[str, str]) -> None:
    """This run's rows as ``md`` (markdown), ``md.csv`` and ``md.png`` (atomic writes).

    ``steps`` and ``round trips`` are properties of the protocol (what ``simulations
    check`` compares); the values are timings of this machine at this load."""
    from trainkit.checkpoint import atomic_write_text

    head = ["scenario", "steps", "round trips", "value", "unit", "goal", "met", "details"]
    lines = [f"Transport: digits, 2 parties; load {loads[0]} at the start, {loads[1]} at "
             "the end (1, 5, 15 min).", "", "| " + " | ".join(head) + " |",
             "|" + " --- |" * len(head)]
    table = []
    for r in rows:
        extra = json.loads(r["extra"])
        rt = extra.pop("round_trips", None)
        met = {True: "yes", False: "no", None: "-"}[goal_met(r["value"], r["goal"])]
        cells = {"scenario": r["scenario"], "steps": r["steps"],
                 "round trips": "-" if rt is None else rt, "value": f"{r['value']:.3f}",
                 "unit": r["unit"], "goal": r["goal"] or "-", "met": met,
                 "details": ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in extra.items())}
        table.append(cells)
        lines.append("| " + " | ".join(str(cells[h]) for h in head) + " |")
    md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md, "\n".join(lines) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=head, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    atomic_write_text(md.with_suffix(".csv"), buf.getvalue())
    _plot(rows, md.with_suffix(".png"))


def _plot(rows: list[dict], path: Path) -> None:
    """Seconds per round trip (or per step) and the ratios, each beside its goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainkit.checkpoint import atomic_write_bytes

    groups = [[r for r in rows if r["unit"] != "ratio" and r["unit"] != "s"],
              [r for r in rows if r["unit"] == "ratio"]]
    groups = [g for g in groups if g]
    if not groups:
        return
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 3.2), squeeze=False)
    for ax, g in zip(axes[0], groups):
        ax.barh([r["scenario"] for r in g], [r["value"] for r in g], color="tab:blue")
        for i, r in enumerate(g):
            if r["goal"].startswith("<="):
                ax.plot([float(r["goal"][2:])] * 2, [i - 0.4, i + 0.4], "r-")
        ax.set_xscale("log")
        ax.set_xlabel(g[0]["unit"] + " (red: goal)")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="step budget of the ratios")
    p.add_argument("--exact-steps", type=int, default=60, help="steps of the exact-mode sim")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--skip-deploy", action="store_true")
    p.add_argument("--no-tls", dest="tls", action="store_false",
                   help="deployment over plain HTTP (default: TLS + node auth, proxy)")
    p.add_argument("--skip-stock", action="store_true", help="no stock-SuperNode run")
    p.add_argument("--latency-steps", type=int, default=6,
                   help="exact-mode steps of the stock SuperNode's latency run")
    p.add_argument("--launcher-latency-steps", type=int, default=20)
    p.add_argument("--exact-deploy-steps", type=int, default=500,
                   help="exact-mode steps of the launcher's ratio (0: skip)")
    p.add_argument("--only-deploy", action="store_true", help="in-process + deployment only")
    p.add_argument("--csv", default=str(ROOT / "simulations/results/bench_transport.csv"),
                   help="the benchmark's history: this run's rows are appended")
    p.add_argument("--md", default=None,
                   help="also write this run's rows as a table: MD, its .csv and .png")
    a = p.parse_args()
    from trainkit import git_commit

    out = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    rows = []

    def row(scenario, value, unit, goal="", **extra):
        r = {"scenario": scenario, "value": round(value, 4), "unit": unit, "goal": goal,
             "steps": extra.pop("steps", a.steps), "device": a.device,
             "commit": git_commit(ROOT)[:12], "extra": json.dumps(extra)}
        rows.append(r)
        print(f"{scenario:<44} {value:10.3f} {unit:<14} {goal}  {extra}", flush=True)
        if goal:
            report("bench_transport", scenario, value,
                   "in-process, same run" if unit == "ratio" else "-", goal, unit)

    load0 = _load()
    print(f"load average (1, 5, 15 min) at the start: {load0}", flush=True)
    t_in = in_process(a.steps, a.device)
    row("in-process exact", t_in, "s", steps=a.steps, s_per_step=t_in / a.steps)
    if a.only_deploy:
        a.skip_sim = True
    t_in_exact = in_process(a.exact_steps, a.device)
    sim = None if getattr(a, "skip_sim", False) else flwr_sim(a.exact_steps, 1, a.device, out)
    if sim is not None:
        _sim_rows(a, row, sim, t_in_exact, t_in, out)
    if not a.skip_deploy:
        _deploy_rows(a, row, t_in, out)
    load1 = _load()
    print(f"load average (1, 5, 15 min) at the end: {load1}", flush=True)
    path = Path(a.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)
    print(f"appended {len(rows)} rows to {path}")
    if a.md:
        write_table(rows, Path(a.md), (load0, load1))
        print(f"wrote {a.md} (and its .csv, .png)")


if __name__ == "__main__":
    main()
