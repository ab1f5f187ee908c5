"""The pruning stage: tfmot magnitude pruning of a trained baseline, verified and measured.

Three recipes (``PruneConfig.method``):

``2of4``
    Structured 2:4 sparsity (``sparsity_m_by_n=(2, 4)``): in every block of 4 consecutive input channels of
    a Conv2D / Dense kernel at most 2 weights are non-zero. tfmot sets the 2:4 mask once, at the first
    training step, from the weights' magnitudes; the fine-tuning epochs then recover accuracy under that
    fixed mask (``begin_fraction`` / ``end_fraction`` do not apply). The stem (3 input channels) cannot
    hold 2:4 blocks and is left dense.
``unstructured``
    Magnitude pruning with a ``PolynomialDecay`` schedule from 0 to ``target_sparsity`` between
    ``begin_fraction`` and ``end_fraction`` of the fine-tuning steps, on every Conv2D / Dense kernel.
``xnnpack``
    ``PruneForLatencyOnXNNPack``: only 1x1 convolutions, on a MobileNetV3 rebuilt to meet XNNPack's
    sparse-inference constraints (see ``build_xnnpack_mobilenet_v3``), converted with the TFLite sparse
    format so that LiteRT can, in principle, skip the zeros.

The model is wrapped as a whole with ``prune_low_magnitude(model, pruning_policy=...)``: tfmot wraps only
the layers the policy allows, so the ``Rescaling`` and ``TFOpLambda`` layers that make a plain whole-model
call fail (docs/toolchain-facts.md) are left alone, on all four architectures. DepthwiseConv2D and BatchNormalization are
never pruned (tfmot registers no prunable weight for them).

    result = prune.run_pruning(cfg, dataset_dir=..., source_dir=..., output_dir=..., cache_dir=...)
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any


from trashnet.nets import batchnorm, imagenet, models, scoring, xnnpack
from trashnet.nets.sparsity import (M_BY_N, check_m_by_n, pruning_policy, pruning_wrappers, sparsity_report,
                                     tfmot_sparsity)
from trashnet.core import fileio, records
from trashnet.data import inputs
from trashnet.stages import training
from trashnet.core.config import VariantConfig
from trashnet.core.keras_env import keras, seed_everything, tf

SPARSE_SUFFIX = ".sparse.tflite"  # the same pruned model in TFLite's sparse tensor format


# --- Wrapping, fine-tuning, conversion ------------------------------------------------------------

def _steps(num_train: int, batch_size: int, epochs: int) -> tuple[int, int]:
    per_epoch = max(1, math.ceil(num_train / batch_size))
    return per_epoch, per_epoch * epochs


def pruning_schedule(cfg: VariantConfig, total_steps: int) -> tuple[Any, dict[str, Any]]:
    """The tfmot schedule for ``cfg.prune`` over ``total_steps`` steps, and its parameters (for the record).

    For a decay schedule the mask is updated every ``frequency`` steps from ``begin`` to ``end``, with
    ``end - begin`` a multiple of ``frequency`` so that the last update reaches the target exactly.
    """
    sparsity = tfmot_sparsity()
    if cfg.prune.method == "2of4":
        schedule = sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1)
        return schedule, {"kind": "m_by_n", "m_by_n": list(M_BY_N), "mask_set_at_step": 1}
    begin = min(int(cfg.prune.begin_fraction * total_steps), total_steps - 1)
    end = max(begin + 1, int(cfg.prune.end_fraction * total_steps))
    frequency = max(1, (end - begin) // 20)
    end = begin + frequency * max(1, (end - begin) // frequency)
    schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=cfg.prune.target_sparsity,
                                        begin_step=begin, end_step=end, frequency=frequency)
    return schedule, {"kind": "polynomial_decay", "final_sparsity": cfg.prune.target_sparsity,
                      "begin_step": begin, "end_step": end, "frequency": frequency, "total_steps": total_steps}


def wrap_for_pruning(model: keras.Model, method: str, schedule) -> keras.Model:
    """``prune_low_magnitude`` over the whole model, with a policy that picks the layers to wrap."""
    kwargs = {"pruning_schedule": schedule, "pruning_policy": pruning_policy(method)}
    if method == "2of4":
        kwargs["sparsity_m_by_n"] = M_BY_N
    return tfmot_sparsity().prune_low_magnitude(model, **kwargs)


def soften(probabilities: tf.Tensor, temperature: float) -> tf.Tensor:
    """``softmax(logits / T)`` from softmax outputs: ``log p`` is the logits up to a per-row constant,
    which the softmax cancels (the models end in a softmax layer; clipping keeps log finite)."""
    return tf.nn.softmax(tf.math.log(tf.clip_by_value(probabilities, 1e-7, 1.0)) / temperature, axis=-1)


def distillation_term(student: tf.Tensor, teacher: tf.Tensor, temperature: float,
                      sample_weight: tf.Tensor | None = None) -> tf.Tensor:
    """``T^2 * KL(teacher_T || student_T)``, averaged over the batch (weighted like the label loss).

    The ``T^2`` keeps the term's gradients on the scale of the label loss's when T changes (Hinton 2015).
    """
    soft_teacher, soft_student = soften(teacher, temperature), soften(student, temperature)
    kl = tf.reduce_sum(soft_teacher * (tf.math.log(tf.clip_by_value(soft_teacher, 1e-7, 1.0)) -
                                       tf.math.log(tf.clip_by_value(soft_student, 1e-7, 1.0))), axis=-1)
    if sample_weight is not None:
        kl = kl * tf.cast(sample_weight, kl.dtype)
    return temperature ** 2 * tf.reduce_mean(kl)


class Distiller(keras.Model):
    """Trains ``student`` on ``(1 - alpha) * label loss + alpha * T^2 KL`` toward a frozen ``teacher``.

    The teacher sees the very batch the student sees (same augmentation). Calling the distiller runs the
    student only, so validation, prediction and tfmot's ``UpdatePruningStep`` (which finds the pruning
    wrappers inside the student) work as on the student itself.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, *, temperature: float, alpha: float):
        super().__init__(name=f"{student.name}_distiller")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.label_tracker = keras.metrics.Mean(name="label_loss")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        teacher = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student = self.student(x, training=True)
            label_loss = self.compiled_loss(y, student, sample_weight, regularization_losses=self.student.losses)
            distill_loss = distillation_term(student, teacher, self.temperature, sample_weight)
            loss = (1.0 - self.alpha) * label_loss + self.alpha * distill_loss
        self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
        self.compiled_metrics.update_state(y, student, sample_weight)
        self.label_tracker.update_state(label_loss)
        self.distill_tracker.update_state(distill_loss)
        results = {metric.name: metric.result() for metric in self.metrics}
        results["loss"] = (1.0 - self.alpha) * results["label_loss"] + self.alpha * results["distill_loss"]
        return results


