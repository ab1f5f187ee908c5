"""Reference for tests/test_ecosystem.py: the TFLite metadata written by tflite-support's own MetadataWriter.

Runs in the metadata tool venv (needs tflite-support's native extension, and so Debian's libusb-1.0-0, which
CI installs for the tests). ``trashnet/tools/write_metadata.py`` must write the same bytes without it.

    python metadata_reference.py SPEC.json   # the same SPEC as write_metadata.py write
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


if __name__ == "__main__":
    sys.exit(write(sys.argv[1]))
