"""Profile and variant configs: the typed, strict models, their ids and their plain-dict form.

A *profile* (``experiments/profiles/<name>.yaml``) sets the defaults of a whole run: which data split,
the input size, training schedule, pruning and quantization settings. A *variant*
(``experiments/variants.yaml``) is one small entry that lists only what differs from those defaults.
The models below validate both: unknown keys and wrong types are errors that name the offending key,
never silently ignored. Reading the files and merging them is ``trashnet.core.profiles``' job.

Defaults live on the fields below, with one comment each. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from trashnet.core import settings
from trashnet.core.errors import UserError

ARCHITECTURES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                 "mobilenet_v3_large_minimalistic")
SEED_MARK = "@seed"  # extra seeds of a variant: "<id>@seed<N>", each with its own run folder
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int16x8", "int16x8-fallback")


class Strict(BaseModel):
    """Unknown keys are errors; ints are not silently parsed from strings. Inside ``recording(config)``, every
    field read of that config is noted (``Reads``): what a stage reads is what its cache key covers."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if _RECORDER is not None and name[0] != "_":
            _RECORDER.note(self, name, value)
        return value


class Reads:
    """The fields of one config read while it was recorded, as dotted paths (``train.epochs``). A section read
    on its own (``cfg.prune.distill``, which may be None) counts as ``sections``: whether it is there."""

    def __init__(self, root: Strict) -> None:
        self.fields: set[str] = set()
        self.sections: set[str] = set()
        self._paths: dict[int, str] = {}
        self._kept: list[Strict] = []  # keeps the ids in _paths from being reused while recording
        self._walk(root, "")

    def _walk(self, model: Strict, prefix: str) -> None:
        self._paths[id(model)] = prefix
        self._kept.append(model)
        for name in type(model).model_fields:
            value = model.__dict__.get(name)
            if isinstance(value, Strict):
                self._walk(value, f"{prefix}{name}.")

    def note(self, model: Strict, name: str, value: Any) -> None:
        prefix = self._paths.get(id(model))
        if prefix is None or name not in type(model).model_fields:
            return  # another config object, or a method: not a field of the recorded config
        (self.sections if isinstance(value, Strict) else self.fields).add(prefix + name)


_RECORDER: Reads | None = None  # a plain global, not a context variable: tf.data threads read configs too


@contextlib.contextmanager
def recording(config: Strict) -> Iterator[Reads]:
    """Note every field of ``config`` read inside the block (``model_dump`` is not a read: provenance only)."""
    global _RECORDER
    previous, _RECORDER = _RECORDER, Reads(config)
    try:
        yield _RECORDER
    finally:
        _RECORDER = previous


class DataConfig(Strict):
    split: Literal["official", "stratified"] = "stratified"  # official = the TrashNet authors' lists
    ratios: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train/validation/test for stratified
    seed: int = 42  # stratified split seed


class ModelConfig(Strict):
    image_size: int = Field(224, ge=32, le=1024)  # square input side; photos are resized (squashed) to it
    alpha: float = Field(1.0, gt=0)  # width multiplier
    weights: str = "none"  # "none" (from scratch), "imagenet" (Keras download), "imagenet-tflite" (Google's
    # TFLite files from $TRASHNET_WEIGHTS, imported: docs/imagenet.md) or a weights file path
    dropout: float = Field(0.2, ge=0, lt=1)  # before the classifier
    bn_momentum: float | None = Field(0.99, gt=0, lt=1)  # None keeps Keras' (0.999 for V3: too slow from scratch)
    # What sits between pooling and dropout: nothing, or the ImageNet head's pretrained 1x1 "last point"
    # layer (MobileNetV3; nets.models.last_point_block). Left out of the dump while "pooled" (existing keys hold).
    head: Literal["pooled", "last_point"] = "pooled"
    fit: Literal["squash", "crop", "pad"] = "squash"  # photo -> square input (images.to_model_input); it
    # travels with the model (metadata.json), so predict and evaluate fit photos the way training did
    # Preprocessing parity (issue 26, docs/deployment-parity.md, lever 3): K > 1 makes the model take K x
    # image_size px and average K x K blocks as its first layer, so the network still sees image_size px while
    # an app's resizer reduces a photo ~K times less (less aliasing). Data is decoded at `input_size`.
    input_scale: int = Field(1, ge=1, le=8)

    @property
    def input_size(self) -> int:
        """The side of the model's real input (Keras, TFLite, predict's decode): image_size x input_scale."""
        return self.image_size * self.input_scale

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler):
        # head and input_scale came after results were cached: their defaults stay out of dumps, hence of cache
        # keys. Read through __dict__: a dump is provenance, not a field read (``recording``).
        data = handler(self)
        if self.__dict__["head"] == "pooled":
            data.pop("head", None)
        if self.__dict__["input_scale"] == 1:
            data.pop("input_scale", None)
        return data


