"""`make demo`: SSR-Net (3,3,3) and DEX trained on the same synthetic faces with a short schedule, one table.

`ssr-jax demo` passes `configs/ssrnet.py:demo` and `configs/dex.py:demo` (same data, backbone and recipe; only the
head and readout differ). Each run is an ordinary resumable workdir under `WORKDIR/<model>/`, so a second `make demo` prints
the table again without retraining. The table is written to `WORKDIR/results.md` and `WORKDIR/results.json`.
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import ml_collections
import tabulate

from ssr_jax import validation, workdir as workdir_lib
from ssr_jax.data import load_splits
from ssr_jax.train import train_and_evaluate

COLUMNS = ("model", "parameters", "size (KB)", "MAE", "CA(3)", "CA(5)", "train time (s)")


def table_rows(results: list[tuple[str, dict]]) -> list[list]:
    """One row per trained model plus the predict-the-mean reference line."""
    rows = [
        [name, f"{s['params']:,}", f"{s['model_bytes'] / 1024:.1f}", f"{s['mae']:.2f}", f"{s['ca3']:.3f}",
         f"{s['ca5']:.3f}", f"{s['wall_s']:.0f}"]
        for name, s in results
    ]
    mean_mae = results[0][1]["mean_predictor_mae"]
    rows.append(["predict the mean (reference)", "0", "0", f"{mean_mae:.2f}", "", "", ""])
    return rows


def main(workdir: str | pathlib.Path,
         configs: Sequence[tuple[str, str, ml_collections.ConfigDict]]) -> list[tuple[str, dict]]:
    """Trains each (table name, subdirectory, config) in `workdir/<subdirectory>` on one dataset; returns
    (name, summary) pairs in order."""
    workdir = workdir_lib.prepare(workdir)
    for _, _, config in configs:
        validation.validate(config)
    data_configs = {repr(config.data.to_dict()) for _, _, config in configs}
    assert len(data_configs) == 1, "the demo compares models on one dataset"
    splits = load_splits(configs[0][2].data)
    print(f"synthetic faces: {len(splits[0]['age'])} train / {len(splits[1]['age'])} test, "
          f"{configs[0][2].train.epochs} epochs, batch {configs[0][2].train.batch_size}", flush=True)

    results = []
    for name, slug, config in configs:
        print(f"training {name} → {workdir / slug}", flush=True)
        results.append((name, train_and_evaluate(config, workdir / slug, splits=splits)))

    table = tabulate.tabulate(table_rows(results), headers=COLUMNS, tablefmt="github")
    print("\n" + table)
    workdir_lib.write_text_atomic(workdir / "results.md", table + "\n")
    workdir_lib.write_json(workdir / "results.json", {slug: summary for (_, summary), (_, slug, _) in
                                                      zip(results, configs)})
    print(f"\nwritten: {workdir / 'results.md'}, {workdir / 'results.json'}")
    return results
