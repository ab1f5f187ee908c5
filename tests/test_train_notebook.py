"""The baseline notebook, executed by papermill on the bundled sample with the quick profile."""

from __future__ import annotations

import csv
import json
import zipfile

import nbformat
import pytest

from trashnet.core import config, profiles, registry, settings
from trashnet.nets import scoring

NOTEBOOK = registry.get("train").notebook


def test_notebook_is_thin_and_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = [line.split(":")[0] for line in tagged[0].source.splitlines() if line and not line.startswith("#")]
    assert names == ["variant_id", "config", "dataset_dir", "models_dir", "output_dir", "cache_dir"]
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert not cell.outputs and cell.execution_count is None
        assert "def " not in cell.source and "class " not in cell.source
    # A sentence before every step.
    for before, cell in zip(notebook.cells, notebook.cells[1:]):
        if cell.cell_type == "code" and cell is not tagged[0]:
            assert before.cell_type == "markdown", cell.source


@pytest.mark.slow
def test_papermill_runs_the_notebook_on_the_sample(sample_dataset, quick_profile, tmp_path):
    import papermill

    cfg = profiles.load_variants(quick_profile)["mobilenet_v3_small"]
    params = config.config_to_dict(cfg)
    params["model"]["image_size"] = 48  # smaller than quick's 64: same code path, faster
    params["quantize"]["latency_runs"] = 2
    out = tmp_path / "models" / "train" / cfg.id
    out.mkdir(parents=True)
    executed = out / f"{cfg.id}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(executed), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"variant_id": cfg.id, "config": params, "dataset_dir": str(sample_dataset),
                    "models_dir": str(tmp_path / "models"), "output_dir": str(out),
                    "cache_dir": str(tmp_path / ".cache")})
    for name in (f"{cfg.id}.keras", scoring.METRICS_FILE, scoring.PREDICTIONS_FILE, scoring.HISTORY_FILE):
        assert (out / name).is_file(), name
    metrics = json.loads((out / scoring.METRICS_FILE).read_text())
    assert metrics["variant"] == cfg.id and metrics["image_size"] == 48 and metrics["profile"] == "quick"
    assert metrics["provenance"]["config"]["model"]["image_size"] == 48
    test = metrics["test"]
    assert test["n"] > 0 and 0.0 <= test["accuracy"] <= 1.0 and 0.0 <= test["macro_f1"] <= 1.0
    assert sum(map(sum, test["confusion_matrix"])) == test["n"]
    assert metrics["params"] > 0 and metrics["macs"] > 0 and metrics["size"]["gzip_bytes"] > 0
    with open(out / scoring.PREDICTIONS_FILE, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == test["n"]
    with open(out / scoring.HISTORY_FILE, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == cfg.train.epochs
    # The executed notebook is the record: the injected parameters, the summary table and both figures.
    notebook = nbformat.read(executed, as_version=4)
    assert any("injected-parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("test accuracy" in o["data"]["text/markdown"] for o in markdown)
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2


@pytest.mark.slow
@pytest.mark.parametrize("head", ["pooled", "last_point"])
def test_papermill_runs_the_notebook_from_imported_imagenet_weights(sample_dataset, quick_profile, tmp_path,
                                                                    monkeypatch, head):
    """`model.weights: imagenet-tflite`: the kernel imports Google's TFLite file from $TRASHNET_WEIGHTS;
    `model.head: last_point` keeps the file's last-point layer through training, saving and conversion."""
    import os

    import papermill

    if not os.environ.get(settings.ENV_WEIGHTS):
        pytest.skip(f"${settings.ENV_WEIGHTS} is not set: point it at the folder of Google's ImageNet TFLite files")
    monkeypatch.setenv(settings.ENV_OUT, str(tmp_path))  # the imported weights' cache, for the kernel too
    # The kernel imports this checkout's package, whichever one is installed (as the pipeline's runner does).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(settings.REPO_ROOT),
                                                                   os.environ.get("PYTHONPATH")])))
    cfg = profiles.load_variants(quick_profile)["mobilenet_v3_small"]
    params = config.config_to_dict(cfg)
    params["model"].update(image_size=48, weights="imagenet-tflite", head=head)
    params["train"].update(epochs=1, head_epochs=1)
    params["quantize"]["latency_runs"] = 2
    out = tmp_path / "models" / "train" / cfg.id
    out.mkdir(parents=True)
    papermill.execute_notebook(
        str(NOTEBOOK), str(out / f"{cfg.id}.ipynb"), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"variant_id": cfg.id, "config": params, "dataset_dir": str(sample_dataset),
                    "models_dir": str(tmp_path / "models"), "output_dir": str(out),
                    "cache_dir": str(tmp_path / ".cache")})
    metrics = json.loads((out / scoring.METRICS_FILE).read_text())
    assert metrics["weights"].startswith("imagenet-tflite:v3-small_224_1.0_uint8.tflite@sha256:da341cf06fa5")
    assert "dequantized from uint8" in metrics["weights"]
    assert list((tmp_path / ".cache" / "imagenet").glob("mobilenet_v3_small-*.h5"))  # the imported file
    with open(out / scoring.HISTORY_FILE, newline="") as handle:
        assert [row["phase"] for row in csv.DictReader(handle)] == ["head", "finetune"]
    with zipfile.ZipFile(out / f"{cfg.id}.keras") as saved:  # the layer names of the saved model
        layers = [layer["config"]["name"] for layer in json.loads(saved.read("config.json"))["config"]["layers"]]
    assert ("last_point" in layers) == (head == "last_point")
