"""Markdown tables for the README and weights/MODEL_CARD.md, printed from the JSON that
``facemark eval --json`` and ``facemark bench --json`` wrote, so no number is copied by hand.

    python scripts/tables.py [--eval weights/eval.json] [--bench weights/bench.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def eval_table(evals: dict) -> None:
    subsets = sorted({s for r in evals.values() for s in r["subsets"]}, key=lambda s: (s == "all", s))
    print("| model | subset | faces | missed | NME % | FR@8 % | FR@10 % | AUC@8 | AUC@10 |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for name, r in evals.items():
        for s in subsets:
            m = r["subsets"].get(s)
            if m:
                label = (f"**common ({m['faces']})**" if m["faces"] == 554 else f"**all ({m['faces']})**") if s == "all" else s
                print(f"| {name} | {label} | {m['faces']} | {m['missed']} | {m['nme']:.3f} | {m['fr8']:.2f} | "
                      f"{m['fr10']:.2f} | {m['auc8']:.4f} | {m['auc10']:.4f} |")


def bench_table(bench: dict, evals: dict) -> None:
    rows = bench["rows"]
    batches = sorted({int(b) for r in rows for b in r["throughput"]} - {1})
    print("| stage | model | backend | precision | ms median (b1) | ms p90 | "
          + " | ".join(f"faces/s b{b}" for b in batches) + " | params | GFLOPs | NME % |")
    print("|---|---|---|---|--:|--:|" + "--:|" * len(batches) + "--:|--:|--:|")
    for r in rows:
        tp = [fmt(r["throughput"].get(str(b), r["throughput"].get(b)), ".0f") for b in batches]
        # (eval.json's NME is onnxruntime's, as the bench CLI shows it: on that backend's rows only)
        nme = r.get("nme") or (evals.get(r["model"], {}).get("subsets", {}).get("all", {}).get("nme")
                               if r["backend"] == "onnxruntime-cpu" else None)
        params = f"{r['params'] / 1e6:.2f}M" if r["params"] else "-"
        print(f"| {r['stage']} | {r['model']} | {r['backend']} | {r['precision']} | {fmt(r['latency_ms'], '.2f')} | "
              f"{fmt(r['p90_ms'], '.2f')} | " + " | ".join(tp)
              + f" | {params} | {fmt(r['flops'] and r['flops'] / 1e9, '.2f')} | "
              f"{fmt(nme if r['stage'] == 'landmarks' else None, '.2f')} |")
    m = bench.get("machine", {})
    print(f"\nMachine: {', '.join(f'{k} {v}' for k, v in m.items())}")


def per_ms_table(bench: dict, evals: dict) -> None:
    """Accuracy per millisecond, the issue's rule for the default model: 1 / (NME x whole-frame ms)."""
    rows = {r["model"]: r for r in bench["rows"] if r["stage"] == "pipeline" and r["latency_ms"]}
    lm = {r["model"]: r for r in bench["rows"] if r["stage"] == "landmarks" and r["backend"] == "onnxruntime-cpu"}
    print("| model | NME % | landmarks ms | pipeline ms | 1/(NME·pipeline ms) |")
    print("|---|--:|--:|--:|--:|")
    for name, r in evals.items():
        nme = r["subsets"].get("all", {}).get("nme")
        if nme and name in rows:
            print(f"| {name} | {nme:.3f} | {fmt(lm.get(name, {}).get('latency_ms'), '.2f')} | "
                  f"{rows[name]['latency_ms']:.2f} | {1 / (nme * rows[name]['latency_ms']):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=Path, default=ROOT / "weights" / "eval.json")
    ap.add_argument("--bench", type=Path, default=ROOT / "weights" / "bench.json")
    a = ap.parse_args()
    evals = json.loads(a.eval.read_text()) if a.eval.is_file() else {}
    if evals:
        eval_table(evals)
        print()
    if a.bench.is_file():
        bench = json.loads(a.bench.read_text())
        bench_table(bench, evals)
        if evals:
            print()
            per_ms_table(bench, evals)


if __name__ == "__main__":
    main()
