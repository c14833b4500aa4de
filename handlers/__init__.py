"""Handler library shipped inside every model archive.

Each handler follows one contract on TorchServe's own hooks (`handlers.base`): preprocess (decode and validate
each request, collate the batch inputs) -> inference (one forward on the worker's device) -> postprocess (one
answer per request, in order). Client mistakes become a per-request 4xx; they never fail the batch.

    base.py            ServingHandler, Decoded, Batch: the contract and TorchServe's hooks
    protocols.py       protocols as composed parts: TorchServe's own bodies; RequestInfo, Reply
    oip.py             the Open Inference Protocol (KServe v2): wire format and the OPEN_INFERENCE protocol
    oip_tensors.py     an OIP request's tensors: datatypes, JSON and binary data, BYTES; the decode_oip helpers
    outputs.py         a forward's outputs named, checked and split per request (ModelOutputs)
    image.py           ImageClassifier                  imaging.py  pixels: decode, fit, normalise
    tabular.py         TabularClassifier                classification.py  what the classifiers share
    text.py            TextClassifier: text with a Hugging Face tokenizer file packed in the archive
    detection.py       ObjectDetector: boxes in the request image's pixels   boxes.py  IoU, class-wise NMS
    segmentation.py    ImageSegmenter: the class map at the request image's size, as a PNG
    embedding.py       Embedder: one vector per image or text (the image or text classifier reads the requests)
    answers.py         the answer schemas and where each keeps its prediction (torch-free)
    decoding.py        raw request bodies -> Python values (JSON, .npy, base64)
    backends/          the model file -> a backend on the worker's device, chosen by what the file is (AOTInductor,
                       ExportedProgram, TorchScript, ONNX Runtime, eager)
    config.py          the model YAML schema, used by `make archive` and by the worker at start
    errors.py          client errors with their HTTP status; ModelConfigError
    manifest.py        the archive manifest's facts (the default version)
    metrics.py         handler metrics and the engines' metrics sinks
    worker.py          device, threads, labels of a worker
"""

# The one handler registry: the `handler.name` of a model YAML -> (module, class). The schema accepts exactly
# these names and the archive tool generates each archive's entry file from this table.
HANDLERS: dict[str, tuple[str, str]] = {
    "image_classifier": ("handlers.image", "ImageClassifier"),
    "tabular_classifier": ("handlers.tabular", "TabularClassifier"),
    "text_classifier": ("handlers.text", "TextClassifier"),
    "object_detector": ("handlers.detection", "ObjectDetector"),
    "image_segmenter": ("handlers.segmentation", "ImageSegmenter"),
    "embedder": ("handlers.embedding", "Embedder"),
}