class AugmentConfig(Strict):
    flip: bool = True  # horizontal and vertical: a photo of a can upside down is still a can
    rotation: float = Field(0.05, ge=0, le=0.5)  # max rotation, fraction of a full turn
    zoom: float = Field(0.15, ge=0, lt=1)  # max zoom in/out, fraction
    brightness: float = Field(0.15, ge=0, le=1)  # max brightness shift, fraction of the 0-255 range
    contrast: float = Field(0.15, ge=0, lt=1)  # max contrast change, fraction
    # Robustness options for photos that are not TrashNet's (issue 18); all off by default so existing
    # results stay comparable. Each applies to a whole batch in the tf.data graph, never in the model.
    crop_scale: tuple[float, float] | None = None  # random resized crop: area range vs the image (>1 zooms
    # out: the object shrinks on TrashNet's white board, which `background` can then replace); None = off
    crop_ratio: tuple[float, float] = (0.75, 1.3333)  # aspect-ratio range of the crop window
    saturation: float = Field(0.0, ge=0, le=1)  # max saturation change, fraction (0.4: x0.6 to x1.4)
    hue: float = Field(0.0, ge=0, le=0.5)  # max hue shift, fraction of the colour wheel
    blur: float = Field(0.0, ge=0, le=1)  # probability of a Gaussian blur of random strength
    blur_sigma: float = Field(1.5, gt=0, le=8)  # strongest blur, sigma in pixels of the model input
    noise: float = Field(0.0, ge=0, le=0.5)  # max std of Gaussian pixel noise, fraction of 255
    jpeg: float = Field(0.0, ge=0, le=1)  # probability of a JPEG re-encoding
    jpeg_quality: tuple[int, int] = (30, 95)  # its random quality range
    grayscale: float = Field(0.0, ge=0, le=1)  # probability of a grayscale copy
    background: float = Field(0.0, ge=0, le=1)  # probability of keying out the white board and
    # compositing the object onto a random texture
    background_value: int = Field(140, ge=0, le=255)  # board pixels: brightest channel at least this ...
    background_saturation: float = Field(0.18, ge=0, le=1)  # ... and saturation at most this
    background_max_fraction: float = Field(0.85, gt=0, le=1)  # keyed more than this: the object itself is
    # white (paper, clear plastic), so leave that image alone
    mixup: float = Field(0.0, ge=0)  # MixUp Beta(a, a) parameter; 0 = off
    cutmix: float = Field(0.0, ge=0)  # CutMix Beta(a, a) parameter; 0 = off (not together with mixup)
    # Preprocessing parity (issue 26; docs/deployment-parity.md): apps resize whole photos with other filters
    # than predict's. With probability `resample` a training image is instead made from a `resample_source`
    # px decode by tf.image.resize with a random filter (bilinear/bicubic with and without antialiasing,
    # area, nearest): the aliasing of MediaPipe's or OpenCV's resize seen in training. 0 = off.
    resample: float = Field(0.0, ge=0, le=1)
    resample_source: int = Field(384, ge=64, le=1024)  # px of that decode (squashed, Pillow bilinear)

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1] <= 4:
            raise ValueError(f"expected a range 0 < low <= high <= 4, got {list(value)}")
        return value

    @field_validator("jpeg_quality")
    @classmethod
    def _quality(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1] <= 100:
            raise ValueError(f"expected a quality range 1 <= low <= high <= 100, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _one_mix(self) -> "AugmentConfig":
        if self.mixup > 0 and self.cutmix > 0:
            raise ValueError("choose MixUp or CutMix, not both (set one of mixup / cutmix to 0)")
        return self


class TrainConfig(Strict):
    epochs: int = Field(40, ge=1)  # full-model epochs (fine-tuning epochs when pretrained)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)  # peak LR (AdamW) after warm-up, cosine decay after
    weight_decay: float = Field(0.05, ge=0)  # decoupled; not applied to BatchNorm or biases
    warmup_epochs: int = Field(3, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    class_weights: Literal["balanced", "none"] = "balanced"  # trash has 137 images, paper 594
    ema: bool = True  # evaluate an exponential moving average of the weights
    checkpoint: Literal["best", "last"] = "last"  # docs/toolchain-facts.md: best-on-validation cost ~1 pp on test
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without val improvement; None = off
    head_epochs: int = Field(10, ge=0)  # pretrained only: frozen-backbone phase on cached features
    head_learning_rate: float = Field(1e-3, gt=0)
    finetune_learning_rate: float = Field(1e-4, gt=0)  # pretrained only: full model
    finetune_batchnorm: Literal["frozen", "reestimate"] = "frozen"  # pretrained only: BatchNorm kept in
    # inference mode, or its statistics re-estimated on the training images and then trained
    # (benchmarks/bench_imagenet_bn.py, docs/imagenet.md)
    mixed_precision: Literal["auto", "on", "off"] = "auto"  # auto = on when a GPU is present
    augment: AugmentConfig = AugmentConfig()


class DistillConfig(Strict):
    """Knowledge distillation during the pruning fine-tune (Hinton et al. 2015): the dense source teaches."""

    temperature: float = Field(4.0, gt=0)  # softens both models' outputs; the KL term is scaled by T^2
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term toward the teacher; 1 - alpha on the labels


class PruneConfig(Strict):
    method: Literal["2of4", "unstructured", "xnnpack"] = "2of4"
    target_sparsity: float = Field(0.5, gt=0, lt=1)  # unstructured / xnnpack final sparsity
    epochs: int = Field(10, ge=1)  # fine-tuning epochs while pruning
    learning_rate: float = Field(5e-4, gt=0)
    begin_fraction: float = Field(0.0, ge=0, lt=1)  # schedule starts after this fraction of steps
    end_fraction: float = Field(0.7, gt=0, le=1)  # and reaches the target here; the rest recovers
    distill: DistillConfig | None = None  # None = plain fine-tuning on the labels


class QATConfig(Strict):
    """Quantization-aware training (tfmot) before an int8 conversion, instead of calibration only."""

    method: Literal["none", "qat", "pqat"] = "none"  # pqat: prune-preserving, keeps the source's zeros
    epochs: int = Field(5, ge=1)  # fine-tuning epochs with fake quantization
    learning_rate: float = Field(1e-4, gt=0)  # peak (AdamW, cosine decay, no warm-up)


class QuantizeConfig(Strict):
    qat: QATConfig = QATConfig()
    representative_samples: int = Field(200, ge=1)  # train images that calibrate int8/int16 ranges
    latency_runs: int = Field(50, ge=1)  # timed invocations per thread count, after warm-up
    latency_warmup: int = Field(5, ge=0)
    latency_threads: tuple[int, ...] = (1, 2)
    eval_batch_size: int = Field(32, ge=1)  # test images per LiteRT invocation
    eval_threads: int | None = Field(None, ge=1)  # threads per LiteRT interpreter; None = auto (below)
    eval_workers: int | None = Field(None, ge=1)  # interpreters in parallel; None = one per core for 16x8
    # (its reference kernels use one core whatever the thread count), else one using every core


class SelectConfig(Strict):
    accuracy_tolerance_pp: float = Field(1.0, ge=0)  # final = smallest gzipped file within this of the best
    architecture: str | None = "mobilenet_v3_large"  # the research's hybrid: restrict the final to this arch
    precisions: tuple[str, ...] = ("fp16", "int16x8")  # ... and to these precisions; () = any
    source_stage: str | None = "prune"  # ... quantized from a model of this stage (the hybrid: prune)
    latency: str = "tflite_threads1"  # the latency_ms entry that breaks ties and draws the latency front
    max_drop_pp: float = Field(0.5, ge=0)  # target: final >= float reference (same arch) - this many pp
    max_latency_ms: float | None = Field(None, gt=0)  # candidates slower than this (latency above) are out
    # Eligible files at most this many times slower than the fastest eligible one: keeps a file that is
    # small but runs on slow reference kernels (16x8 on x86, ~40x FP16) from winning on size alone.
    max_latency_ratio: float | None = Field(3.0, ge=1)
    # A candidate run with several seeds is judged on its mean test accuracy over them ("first": its own).
    seed_accuracy: Literal["mean", "first"] = "mean"
    # "tolerance": within accuracy_tolerance_pp of the best. "not-significantly-worse": instead, every candidate
    # the exact McNemar test (Holm over the candidates) does not find worse than the best. Off by default: at a
    # few hundred test images a non-significant drop can be several pp (docs/statistics.md).
    eligibility: Literal["tolerance", "not-significantly-worse"] = "tolerance"


class StatsConfig(Strict):
    """How stats.json measures uncertainty (trashnet/stages/stats.py, docs/statistics.md)."""

    confidence: float = Field(0.95, gt=0, lt=1)  # of every interval
    resamples: int = Field(9999, ge=100)  # bootstrap resamples (scipy's default)
    method: Literal["BCa", "percentile"] = "BCa"  # percentile is used where BCa is undefined (recorded)
    seed: int = 0  # bootstrap seed: the same results give bit-identical intervals
    alpha: float = Field(0.05, gt=0, lt=1)  # significance level after the Holm correction


class OodConfig(Strict):
    """The out-of-distribution set every variant is also measured on: the folder comes from
    ``$TRASHNET_OOD_DATA`` (unset: not measured), how its folders map to the model's labels from here."""

    class_map: dict[str, str | None] = {}  # folder -> model label (null: skip it); unnamed folders = labels


class Profile(Strict):
    """A whole run's defaults. ``name`` is the file stem; the rest is the YAML body."""

    name: str = Field(pattern=f"^{settings.PROFILE_NAME}$")  # it names folders: models/<name>/
    description: str = ""
    seed: int = 42  # one seed for everything: split order, init, augmentation, shuffling
    # Every variant runs once per seed (None = [seed]); a variant or an override may set its own list.
    # The data split keeps data.seed: every seed is tested on the same images (paired comparisons).
    seeds: tuple[int, ...] | None = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = PruneConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    select: SelectConfig = SelectConfig()
    stats: StatsConfig = StatsConfig()
    ood: OodConfig = OodConfig()
    variants: list[str] | None = None  # ids to run (None = every variant in variants.yaml)
    overrides: dict[str, dict[str, Any]] = {}  # variant id -> sections that differ in this profile


class VariantConfig(Strict):
    """Everything one variant's notebook needs, fully resolved."""

    id: str
    stage: Literal["train", "prune", "quantize", "final"]
    profile: str
    seed: int  # this run's seed (training init, augmentation, shuffling, calibration sample)
    # Every seed this variant runs with (the first keeps the plain id). Used while expanding the variants only,
    # and left out of config_to_dict: adding a seed must not change the cache key of the runs already made.
    seeds: tuple[int, ...] = Field((), exclude=True)
    arch: str | None = None  # baseline / pruned: the architecture
    source: str | None = None  # pruned: baseline id; quantized: baseline or pruned id
    source_stage: str | None = None
    precision: str | None = None  # quantized
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    prune: PruneConfig
    quantize: QuantizeConfig
    select: SelectConfig
    stats: StatsConfig = StatsConfig()
    ood: OodConfig = OodConfig()

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str | None) -> str | None:
        if value is not None and value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {value!r}; valid: {', '.join(ARCHITECTURES)}")
        return value

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str | None) -> str | None:
        if value is not None and value not in PRECISIONS:
            raise ValueError(f"unknown precision {value!r}; valid: {', '.join(PRECISIONS)}")
        return value

    @model_validator(mode="after")
    def _qat_is_int8(self) -> VariantConfig:
        if self.quantize.qat.method != "none" and (self.stage != "quantize" or self.precision != "int8"):
            raise ValueError(f"quantize.qat.method {self.quantize.qat.method!r} needs a quantized variant at "
                             f"precision 'int8' (got stage {self.stage!r}, precision {self.precision!r})")
        return self

    @model_validator(mode="after")
    def _last_point_is_v3(self) -> VariantConfig:
        if self.model.head == "last_point" and self.arch is not None and not self.arch.startswith("mobilenet_v3"):
            raise ValueError(f"model.head 'last_point' exists for MobileNetV3 only, not {self.arch!r}")
        return self


