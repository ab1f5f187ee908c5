"""The typed records of ``findings``: what each rule found, for the template to phrase in each language."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Point(BaseModel):
    """One TFLite result on the accuracy/size/latency plane."""

    id: str
    precision: str | None = None
    accuracy: float
    low: float | None = None  # 95 % interval of the accuracy (stats.json bootstrap, else Wilson)
    high: float | None = None
    gzip_bytes: float
    latency_ms: float
    front_size: bool = False
    front_latency: bool = False


class Test(BaseModel):
    """A paired test of two models on the same test images (stats.json, or computed here post hoc)."""

    a: str
    b: str
    diff_pp: float
    low_pp: float | None = None
    high_pp: float | None = None
    p: float
    significant: bool
    adjusted: bool  # Holm-adjusted within its family (stats.json) or a single post-hoc test


class Answer(BaseModel):
    most_accurate: Point  # the most accurate result on the three-way Pareto front
    best: Point  # the answer: on the front, within the most accurate one's interval, the smallest
    chosen: Point  # the shipped file (selection rule)
    chosen_is_best: bool
    chosen_dominated: bool
    dominated_by: Point | None = None  # the most accurate result at least as good in all three, better in one
    dominators: int = 0
    test: Test | None = None  # best against chosen
    considered: int = 0  # TFLite results with accuracy, size and latency
    front: list[str] = Field(default_factory=list)  # ids on the accuracy/size/latency front
    tied: list[str] = Field(default_factory=list)  # front results inside the most accurate one's interval


class LatencyFinding(BaseModel):
    by_precision: dict[str, float]  # median over architectures of the median latency (ms, 1 thread)
    fp32: float | None = None
    slowest: str | None = None
    slowest_ms: float | None = None
    slowest_ratio: float | None = None
    slowest_float_ops: int | None = None  # float compute operators left in those files (op census)
    slow: bool = False


class SparsityFinding(BaseModel):
    speedup_min: float | None = None  # dense FP32 TFLite latency / 2:4 FP32 TFLite latency (1 thread)
    speedup_max: float | None = None
    faster: bool = False  # some pruned file is clearly faster than its dense source
    gzip_reduction_min: float | None = None  # % smaller gzipped FP32 TFLite file than the dense one
    gzip_reduction_max: float | None = None
    raw_reduction_max: float | None = None  # % smaller raw file (0: the zeros are still stored)
    biggest_drop: Test | None = None  # the prune-vs-dense comparison with the largest accuracy loss
    biggest_drop_sparsity: float | None = None
    two_four_min_pp: float | None = None  # accuracy change of the 2:4 models without distillation, against
    two_four_max_pp: float | None = None  # their dense source (pp; negative: a loss)
    two_four_n: int = 0
    other_run: str | None = None  # the compared run (--compare-with), where it pruned the same networks
    other_weights: str | None = None
    other_min_pp: float | None = None  # the same 2:4 models' accuracy change in that run
    other_max_pp: float | None = None
    other_n: int = 0


class Collapsed(BaseModel):
    """Quantized files that answer (almost) one class for every test image: a failed conversion or training."""

    ids: list[str] = Field(default_factory=list)
    accuracy: float | None = None  # the highest test accuracy among them
    label: str | None = None  # the class most of them predict
    qat_only: bool = False  # every collapsed file came from quantization-aware training (qat, pqat)


class ClassFinding(BaseModel):
    """The final model's weakest class on the test split and its most frequent confusion."""

    weakest: str
    weakest_f1: float
    weakest_support: int
    smallest: str  # the class with the fewest test images
    confused_true: str | None = None
    confused_predicted: str | None = None
    confused_n: int = 0


class SignificanceFinding(BaseModel):
    total: int = 0
    significant: list[Test] = Field(default_factory=list)
    families: dict[str, tuple[int, int]] = Field(default_factory=dict)  # family -> (significant, total)


class Budget(BaseModel):
    arch: str
    epochs: int | None
    head_epochs: int | None = None  # LP-FT: the epochs of the classifier alone, before fine-tuning


class Method(BaseModel):
    """What the method section states, from the resolved configuration of each result."""

    split: str | None = None  # data.split: official, stratified
    seed: int | None = None
    images: dict[str, int] = Field(default_factory=dict)  # train / validation / test images
    image_size: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    # Pretrained baselines (model.weights other than "none"): the LP-FT recipe of stages/train.py
    weights: str | None = None
    head_epochs: int | None = None
    head_learning_rate: float | None = None
    finetune_epochs: int | None = None
    finetune_learning_rate: float | None = None
    input_scale: int = 1  # model.input_scale: the input is image_size x this, averaged inside the model
    minimalistic: list[str] = Field(default_factory=list)  # baselines of the minimalistic V3-Large
    transplanted: list[str] = Field(default_factory=list)  # baselines started from another network's weights
    dequantized: bool = False  # the ImageNet weights were read from 8-bit TFLite files and dequantized
    prune_methods: list[str] = Field(default_factory=list)
    prune_epochs: int | None = None  # the pruned models' usual recovery epochs (the most common)
    prune_epochs_other: dict[int, list[str]] = Field(default_factory=dict)  # other epochs -> those models
    distill: dict[str, Any] | None = None  # alpha, temperature
    qat_methods: list[str] = Field(default_factory=list)
    qat_epochs: int | None = None
    precisions: list[str] = Field(default_factory=list)
    libraries: dict[str, str] = Field(default_factory=dict)


class Machine(BaseModel):
    cpu: str
    cores: str
    gpus: str = ""  # empty: none


class Limits(BaseModel):
    test_n: int | None = None
    half_width_pp: float | None = None  # binomial 95 % half-width at the best accuracy
    weights: list[str] = Field(default_factory=list)  # the distinct model.weights values ("none" = scratch)
    scratch: bool = False
    hardware: list[str] = Field(default_factory=list)
    machines: list[Machine] = Field(default_factory=list)
    ood_n: int | None = None
    ood_classes: int | None = None
    ood_chance: float | None = None
    ood_min: float | None = None
    ood_max: float | None = None
    ood_near_chance: bool = False
    ood_baseline_min: float | None = None  # the baselines' OOD accuracy (float Keras models)
    ood_baseline_max: float | None = None
    ood_chosen: float | None = None  # the final model's
    ood_gap_pp: float | None = None  # mean of (TrashNet test - OOD accuracy) over the baselines, in pp
    ood_worst_class: str | None = None  # the final model's OOD class with the lowest recall
    ood_worst_recall: float | None = None
    single_seed: bool = True
    seed_sd_max_pp: float | None = None


class Findings(BaseModel):
    answer: Answer | None = None
    latency: LatencyFinding | None = None
    sparsity: SparsityFinding | None = None
    significance: SignificanceFinding | None = None
    method: Method = Field(default_factory=Method)
    budgets: list[Budget] = Field(default_factory=list)
    budgets_unequal: bool = False
    budgets_equal: bool = False  # every architecture trained for the same epochs (both LP-FT phases)
    collapsed: Collapsed | None = None
    classes: ClassFinding | None = None
    limits: Limits = Field(default_factory=Limits)