def fine_tune(wrapped: keras.Model, model: keras.Model, data: inputs.Dataset, cfg: VariantConfig, *,
              teacher: keras.Model | None = None, verbose: bool = True) -> list[dict[str, Any]]:
    """Train the wrapped model with ``UpdatePruningStep`` and the training stage's recipe (``train``): its
    augmented pipeline, label smoothing and class weights, AdamW (no decay on BatchNorm or biases) at
    ``prune.learning_rate`` with cosine decay and no warm-up, each epoch judged on the validation split.
    With ``cfg.prune.distill`` the ``teacher`` (the dense source) adds its softened outputs (``Distiller``).

    No EMA: a moving average of masked weights would not be sparse. ``model`` is the unwrapped model: the
    wrappers hold its very layer objects, so its variables pick the no-decay set. Returns history rows.
    """
    distill = cfg.prune.distill
    if distill is not None and teacher is None:
        raise ValueError(f"variant {cfg.id!r} asks for distillation but no teacher model was given")
    if batchnorm.kept_frozen(cfg):  # as the baseline was fine-tuned (before the optimizer picks its variables)
        batchnorm.freeze(wrapped)
    _, total = _steps(len(data.train), cfg.train.batch_size, cfg.prune.epochs)
    schedule = training.lr_schedule(cfg.prune.learning_rate, total_steps=total, warmup_steps=0)
    optimizer = training.make_optimizer(model, schedule, weight_decay=cfg.train.weight_decay, total_steps=total,
                                        ema=False)
    trained = wrapped if distill is None else Distiller(wrapped, teacher, temperature=distill.temperature,
                                                        alpha=distill.alpha)
    trained.compile(optimizer=optimizer, loss=training.loss_function(cfg), metrics=["accuracy"])
    phase = f"prune-{cfg.prune.method}" + ("-distill" if distill is not None else "")
    judge = training.ValidationJudge(data.validation, data.classes, phase=phase,
                                     first_epoch=1, epochs=cfg.prune.epochs, schedule=schedule, verbose=verbose)
    pipeline = training.training_pipeline(data.train, cfg, len(data.classes))
    # UpdatePruningStep first: it re-applies the masks at each epoch end, before the judge validates.
    trained.fit(pipeline, epochs=cfg.prune.epochs, callbacks=[tfmot_sparsity().UpdatePruningStep(), judge], verbose=0)
    return judge.rows


