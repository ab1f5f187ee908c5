"""A complete output root for report tests, built through the typed result models and the real final stage.

``evaluated_tree`` (real tiny TFLite files evaluated on the prepared sample) plus what the training stages
leave (history, per-layer sparsity, confusion matrices, latency, sizes), the real ``final.build_final``
(selection, model card, checksums), and optionally a ``stats.json`` in the agreed shape and an OOD block.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import results_tree
from trashnet.stages import final
from trashnet.core import config, profiles, records, settings
from trashnet.data import prepare
from trashnet.stages import stats as trashnet_stats

_BUILT: dict[str, Path] = {}


def _enrich(folder: Path, *, accuracy: float, gzip_bytes: int, history: bool = False, pruned: bool = False,
            ood: bool = False) -> None:
    """A baseline/pruned stand-in's metrics.json gets what the real training stage writes."""
    record = records.read_metrics(folder)
    rng = np.random.default_rng(len(record.variant))
    classes = list(results_tree.CLASSES)
    matrix = (np.eye(len(classes), dtype=int) * 12 + rng.integers(0, 3, (len(classes), len(classes)))).tolist()
    record.test = records.TestMetrics(
        n=int(np.sum(matrix)), accuracy=accuracy, macro_f1=round(accuracy - 0.012, 4), confusion_matrix=matrix,
        per_class={c: records.ClassScores(precision=0.7 + 0.02 * i, recall=0.8 - 0.03 * i, f1=0.75 - 0.01 * i,
                                          support=int(sum(matrix[i]))) for i, c in enumerate(classes)})
    record.size = records.Size(file=f"{record.variant}.keras", raw_bytes=gzip_bytes + 1_234_567, gzip_bytes=gzip_bytes)
    record.params, record.macs = 2_996_352, 66_000_000
    record.nonzero_params = 1_600_000 if pruned else record.params
    record.train_time_s = 1234.5
    record.latency_ms = {"keras_batch1": records.Latency(median=12.3456, p90=13.0, mean=12.5, runs=30)}
    record.provenance = {**record.provenance, "config": config.config_to_dict(
        profiles.load_variants(profiles.load_profile("quick"))[record.variant])}
    if pruned:
        record.sparsity = {"method": "2of4", "total": {"sparsity": 0.4712},
                           "layers": {f"conv_{i}": {"kind": "Conv2D", "weights": 1000 * i, "sparsity": 0.5,
                                                    "pruned": True} for i in range(1, 6)}
                           | {"stem": {"kind": "Conv2D", "weights": 432, "sparsity": 0.0, "pruned": False,
                                       "reason": "3 input channels"}}}
        record.dense_baseline = {"accuracy_delta_pp": -0.93, "tflite_gzip_reduction_pct": 43.2}
        record.sizes = {"tflite": records.Size(file=f"{record.variant}.tflite", raw_bytes=5_900_000,
                                               gzip_bytes=3_100_000)}
    if ood:
        record.ood = records.OOD(dataset="ood-dev", n=355, accuracy=0.1887, macro_f1=0.1523,
                                 class_map={"bottle": "plastic"})
    records.write_metrics(folder, record)
    if history:
        rows = ["epoch,phase,loss,accuracy,val_loss,val_accuracy"]
        rows += [f"{e},scratch,{2 / e:.4f},{0.2 + 0.05 * e:.4f},{2.1 / e:.4f},{0.18 + 0.05 * e:.4f}"
                 for e in range(1, 9)]
        (folder / settings.HISTORY_FILE).write_text("\n".join(rows) + "\n")


STATS = {
    "method": {"bootstrap": "percentile", "test": "mcnemar-exact", "correction": "holm"},  # trashnet.stages.stats' shape
    "intervals": [{"variant": "mobilenet_v3_large", "metric": "accuracy", "estimate": 0.8, "low": 0.76,
                   "high": 0.84, "confidence": 0.95, "method": "bootstrap", "resamples": 2000, "seed": 42, "n": 430}],
    "comparisons": [{"family": "pruned_vs_dense", "a": "mobilenet_v3_large.prune-2of4", "b": "mobilenet_v3_large",
                     "diff_pp": -0.93, "low_pp": -2.1, "high_pp": 0.3, "n": 430, "a_only_correct": 5,
                     "b_only_correct": 9, "p_value": 0.424, "p_holm": 0.848, "significant": False,
                     "method": "percentile"}],
    "seeds": [{"variant": "mobilenet_v3_large", "seeds": [42, 43], "accuracy": [0.79, 0.8], "macro_f1": [0.78, 0.79],
               "mean_accuracy": 0.795, "sd_accuracy": 0.0071, "mean_macro_f1": 0.785, "sd_macro_f1": 0.0071}],
}


def build(tmp_path_factory, *, stats: bool = False, ood: bool = False) -> Path:
    """An output root (``dataset/``, ``models/``) with a final model; cached per variant of the options."""
    key = f"{tmp_path_factory.getbasetemp()}-{stats}-{ood}"
    if key not in _BUILT:
        root = tmp_path_factory.mktemp("report-tree")
        layout = settings.Layout(root, "quick")
        prepare.prepare(settings.SAMPLE_DIR, layout.dataset, split="stratified", seed=42)
        results_tree.evaluated_tree(layout.models, layout.dataset)
        _enrich(layout.variant_dir("train", "mobilenet_v3_large"), accuracy=0.8023, gzip_bytes=10_000_000,
                history=True, ood=ood)
        _enrich(layout.variant_dir("prune", "mobilenet_v3_large.prune-2of4"), accuracy=0.7930,
                gzip_bytes=5_000_000, history=True, pruned=True)
        final_cfg = profiles.load_variants(profiles.load_profile("quick"))["final"]
        final_dir = layout.variant_dir("final", "final")
        final.build_final(final_cfg, dataset_dir=layout.dataset, models_dir=layout.models, output_dir=final_dir)
        results_tree.mark_finished(final_dir)
        if stats:  # a fuller record than the tiny tree gives (seeds too), through trashnet.stages.stats' model
            trashnet_stats.write_stats(trashnet_stats.StatsFile.model_validate(STATS), final_dir)
        else:  # statistics not run
            (final_dir / settings.STATS_FILE).unlink(missing_ok=True)
        _BUILT[key] = root
    return _BUILT[key]


def copy(root: Path, target: Path) -> Path:
    shutil.copytree(root, target)
    return target


__all__ = ["build", "copy", "STATS", "evaluate"]
