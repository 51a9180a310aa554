"""Component diagnostics of a trained SSR-Net: which heads carry the input dependence, and what each part is worth.

For every stage k it reports how often each p and η unit is active, whether p^(k) and η^(k) are constant over the
inputs, the stage's additive share of the age

    c_k = V · Σ_i p_i^(k) (i + λ_local η_i^(k)) / Π_{j≤k} s_j (1 + λ_d Δ_j)     (Σ_k c_k = the predicted age)

and Δ_k's spread; then it re-reads the same heads under evaluation-time ablations (Δ off, η off, both off, one stage
dropped) and scores each against the ages, or against the full model's predictions when no ages are given.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from tabulate import tabulate

from ssr_jax import saved_model
from ssr_jax.ssr import ssr_age

ACTIVE_ETA = 1e-6  # |η| above this counts as active (tanh is exactly 0 only for a zero pre-activation)
CONSTANT_STD = 1e-6  # a head whose every unit varies less than this across inputs is input-independent


def stage_contributions(p, eta, delta, *, stages, v, lambda_local, lambda_d) -> np.ndarray:
    """`[K, N]` additive stage shares c_k of the SSR age: `ssr_jax.ssr.ssr_age`'s per-stage terms (Eq. 7).

    p, eta: K arrays `[N, s_k]`; delta: K arrays `[N]`.
    """
    as_arrays = lambda arrays: [jnp.asarray(a, jnp.float32) for a in arrays]  # noqa: E731
    return np.asarray(ssr_age(as_arrays(p), as_arrays(eta), as_arrays(delta), stages=stages, v=v,
                              lambda_local=lambda_local, lambda_d=lambda_d, per_stage=True), np.float64)


def compute_heads(config, variables, images: np.ndarray, batch_size: int = 256) -> dict[str, list[np.ndarray]]:
    """Evaluation-mode heads for uint8 images `[N, H, W, 3]`: p, eta K × `[N, s_k]`, delta K × `[N]`."""
    apply = saved_model.make_apply(config, heads=True)
    chunks = [apply(variables, images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
    heads = jax.tree.map(lambda *parts: np.concatenate([np.asarray(part) for part in parts]), *chunks)
    return {name: list(heads[name]) for name in ("p", "eta", "delta")}


def stage_report(k: int, s_k: int, p: np.ndarray, eta: np.ndarray, delta: np.ndarray,
                 contribution: np.ndarray) -> dict:
    """Activity, constancy and contribution statistics of stage k (p, eta `[N, s_k]`, delta, contribution `[N]`)."""
    return {
        "stage": k,
        "bins": s_k,
        "p_active": (p > 0).mean(axis=0).tolist(),
        "eta_active": (np.abs(eta) > ACTIVE_ETA).mean(axis=0).tolist(),
        "p_mean": p.mean(axis=0).tolist(),
        "eta_mean": eta.mean(axis=0).tolist(),
        "p_constant": bool(p.std(axis=0).max() < CONSTANT_STD),
        "eta_constant": bool(eta.std(axis=0).max() < CONSTANT_STD),
        "contribution_mean": float(contribution.mean()),
        "contribution_std": float(contribution.std()),
        "delta_mean": float(delta.mean()),
        "delta_std": float(delta.std()),
    }


def ablation_predictions(heads: dict, *, stages, v, lambda_local, lambda_d) -> dict[str, np.ndarray]:
    """Predictions `[N]` per evaluation-time ablation, the full model first."""
    contributions = lambda ll, ld: stage_contributions(  # noqa: E731
        heads["p"], heads["eta"], heads["delta"], stages=stages, v=v, lambda_local=ll, lambda_d=ld)
    full = contributions(lambda_local, lambda_d)
    predictions = {
        "full": full.sum(axis=0),
        "delta off (λ_d=0)": contributions(lambda_local, 0.0).sum(axis=0),
        "eta off (λ_local=0)": contributions(0.0, lambda_d).sum(axis=0),
        "delta and eta off": contributions(0.0, 0.0).sum(axis=0),
    }
    for k in range(len(stages)):
        # Removing c_k keeps the later stages' denominators, which still include stage k's s_k (1 + λ_d Δ_k).
        predictions[f"stage {k + 1} dropped"] = full.sum(axis=0) - full[k]
    return predictions


def inspect(model_dir: str | os.PathLike, images: np.ndarray, ages: np.ndarray | None = None) -> dict:
    """Diagnostics of the model in `model_dir` on uint8 BGR images `[N, H, W, 3]` (optional int ages `[N]`).

    Returns a JSON-ready dict: `stages` (one `stage_report` per stage), `ablations` (name, mean and std of the
    prediction, `mae` — None without ages — and `mean_abs_change` vs the full model), `predictions` (per ablation,
    `[N]`) and the settings it used (`bins`, `v`, `lambda_local`, `lambda_d`).
    """
    config, variables = saved_model.load(model_dir)
    if config.model.head != "ssr":
        raise ValueError(f"{model_dir} has the {config.model.head!r} head; inspect reads the SSR readout's heads")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (config.data.image_size, config.data.image_size, 3) or not len(images):
        raise ValueError(f"images must be [N, {config.data.image_size}, {config.data.image_size}, 3] with N >= 1, "
                         f"got {images.shape}")
    if ages is not None and np.shape(ages) != (len(images),):
        raise ValueError(f"ages must be [{len(images)}] to match the images, got shape {np.shape(ages)}")
    settings = dict(stages=tuple(config.model.stages), v=float(config.model.v),
                    lambda_local=float(config.model.lambda_local), lambda_d=float(config.model.lambda_d))
    heads = compute_heads(config, variables, images)
    contributions = stage_contributions(heads["p"], heads["eta"], heads["delta"], **settings)
    predictions = ablation_predictions(heads, **settings)
    full = predictions["full"]
    ablations = [{
        "name": name,
        "mean_prediction": float(prediction.mean()),
        "prediction_std": float(prediction.std()),
        "mae": None if ages is None else float(np.abs(prediction - np.asarray(ages, np.float64)).mean()),
        "mean_abs_change": float(np.abs(prediction - full).mean()),
    } for name, prediction in predictions.items()]
    return {
        "model_dir": str(model_dir),
        "num_inputs": len(images),
        "bins": list(settings["stages"]),
        "v": settings["v"],
        "lambda_local": settings["lambda_local"],
        "lambda_d": settings["lambda_d"],
        "stages": [stage_report(k + 1, s_k, heads["p"][k], heads["eta"][k], heads["delta"][k], contributions[k])
                   for k, s_k in enumerate(settings["stages"])],
        "ablations": ablations,
        "predictions": {name: prediction.tolist() for name, prediction in predictions.items()},
    }


def _fractions(values) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def format_table(result: dict) -> str:
    """The per-stage diagnostics and the ablation table as plain text."""
    stage_rows = [[
        row["stage"], row["bins"], _fractions(row["p_active"]), _fractions(row["eta_active"]),
        "yes" if row["p_constant"] else "no", "yes" if row["eta_constant"] else "no",
        f"{row['contribution_mean']:.2f} ± {row['contribution_std']:.2f}",
        f"{row['delta_mean']:+.3f} ± {row['delta_std']:.3f}",
    ] for row in result["stages"]]
    stage_table = tabulate(stage_rows, headers=[
        "stage", "bins", "p active (per unit)", "η active (per unit)", "p const", "η const",
        "contribution (y)", "Δ",
    ])
    has_ages = result["ablations"][0]["mae"] is not None
    ablation_rows = [[row["name"], f"{row['mean_prediction']:.2f} ± {row['prediction_std']:.2f}"]
                     + ([f"{row['mae']:.2f}"] if has_ages else []) + [f"{row['mean_abs_change']:.2f}"]
                     for row in result["ablations"]]
    ablation_table = tabulate(ablation_rows, headers=["evaluation", "age (mean ± std)"]
                              + (["MAE"] if has_ages else []) + ["mean |change| vs full"])
    header = (f"{result['model_dir']}: {result['num_inputs']} inputs, V={result['v']:g}, "
              f"λ_local={result['lambda_local']:g}, λ_d={result['lambda_d']:g}")
    return f"{header}\n\n{stage_table}\n\n{ablation_table}"


def plot(result: dict, png_path: str | os.PathLike) -> None:
    """Two panels: each stage's contribution (mean ± std, years) and each ablation's MAE or mean |change|."""
    # A Figure saved straight to a file, without pyplot: no display needed, the process's backend left alone.
    from matplotlib.figure import Figure

    has_ages = result["ablations"][0]["mae"] is not None
    metric = "mae" if has_ages else "mean_abs_change"
    figure = Figure(figsize=(11, 4))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    stages = result["stages"]
    left.bar([f"stage {row['stage']}" for row in stages], [row["contribution_mean"] for row in stages],
             yerr=[row["contribution_std"] for row in stages], capsize=4, color="tab:blue")
    left.set_ylabel("contribution to age (years)")
    left.set_title("stage contributions (mean ± std)")
    names = [row["name"] for row in result["ablations"]]
    right.barh(names, [row[metric] for row in result["ablations"]], color="tab:orange")
    right.invert_yaxis()
    right.set_xlabel("MAE (years)" if has_ages else "mean |change| vs full model (years)")
    right.set_title("evaluation-time ablations")
    figure.tight_layout()
    figure.savefig(png_path, dpi=120)
