"""Handler library shipped inside every model archive.

Each handler follows one contract on TorchServe's own hooks (`handlers.base`): preprocess (decode and validate
each request, collate one batch tensor) -> inference (one forward on the worker's device) -> postprocess (one
JSON answer per request, in order). Client mistakes become a per-request 4xx; they never fail the batch.
"""

# The one handler registry: the `handler.name` of a model YAML -> (module, class). The schema accepts exactly
# these names and the archive tool generates each archive's entry file from this table.
HANDLERS: dict[str, tuple[str, str]] = {
    "image_classifier": ("handlers.image", "ImageClassifier"),
    "tabular_classifier": ("handlers.tabular", "TabularClassifier"),
    "text_classifier": ("handlers.text", "TextClassifier"),
}