def to_tflite(model: keras.Model, *, sparse: bool = False) -> bytes:
    """FP32 TFLite, through the quantization stage's converter (a frozen graph: fast); ``sparse`` stores
    kernels that are sparse enough in TFLite's sparse format."""
    from trashnet.nets import convert

    return convert.convert(model, "fp32", sparse=sparse)


def _size_of_bytes(name: str, content: bytes) -> dict[str, Any]:
    return {"file": name, "raw_bytes": len(content), "gzip_bytes": fileio.gzip_size_of(content)}


def tflite_latency(content: bytes, cfg: VariantConfig) -> dict[str, dict[str, float]]:
    from trashnet.core.tflite import TFLiteModel  # noqa: PLC0415

    return {f"threads{threads}": TFLiteModel(content, num_threads=threads).latency(
                runs=cfg.quantize.latency_runs, warmup=cfg.quantize.latency_warmup)
            for threads in cfg.quantize.latency_threads}


def _pct_smaller(new: float, old: float) -> float | None:
    return round(100.0 * (1.0 - new / old), 2) if old else None


# --- The stage -------------------------------------------------------------------------------------

def run(cfg: VariantConfig, *, dataset_dir: str | Path, models_dir: str | Path, output_dir: str | Path,
        cache_dir: str | Path | None = None, verbose: bool = False) -> dict[str, Any]:
    """The stage's entry (``stages.invoke``): the source is ``models_dir/<source_stage>/<source>/``."""
    return run_pruning(cfg, dataset_dir=dataset_dir, source_dir=Path(models_dir) / cfg.source_stage / cfg.source,
                       output_dir=output_dir, cache_dir=cache_dir, verbose=verbose)


