"""Write the official TFLite metadata of an image classifier with tflite-support, or display it.

Runs in the tool venv ``.venv-metadata`` (``requirements-metadata.lock``: tflite-support 0.4.4 needs
protobuf < 4, which TensorFlow's lock cannot have), called as a subprocess by ``trashnet.artifact``.
It imports only tflite_support and the standard library, never the trashnet package.

    python write_metadata.py write SPEC.json   # SPEC: model, labels, output, name, version, description, author,
                                               #       license, mean, std, [model_files: [{path, description}]]
    python write_metadata.py display MODEL     # JSON on stdout: the metadata, the packed files, the labels

``write`` follows ``image_classifier.MetadataWriter.create_for_inference`` (input NormalizationOptions with
the given mean and std, ImageProperties RGB, the labels as a TENSOR_AXIS_LABELS file) and adds the general
fields (name, version, description, author, licence), as that method's documentation says to, plus optional
model-level associated files (type DESCRIPTIONS: the project's ``metadata.json``), through the writer's
``create_from_metadata`` so every packed file is recorded in the metadata.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def write(spec_path: str) -> int:
    from tflite_support import metadata_schema_py_generated as schema
    from tflite_support.metadata_writers import image_classifier, metadata_info, writer_utils

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    model = writer_utils.load_file(spec["model"])
    input_md = metadata_info.InputImageTensorMd(
        name=image_classifier.INPUT_NAME, description=spec.get("input_description", image_classifier.INPUT_DESCRIPTION),
        norm_mean=list(spec["mean"]), norm_std=list(spec["std"]), color_space_type=schema.ColorSpaceType.RGB,
        tensor_type=writer_utils.get_input_tensor_types(model)[0])
    output_md = metadata_info.ClassificationTensorMd(
        name=image_classifier.OUTPUT_NAME, description=image_classifier.OUTPUT_DESCRIPTION,
        label_files=[metadata_info.LabelFileMd(file_path=spec["labels"])],
        tensor_type=writer_utils.get_output_tensor_types(model)[0])
    general_md = metadata_info.GeneralMd(name=spec["name"], version=spec["version"],
                                         description=spec["description"], author=spec["author"],
                                         licenses=spec["license"])
    model_metadata = general_md.create_metadata()
    extra = spec.get("model_files", [])
    if extra:
        model_metadata.associatedFiles = []
        for item in extra:
            entry = schema.AssociatedFileT()
            entry.name = Path(item["path"]).name
            entry.description = item["description"]
            entry.type = schema.AssociatedFileType.DESCRIPTIONS
            model_metadata.associatedFiles.append(entry)
    writer = image_classifier.MetadataWriter.create_from_metadata(
        model, model_metadata=model_metadata, input_metadata=[input_md.create_metadata()],
        output_metadata=[output_md.create_metadata()],
        associated_files=[spec["labels"], *(item["path"] for item in extra)])
    writer_utils.save_file(writer.populate(), spec["output"])
    return 0


def display(model_path: str) -> int:
    from tflite_support import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(model_path)
    files = displayer.get_packed_associated_file_list()
    labels = {name: displayer.get_associated_file_buffer(name).decode("utf-8") for name in files}
    print(json.dumps({"metadata": json.loads(displayer.get_metadata_json()), "packed_files": files,
                      "files": labels}, indent=2))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "display"):
        print(__doc__, file=sys.stderr)
        return 2
    return write(argv[1]) if argv[0] == "write" else display(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
