"""Write the official TFLite metadata of an image classifier from the published schema, or display it.

Runs in the tool venv ``.venv-metadata`` (``requirements-metadata.lock``), called as a subprocess by
``trashnet.stages.final``; it imports only the standard library, ``flatbuffers`` and the two flatbuffer modules
that tflite-support publishes, generated from ``metadata_schema.fbs`` and TFLite's ``schema.fbs``. Those two
are plain Python: unlike ``tflite_support.metadata_writers``, whose native extension needs Debian's
``libusb-1.0-0``, they import from wheels alone (docs/install.md).

    python write_metadata.py write SPEC.json   # SPEC: model, labels, output, name, version, description, author,
                                               #       license, mean, std, [model_files: [{path, description}]]
    python write_metadata.py display MODEL     # JSON on stdout, read back by tflite-support's own
                                               # MetadataDisplayer (needs its native library: a test check)

``write`` builds exactly what tflite-support 0.4.4's ``image_classifier.MetadataWriter.create_from_metadata``
+ ``populate`` build (tests/test_ecosystem.py compares the bytes): input TensorMetadata "image" with
ImageProperties RGB, NormalizationOptions (mean, std) and the pixel range as Stats; output "probability" with
FeatureProperties, Stats [0, 1] and the labels as a TENSOR_AXIS_LABELS file; the general fields; optional
model-level DESCRIPTIONS files (the project's ``metadata.json``). The metadata buffer (identifier M001) goes
into a new model buffer named TFLITE_METADATA and the model is repacked (identifier TFL3); the associated
files follow as an uncompressed zip (``trashnet.stages.final`` rewrites it with fixed timestamps).
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

METADATA_NAME = "TFLITE_METADATA"  # the model-metadata entry that readers look for
MODEL_IDENTIFIER = b"TFL3"
METADATA_IDENTIFIER = b"M001"
# The oldest metadata parser that reads these fields (tflite-support's GetMinimumMetadataParserVersion gives
# 1.0.0 for image properties, normalization, stats and label/description files; checked in the tests).
MIN_PARSER_VERSION = "1.0.0"
INPUT_NAME, INPUT_DESCRIPTION = "image", "Input image to be classified."
OUTPUT_NAME, OUTPUT_DESCRIPTION = "probability", "Probabilities of the labels respectively."
LABELS_DESCRIPTION = "Labels for categories that the model can recognize."


def _schemas():
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as md
    from tensorflow_lite_support.metadata import schema_py_generated as tfl
    return md, tfl


def _stats(md, low: list[float] | None, high: list[float] | None):
    stats = md.StatsT()
    stats.max, stats.min = high, low
    return stats


def _file(md, path: str, description: str, kind: int):
    entry = md.AssociatedFileT()
    entry.name, entry.description, entry.type = Path(path).name, description, kind
    return entry


def metadata_buffer(spec: dict, model: bytes) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001) of an image classifier described by ``spec``."""
    md, tfl = _schemas()
    graph = tfl.Model.GetRootAsModel(model, 0).Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ValueError(f"an image classifier has one input and one output tensor, this model has "
                         f"{graph.InputsLength()} and {graph.OutputsLength()}")
    input_type = graph.Tensors(graph.Inputs(0)).Type()
    output_type = graph.Tensors(graph.Outputs(0)).Type()
    mean, std = [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]]

    image = md.TensorMetadataT()
    image.name, image.description = INPUT_NAME, spec.get("input_description", INPUT_DESCRIPTION)
    if input_type == tfl.TensorType.UINT8:
        image.stats = _stats(md, [0.0], [255.0])
    elif input_type == tfl.TensorType.FLOAT32:
        image.stats = _stats(md, [(0.0 - m) / s for m, s in zip(mean, std)],
                             [(255.0 - m) / s for m, s in zip(mean, std)])
    else:
        image.stats = _stats(md, None, None)
    image.content = md.ContentT()
    image.content.contentPropertiesType = md.ContentProperties.ImageProperties
    image.content.contentProperties = md.ImagePropertiesT()
    image.content.contentProperties.colorSpace = md.ColorSpaceType.RGB
    normalization = md.ProcessUnitT()
    normalization.optionsType = md.ProcessUnitOptions.NormalizationOptions
    normalization.options = md.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = mean, std
    image.processUnits = [normalization]

    scores = md.TensorMetadataT()
    scores.name, scores.description = OUTPUT_NAME, OUTPUT_DESCRIPTION
    bounds = {tfl.TensorType.UINT8: ([0.0], [255.0]), tfl.TensorType.FLOAT32: ([0.0], [1.0])}
    scores.stats = _stats(md, *bounds.get(output_type, (None, None)))
    scores.content = md.ContentT()
    scores.content.contentPropertiesType = md.ContentProperties.FeatureProperties
    scores.content.contentProperties = md.FeaturePropertiesT()
    scores.associatedFiles = [_file(md, spec["labels"], LABELS_DESCRIPTION, md.AssociatedFileType.TENSOR_AXIS_LABELS)]

    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [scores]
    metadata = md.ModelMetadataT()
    metadata.name, metadata.version, metadata.description = spec["name"], spec["version"], spec["description"]
    metadata.author, metadata.license = spec["author"], spec["license"]
    extra = spec.get("model_files", [])
    if extra:
        metadata.associatedFiles = [_file(md, item["path"], item["description"], md.AssociatedFileType.DESCRIPTIONS)
                                    for item in extra]
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = MIN_PARSER_VERSION
    return _finish(metadata, METADATA_IDENTIFIER)


def _finish(table, identifier: bytes) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(table.Pack(builder), identifier)
    return bytes(builder.Output())


def populate(model: bytes, metadata: bytes, files: list[str]) -> bytes:
    """``model`` repacked with ``metadata`` as its TFLITE_METADATA buffer (replacing one it had), followed by
    an uncompressed zip of ``files``: what tflite-support's ``MetadataPopulator.populate`` writes."""
    _, tfl = _schemas()
    tree = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(model, 0))
    buffer = tfl.BufferT()
    buffer.data = metadata
    tree.metadata = tree.metadata or []
    tree.buffers = tree.buffers or []
    existing = [entry for entry in tree.metadata if entry.name.decode("utf-8") == METADATA_NAME]
    if existing:
        tree.buffers[existing[0].buffer] = buffer
    else:
        tree.buffers.append(buffer)
        entry = tfl.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(tree.buffers) - 1
        tree.metadata.append(entry)
    out = io.BytesIO(_finish(tree, MODEL_IDENTIFIER))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, mode="a", compression=zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.writestr(Path(path).name, Path(path).read_bytes())
    return out.getvalue()


def write(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    model = Path(spec["model"]).read_bytes()
    files = [spec["labels"], *(item["path"] for item in spec.get("model_files", []))]
    Path(spec["output"]).write_bytes(populate(model, metadata_buffer(spec, model), files))
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