def run_pruning(cfg: VariantConfig, *, dataset_dir: str | Path, source_dir: str | Path, output_dir: str | Path,
                cache_dir: str | Path | None = None, verbose: bool = True) -> dict[str, Any]:
    """Prune ``<source_dir>/<cfg.source>.keras`` per ``cfg.prune``, fine-tune, strip, verify, convert,
    evaluate against the dense source, and write ``<id>.keras``, ``<id>.tflite`` (FP32),
    ``<id>.sparse.tflite`` (FP32, sparse tensor format), ``metrics.json``, ``predictions.csv`` and
    ``history.csv`` into ``output_dir``. Returns the ``metrics.json`` record."""
    from trashnet.core.tflite import TFLiteModel, op_census  # noqa: PLC0415

    if cfg.stage != "prune" or not cfg.source:
        raise ValueError(f"variant {cfg.id!r} is not a pruned variant with a source (stage {cfg.stage!r})")
    source_dir, output_dir = Path(source_dir), Path(output_dir)
    source_file = source_dir / f"{cfg.source}.keras"
    if not source_file.is_file():
        raise FileNotFoundError(f"{source_file} not found: run the baseline variant {cfg.source!r} first")
    output_dir.mkdir(parents=True, exist_ok=True)
    method = cfg.prune.method
    notes: list[str] = []
    seed_everything(cfg.seed)

    source = keras.models.load_model(source_file, compile=False)
    image_size = int(source.input_shape[1])  # the model's real input: image_size x input_scale
    if image_size != cfg.model.input_size:
        notes.append(f"source model takes {image_size} px; config says {cfg.model.input_size}: used {image_size}")
    data = inputs.load_dataset(dataset_dir, image_size, cache_dir=cache_dir, fit=cfg.model.fit)
    if source.output_shape[-1] != len(data.classes):
        raise ValueError(f"{source_file.name} has {source.output_shape[-1]} outputs, the data "
                         f"{len(data.classes)} classes")
    source_metrics_path = source_dir / scoring.METRICS_FILE
    source_metrics = records.read_metrics(source_dir).dump() if source_metrics_path.is_file() else {}
    if not source_metrics.get("test"):
        notes.append(f"no test figures in a {scoring.METRICS_FILE} beside the source: dense accuracy "
                     "measured here")

    if method == "xnnpack":
        scale = models.input_scale(source)
        model = xnnpack.build_xnnpack_mobilenet_v3(cfg.arch, num_classes=len(data.classes),
                                                   image_size=image_size // scale, alpha=cfg.model.alpha,
                                                   dropout=cfg.model.dropout, head=cfg.model.head,
                                                   input_scale=scale)
        xnnpack.transfer_weights(source, model)
    else:
        # tfmot wraps the model's own layer objects, so pruning a model prunes it in place: prune a second
        # copy and keep `source` dense for the comparison.
        model = keras.models.load_model(source_file, compile=False)

    _, total_steps = _steps(len(data.train), cfg.train.batch_size, cfg.prune.epochs)
    schedule, schedule_record = pruning_schedule(cfg, total_steps)
    wrapped = wrap_for_pruning(model, method, schedule)
    start = time.perf_counter()
    history = fine_tune(wrapped, model, data, cfg, teacher=source if cfg.prune.distill else None,
                        verbose=verbose)
    train_time = time.perf_counter() - start
    stripped = tfmot_sparsity().strip_pruning(wrapped)
    leftover = pruning_wrappers(stripped)
    if leftover:
        raise RuntimeError(f"strip_pruning left pruning wrappers: {leftover}")

    sparsity = sparsity_report(stripped, method)
    sparsity["schedule"] = schedule_record
    if method == "2of4":
        sparsity["m_by_n_violations"] = check_m_by_n(stripped)  # raises SparsityError on any violation
        sparsity["m_by_n_verified"] = True

    keras_file = training.save_model(stripped, output_dir / f"{cfg.id}.keras")
    fileio.atomic_write_text(output_dir / scoring.HISTORY_FILE, training.history_csv(history))
    files = {"tflite": to_tflite(stripped), "tflite_sparse": to_tflite(stripped, sparse=True),
             "dense_source_tflite": to_tflite(source)}  # the dense source: same converter, same machine
    fileio.atomic_write_bytes(output_dir / f"{cfg.id}.tflite", files["tflite"])
    fileio.atomic_write_bytes(output_dir / f"{cfg.id}{SPARSE_SUFFIX}", files["tflite_sparse"])

    weights = source_metrics.get("weights") or imagenet.weights_origin(cfg.model.weights, cfg.arch)
    record, keras_probs = scoring.evaluate_keras_model(
        stripped, data, cfg, model_path=keras_file, dataset_dir=dataset_dir, train_time_s=train_time,
        extra={"weights": weights})
    test = data.test
    threads = max(cfg.quantize.latency_threads)
    tflite_probs = TFLiteModel(files["tflite"], num_threads=threads).predict(test.images)
    sparse_probs = TFLiteModel(files["tflite_sparse"], num_threads=threads).predict(test.images)
    dense_test = scoring.classification_metrics(test.labels, scoring.keras_probabilities(source, test.images),
                                                 data.classes)
    for name, content in files.items():
        for key, summary_ in tflite_latency(content, cfg).items():
            record["latency_ms"][f"{name}_{key}"] = summary_

    def short(probabilities):
        metrics = scoring.classification_metrics(test.labels, probabilities, data.classes)
        return {key: metrics[key] for key in ("n", "accuracy", "macro_f1")}

    sizes = {
        "keras": record["size"],
        "tflite": scoring.file_size(output_dir / f"{cfg.id}.tflite"),
        "tflite_sparse": scoring.file_size(output_dir / f"{cfg.id}{SPARSE_SUFFIX}"),
        "dense_source_keras": scoring.file_size(source_file),
        "dense_source_tflite": _size_of_bytes(f"{cfg.source}.tflite (converted here)", files["dense_source_tflite"]),
    }
    census = op_census(files["tflite_sparse"])
    record.update({
        "agreement": scoring.agreement(keras_probs, tflite_probs),
        "tflite": {"file": sizes["tflite"]["file"], "test": short(tflite_probs),
                   "agreement": scoring.agreement(keras_probs, tflite_probs)},
        "tflite_sparse": {"file": sizes["tflite_sparse"]["file"], "test": short(sparse_probs),
                          "agreement": scoring.agreement(keras_probs, sparse_probs),
                          # DENSIFY ops mark weights the converter stored in the sparse format.
                          "op_census": {key: census[key] for key in ("total", "by_op")}},
        "sizes": sizes,
        "sparsity": sparsity,
        "dense_baseline": _comparison(cfg, record, source, source_metrics, dense_test, sizes),
        "source_model": {"file": source_file.name, "sha256": fileio.sha256_file(source_file)},
        "training": {"phase": f"prune-{method}", "epochs": cfg.prune.epochs, "steps": total_steps,
                     "learning_rate": cfg.prune.learning_rate, "ema": False,
                     "distill": cfg.prune.distill.model_dump() if cfg.prune.distill else None,
                     "train_images": len(data.train), "validation_images": len(data.validation),
                     "test_images": len(test)},
        "notes": notes,
    })
    scoring.write_results(output_dir, record, paths=test.paths, labels=test.labels, probabilities=keras_probs)
    if verbose:
        print(summary(record), flush=True)
    return record