class ConfigError(UserError, ValueError):
    """A profile or variants file is wrong; the message says where and what to fix."""

    exit_status = 2


def _explain(error: ValidationError, where: str) -> ConfigError:
    lines = [f"{where}: invalid configuration"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {key}: {item['msg']}")
    return ConfigError("\n".join(lines))


def validate(model: type[Strict], data: dict[str, Any], where: str) -> Any:
    # Through JSON, strict mode still turns YAML lists into tuples but refuses "10" for an int.
    try:
        return model.model_validate_json(json.dumps(data))
    except ValidationError as error:
        raise _explain(error, where) from error


def seed_variant_id(variant_id: str, seed: int, seeds: tuple[int, ...]) -> str:
    """The id of ``variant_id``'s run with ``seed``: the first seed keeps the plain id."""
    return variant_id if seed == seeds[0] else f"{variant_id}{SEED_MARK}{seed}"


def split_seed_id(variant_id: str) -> tuple[str, int | None]:
    """``"x@seed43"`` -> ``("x", 43)``; a plain id -> ``(id, None)``."""
    base, mark, seed = variant_id.rpartition(SEED_MARK)
    if mark and seed.isdigit():
        return base, int(seed)
    return variant_id, None


def config_to_dict(config: Strict) -> dict[str, Any]:
    """Plain, JSON-able dict (tuples become lists): for papermill parameters and result files."""
    return config.model_dump(mode="json")


def config_from_dict(data: dict[str, Any]) -> VariantConfig:
    return validate(VariantConfig, data, "config")
