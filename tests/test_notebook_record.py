"""Executed notebooks as an examiner opens them: parameters relative to the output root with the final folder
name, no library start-up noise, training summarised in a few rows."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from trashnet.runner import worker
from trashnet.core import settings
from trashnet.report import views


def test_tidy_executed_shows_final_paths_and_drops_start_up_noise(tmp_path):
    root, temp, target = tmp_path / "out", tmp_path / "out/models/train/.v3.partial-77", tmp_path / "out/models/train/v3"
    parameters = new_code_cell(f'variant_id = "v3"\ndataset_dir = "{root}/dataset"\noutput_dir = "{temp}"\n')
    parameters.metadata["tags"] = ["injected-parameters"]
    noisy = new_code_cell("train()")
    noisy.outputs = [
        new_output("stream", name="stderr", text=(
            "I0000 00:00:1796425792.517876   14751 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")),
        new_output("stream", name="stderr", text="E0000 00:00:1.2   1 cuda_platform.cc:52] failed call to cuInit\n"
                                                 "UserWarning: the learning rate is high\n"),
        new_output("stream", name="stdout", text="done\n")]
    path = tmp_path / "v3.ipynb"
    nbformat.write(new_notebook(cells=[parameters, noisy]), path)
    worker.tidy_executed(path, root=str(root), temp=str(temp), target=str(target))
    cells = nbformat.read(path, as_version=4).cells
    assert 'dataset_dir = "dataset"' in cells[0].source and 'output_dir = "models/train/v3"' in cells[0].source
    assert str(tmp_path) not in cells[0].source and ".partial-" not in cells[0].source
    assert [o.get("text") for o in cells[1].outputs] == ["UserWarning: the learning rate is high\n", "done\n"]


def test_tidy_executed_leaves_no_machine_path_no_converter_notice_and_no_stale_defaults(tmp_path):
    root, temp, target = tmp_path / "out", tmp_path / "out/models/quantize/.v3.int8.partial-556", \
        tmp_path / "out/models/quantize/v3.int8"
    defaults = new_code_cell('variant_id = "mobilenet_v3_small"\n')
    defaults.metadata["tags"] = ["parameters"]
    injected = new_code_cell(f'variant_id = "v3.int8"\noutput_dir = "{temp}"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    convert = new_code_cell("quantize()")
    venv = f"{settings.REPO_ROOT}/.venv/lib/python3.11/site-packages/tensorflow/lite/python/convert.py"
    convert.outputs = [
        new_output("stream", name="stderr", text=(
            "WARNING:absl:Please consider providing the trackable_obj argument in the from_concrete_functions.\n"
            f"{venv}:846: UserWarning: Statistics for quantized inputs were expected, but not specified.\n"
            "  warnings.warn(\n"
            "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\n")),
        new_output("stream", name="stdout", text=f"wrote {temp}/v3.int8.tflite\n"),
        new_output("execute_result", data={"text/plain": f"PosixPath('{temp}/v3.int8.tflite')"}, execution_count=1)]
    nb = new_notebook(cells=[defaults, injected, convert])
    nb.metadata["papermill"] = {"input_path": f"{settings.REPO_ROOT}/experiments/quantize.ipynb",
                                "output_path": f"{temp}/v3.int8.ipynb", "parameters": {"output_dir": str(temp)}}
    path = tmp_path / "v3.int8.ipynb"
    nbformat.write(nb, path)
    worker.tidy_executed(path, root=str(root), temp=str(temp), target=str(target))
    text = path.read_text()
    assert str(tmp_path) not in text and ".partial-" not in text and str(settings.REPO_ROOT) not in text
    written = nbformat.read(path, as_version=4)
    assert "mobilenet_v3_small" not in written.cells[0].source
    assert [o.get("name") for o in written.cells[2].outputs] == ["stdout", None]  # the stderr notices are gone
    assert written.cells[2].outputs[0].text == "wrote models/quantize/v3.int8/v3.int8.tflite\n"
    assert written.metadata.papermill.input_path == "experiments/quantize.ipynb"
    assert written.metadata.papermill.parameters.output_dir == "models/quantize/v3.int8"


def test_history_table_is_a_few_rows(tmp_path):
    rows = ["epoch,phase,loss,accuracy,val_loss,val_accuracy"]
    rows += [f"{e},{'head' if e <= 5 else 'finetune'},{2 / e:.4f},{e / 50:.4f},{2 / e:.4f},"
             f"{0.9 if e == 17 else e / 60:.4f}" for e in range(1, 46)]
    (tmp_path / settings.HISTORY_FILE).write_text("\n".join(rows) + "\n")
    text = views.history_table(tmp_path).data
    table = [line for line in text.splitlines() if line.startswith("| ") and "epoch" not in line]
    assert 5 <= len(table) <= 12
    assert "| 17 |" in text and "best validation" in text  # the best epoch
    assert "| 1 |" in text and "| 45 |" in text and "| 6 |" in text  # first, last, start of fine-tuning