def _comparison(cfg: VariantConfig, record: dict[str, Any], source: keras.Model, source_metrics: dict[str, Any],
                dense_test: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    """The pruned variant against its dense source: accuracy (from the source's own metrics.json when it
    has one), non-zero parameters, sizes raw and gzipped, LiteRT latency."""
    reference = source_metrics.get("test") or dense_test
    dense_counts = scoring.parameter_counts(source)
    test = record["test"]
    comparison: dict[str, Any] = {
        "source": cfg.source,
        "dense_test_from": "source metrics.json" if source_metrics.get("test") else "measured here",
        "dense_accuracy": reference["accuracy"],
        "dense_macro_f1": reference["macro_f1"],
        "dense_accuracy_measured_here": dense_test["accuracy"],
        "accuracy_delta_pp": round(100.0 * (test["accuracy"] - reference["accuracy"]), 3),
        "macro_f1_delta_pp": round(100.0 * (test["macro_f1"] - reference["macro_f1"]), 3),
        "dense_params": dense_counts["params"],
        "dense_nonzero_params": dense_counts["nonzero_params"],
        "nonzero_params_reduction_pct": _pct_smaller(record["nonzero_params"], dense_counts["nonzero_params"]),
    }
    for name, dense in (("keras", "dense_source_keras"), ("tflite", "dense_source_tflite"),
                        ("tflite_sparse", "dense_source_tflite")):
        for kind in ("raw", "gzip"):
            comparison[f"{name}_{kind}_reduction_pct"] = _pct_smaller(sizes[name][f"{kind}_bytes"],
                                                                      sizes[dense][f"{kind}_bytes"])
    latency = record["latency_ms"]
    for threads in cfg.quantize.latency_threads:
        dense = latency[f"dense_source_tflite_threads{threads}"]["median"]
        for name in ("tflite", "tflite_sparse"):
            comparison[f"{name}_threads{threads}_speedup"] = round(dense / latency[f"{name}_threads{threads}"]["median"],
                                                                   3)
    if source_metrics.get("latency_ms", {}).get("keras_batch1"):
        comparison["dense_keras_batch1_ms_from_source"] = source_metrics["latency_ms"]["keras_batch1"]["median"]
    return comparison


def summary(record: dict[str, Any]) -> str:
    """A few lines for the notebook: accuracy against the dense model, sparsity, sizes, latency."""
    cmp, sp, lat = record["dense_baseline"], record["sparsity"]["total"], record["latency_ms"]
    sizes = record["sizes"]
    lines = [
        f"{record['variant']}: {record['sparsity']['method']}, {record['sparsity']['pruned_layers']} layers pruned",
        f"  test accuracy {record['test']['accuracy']:.4f} (dense {cmp['dense_accuracy']:.4f}, "
        f"{cmp['accuracy_delta_pp']:+.2f} pp), macro-F1 {record['test']['macro_f1']:.4f} "
        f"({cmp['macro_f1_delta_pp']:+.2f} pp)",
        f"  sparsity: pruned kernels {sp['pruned_kernels']['sparsity']:.3f}, all parameters {sp['sparsity']:.3f}; "
        f"non-zero params {record['nonzero_params']:,} of {record['params']:,}",
        f"  FP32 TFLite {sizes['tflite']['raw_bytes']:,} B raw, {sizes['tflite']['gzip_bytes']:,} B gzip "
        f"({cmp['tflite_gzip_reduction_pct']}% smaller than dense gzip); sparse format "
        f"{sizes['tflite_sparse']['raw_bytes']:,} B raw",
        f"  sparse-format file: {record['tflite_sparse']['op_census']['by_op'].get('DENSIFY', 0)} DENSIFY ops "
        f"(weights stored sparse)",
        f"  TFLite vs Keras top-1 agreement {record['agreement']['top1_agreement_pct']:.1f}%",
    ]
    for key in sorted(lat):
        if key.startswith(("tflite", "dense_source")):
            lines.append(f"  latency {key}: {lat[key]['median']:.2f} ms")
    return "\n".join(lines)


def layer_table(record: dict[str, Any]) -> str:
    """Every kernel layer: kind, shape, sparsity, pruned or why not (plain text, one row per layer)."""
    rows = [f"{'layer':<44} {'kind':<10} {'weights':>9} {'sparsity':>8}  pruned / reason"]
    for name, entry in record["sparsity"]["layers"].items():
        status = "pruned" if entry["pruned"] else entry.get("reason", "")
        rows.append(f"{name:<44} {entry['kind']:<10} {entry['weights']:>9,} {entry['sparsity']:>8.3f}  {status}")
    return "\n".join(rows)
