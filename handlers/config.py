"""The model YAML schema, declared once and used both by `make archive` and by the worker at start.

A model YAML (`config/models/<name>.yaml`) has three parts:
- TorchServe's own model-config keys (camelCase, as TorchServe reads them, and its `pt2:` torch.compile
  settings). TorchServe ignores unknown or mistyped keys silently; here every key is declared, typed and
  bounded, and anything else is refused.
- `handler:` read by our handlers inside the worker (`context.model_yaml_config["handler"]`).
- `archive:` read only by the archive tool; it is not packed into the archive's model-config.yaml.

Errors name the file, the key path, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from handlers import HANDLERS
from handlers.errors import ModelConfigError

HANDLER_NAMES = tuple(HANDLERS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ImageInput(_Strict):
    """How an image request becomes a (channels, height, width) float tensor. The model's geometry and
    normalisation are required: no model's values are filled in for another's."""

    width: Annotated[int, Field(ge=1, le=4096)]
    height: Annotated[int, Field(ge=1, le=4096)]
    channels: Literal[1, 3]
    mean: Annotated[list[float], Field(min_length=1, max_length=3)]
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1, max_length=3)]
    # Background of incoming images: "dark" = as they come (no inversion), "light" = dark ink on white,
    # inverted to white-on-black before inference, "auto" = decided per image from its border pixels (digits).
    background: Literal["auto", "dark", "light"] = "dark"
    # How an image of another size becomes width x height (handlers.imaging, resampling as torchvision's
    # transforms do on PIL images: bilinear, antialiased):
    #   "stretch": resized to width x height, aspect ratio not kept (torchvision's Resize((height, width)));
    #   "center_crop": shorter side resized to `resize`, aspect kept, then the centre width x height cut out
    #       (torchvision's Resize(resize) + CenterCrop((height, width)), ImageNet classifiers);
    #   "letterbox": resized to fit inside width x height, aspect kept, the rest padded with `pad_value`
    #       (detection: boxes map back to the request image);
    #   "digit_box": crop the ink, fit it into a 20x20 box and centre it by mass in 28x28 (MNIST, grayscale).
    fit: Literal["stretch", "center_crop", "letterbox", "digit_box"] = "stretch"
    resize: Annotated[int, Field(ge=1, le=8192)] | None = None  # shorter side before the crop (center_crop)
    pad_value: Annotated[float, Field(ge=0, le=255)] | None = None  # letterbox padding, 0..255; None: 0 (black)
    # Declared width*height of an encoded image (or pixels of an array) above which it is refused before decoding.
    max_pixels: Annotated[int, Field(ge=1, le=100_000_000)] = 4_000_000

    @model_validator(mode="after")
    def _check_fit(self) -> ImageInput:
        if self.fit == "center_crop" and self.resize is None:
            raise ValueError("handler.image.fit = 'center_crop' needs handler.image.resize (the shorter side before "
                             "the crop, e.g. resize: 256 for a 224x224 crop)")
        if self.fit != "center_crop" and self.resize is not None:
            raise ValueError(f"handler.image.resize = {self.resize} is read only with fit: center_crop "
                             f"(fit is {self.fit!r}); remove it or set fit: center_crop")
        if self.resize is not None and self.resize < max(self.width, self.height):
            raise ValueError(f"handler.image.resize = {self.resize} is smaller than the {self.width}x{self.height} "
                             f"crop; allowed: resize >= {max(self.width, self.height)}")
        if self.pad_value is not None and self.fit != "letterbox":
            raise ValueError(f"handler.image.pad_value is read only with fit: letterbox (fit is {self.fit!r})")
        if self.fit == "digit_box" and self.channels != 1:
            raise ValueError("handler.image.fit = 'digit_box' is the MNIST layout of grayscale digits; with "
                             "channels: 3 use stretch, center_crop or letterbox")
        return self


TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _archive_path(value: str) -> str:
    """A file inside the archive: a relative path without `..` or empty parts (what extra_files packs)."""
    parts = value.split("/")
    if not value or value.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{value!r} is not a path inside the archive; give it relative to the archive's root, "
                         "as archive.extra_files packs it (e.g. tokenizer.json or my_tokenizer/tokenizer.json)")
    return value


ArchivePath = Annotated[str, AfterValidator(_archive_path)]


class TextInput(_Strict):
    """How a text request becomes token tensors (handlers.text): a Hugging Face `tokenizers` file packed in the
    archive (through archive.extra_files), named by its path inside the archive."""

    tokenizer: ArchivePath  # e.g. tokenizer.json, or my_tok/tokenizer.json
    max_length: Annotated[int, Field(ge=1, le=8192)]  # tokens per text, special tokens included; longer: truncated
    # The model's positional inputs, in order; each (n, length) int64.
    inputs: Annotated[list[Literal[TEXT_INPUTS]], Field(min_length=1, max_length=3)] = ["input_ids"]
    # "max_length": every text padded to max_length (a model exported for a fixed length needs it);
    # "longest": a batch padded to its longest text (less work for a model that takes any length).
    padding: Literal["max_length", "longest"] = "max_length"
    # UTF-8 bytes of one text above which it is refused with 413 (before tokenizing).
    max_bytes: Annotated[int, Field(ge=1, le=10_000_000)] = 65_536

    @model_validator(mode="after")
    def _check_inputs(self) -> TextInput:
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"handler.text.inputs = {self.inputs}: each input at most once")
        return self


class DetectionOutputs(_Strict):
    """Which outputs of a detection model hold what, when it returns a dict (or ONNX outputs by name). A tuple is
    read by position: (boxes, scores, labels) or (boxes, scores, labels, count)."""

    boxes: str = "boxes"  # (N, K, 4) x1, y1, x2, y2 in the model input's pixels
    scores: str = "scores"  # (N, K)
    labels: str = "labels"  # (N, K) class indices; a negative index marks padding
    count: str | None = None  # (N,) detections per image (the rest of its K rows are padding); None: no such output


class DetectionSettings(_Strict):
    """`handler.detection` of the object detector (handlers.detection): which detections an answer keeps."""

    # Detections scoring below this are dropped (scores as the model gives them, 0..1).
    score_threshold: Annotated[float, Field(ge=0, le=1)]
    # At most this many detections per image, best first (after non-maximum suppression).
    max_detections: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Class-wise non-maximum suppression: a box overlapping a better one of its class by more than this IoU is
    # dropped. None: the model suppresses its own duplicates (e.g. CenterNet's peak picking, torchvision's models).
    iou_threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    outputs: DetectionOutputs = DetectionOutputs()


class SegmentationSettings(_Strict):
    """`handler.segmentation` of the image segmenter (handlers.segmentation); optional."""

    # The class index that is background: reported as `background_fraction`, not among the answer's `classes`.
    background: Annotated[int, Field(ge=0, le=255)] | None = None


class EmbeddingSettings(_Strict):
    """`handler.embedding` of the embedder (handlers.embedding); optional."""

    normalize: bool = False  # L2-normalise each vector (cosine similarity is then a dot product)
    float16: bool = False  # JSON answers rounded to float16 (about 3 significant digits; shorter answers)


class TabularInput(_Strict):
    """Expected feature vector of a tabular request."""

    num_features: Annotated[int, Field(ge=1, le=100_000)]


# `handler.module`: a handler class of your own, `path/to/file.py:ClassName` (a path relative to the project root).
MODULE_PATTERN = r"^[A-Za-z0-9_./-]+\.py:[A-Za-z_][A-Za-z0-9_]*$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class CompileSettings(_Strict):
    """`pt2.compile`, TorchServe 0.12's key: `torch.compile` of an eager model or an ExportedProgram's module at
    worker start. `enable` is required (as TorchServe reads it); the other keys are torch.compile's own
    arguments. The backend name is checked against this torch's list at worker start."""

    enable: bool
    backend: Annotated[str, Field(pattern=IDENTIFIER)] = "inductor"
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = None
    fullgraph: bool = False
    dynamic: bool | None = None
    options: dict[str, object] | None = None


class Pt2Settings(_Strict):
    """The `pt2:` section in TorchServe 0.12's current form, `pt2: {compile: {enable: true, backend: ...}}`. Its
    other forms are refused with the replacement: the deprecated bare backend (`pt2: inductor`) and
    `pt2: {export: {aot_compile: true}}` (an AOTInductor `.so`; packages are chosen from the model file here)."""

    compile: CompileSettings

    @model_validator(mode="before")
    @classmethod
    def _current_form(cls, data: object) -> object:
        if isinstance(data, str):
            raise ValueError(f"TorchServe's deprecated form; write pt2: {{compile: {{enable: true, backend: {data}}}}}")
        if isinstance(data, dict) and "export" in data:
            raise ValueError("pt2.export (TorchServe's AOTInductor .so) is not used here: export an AOTInductor "
                             "package with `python -m toolkit.export --format aoti` and archive it as model_file "
                             "(the backend is chosen from the file), and drop pt2.export")
        return data


class HandlerSettings(_Strict):
    """The `handler:` section: what our handlers read inside the worker. Exactly one of `name` (a handler of
    the library) and `module` (one of your own); the section the handler reads (`image`, `tabular`, ...) is
    required by the handler itself (`ServingHandler.section`), and `options` is validated by its own model."""

    name: Literal[HANDLER_NAMES] | None = None
    module: Annotated[str, Field(pattern=MODULE_PATTERN)] | None = None
    options: dict[str, object] = {}
    labels: str | None = "index_to_name.json"
    top_k: Annotated[int, Field(ge=0, le=1000)] = 0  # 0 = every class
    # torch intra-op threads per worker; 0 = automatic: CPU cores / maxWorkers, at least 1.
    threads: Annotated[int, Field(ge=0, le=256)] = 0
    max_inputs_per_request: Annotated[int, Field(ge=1, le=100_000)] = 64
    # The model output the handler reads when the model has several (a dict key, or a tuple index), and the
    # other outputs added to each answer under their names.
    output: str | Annotated[int, Field(ge=0)] | None = None
    extra_outputs: list[str] = []
    # An eager model (model file = its state_dict): the callable in `archive.model_source` that returns the
    # nn.Module, called with no arguments.
    model_factory: Annotated[str, Field(pattern=IDENTIFIER)] | None = None
    image: ImageInput | None = None
    tabular: TabularInput | None = None
    text: TextInput | None = None
    detection: DetectionSettings | None = None
    segmentation: SegmentationSettings | None = None
    embedding: EmbeddingSettings | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> HandlerSettings:
        if (self.name is None) == (self.module is None):
            raise ValueError("handler: set exactly one of name (a handler of the library: "
                             f"{', '.join(HANDLER_NAMES)}) and module (path/to/file.py:ClassName of your own)")
        return self

    def archive_files(self) -> dict[str, str]:
        """The files inside the archive this handler section reads, by the key that names them (labels are
        packed from the model file's folder, the others through archive.extra_files)."""
        files = {"handler.labels": self.labels} if self.labels else {}
        if self.text is not None:
            files["handler.text.tokenizer"] = self.text.tokenizer
        return files

    def section(self, key: str) -> object:
        """The settings section `key` (`image`, `tabular`, ...) a handler reads; ModelConfigError naming the
        handler when the YAML has none (the schema fills in no model's values)."""
        value = getattr(self, key, None)
        if value is None:
            raise ModelConfigError(f"handler {self.name or self.module} reads handler.{key}, which the YAML lacks; "
                                   f"add a handler.{key}: section (see docs/custom-handlers.md for its keys)")
        return value


class RaySettings(_Strict):
    """The `ray:` section: how the Ray Serve engine scales this archive (TorchServe ignores it). Every key
    is optional; unset ones are derived from TorchServe's keys (see `ModelYaml.ray_settings`)."""

    min_replicas: Annotated[int, Field(ge=0, le=1024)] | None = None  # default: minWorkers
    max_replicas: Annotated[int, Field(ge=1, le=1024)] | None = None  # default: maxWorkers
    # Requests in flight per replica the autoscaler aims at; default: batchSize (one full batch per replica).
    target_ongoing_requests: Annotated[float, Field(gt=0, le=100_000)] | None = None
    upscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 3.0
    downscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    # Ray's logical CPUs per replica: 0.125 lets the seven example archives' minimum replicas (12 in all) share
    # the two one-CPU nodes of `make ray-serve`; torch threads per replica come from handler.threads.
    num_cpus: Annotated[float, Field(gt=0, le=256)] = 0.125
    num_gpus: Annotated[float, Field(ge=0, le=64)] | None = None  # default: 1 when deviceType is gpu, else 0
    # Requests one replica takes at once; must be >= batchSize or batches never fill. Default: 2 x batchSize.
    max_ongoing_requests: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # Requests waiting for a replica beyond which new ones get 503 + Retry-After; -1 = unbounded. Default:
    # jobQueueSize when set, else 100 (TorchServe's default queue).
    max_queued_requests: Annotated[int, Field(ge=-1, le=10_000_000)] | None = None


class ArchiveSettings(_Strict):
    """The `archive:` section: what `make archive` packs. Paths are absolute or relative to the project root.
    The labels file (`handler.labels`) is read from the folder of `model_file`."""

    model_file: str
    version: str = Field(default="1.0", pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$")
    # Files and folders packed at the archive's root under their own names (a folder keeps its files below
    # it, e.g. a tokenizer directory); the handler reads them by that path (handler.text.tokenizer).
    extra_files: list[str] = []
    samples: str | None = None  # folder of sample inputs for the preflight (and expected.json)
    # Archive without sample inputs: the preflight then only loads the model and sends one bad request. Without
    # it, an archive with no samples is refused.
    no_samples: bool = False
    # An eager model: the .py file that defines `handler.model_factory`, packed as the manifest's modelFile.
    model_source: str | None = None

    @model_validator(mode="after")
    def _samples_or_not(self) -> ArchiveSettings:
        if self.no_samples and self.samples:
            raise ValueError("archive: set samples or no_samples: true, not both")
        return self


class ModelYaml(_Strict):
    """One model YAML file. Python attribute names carry units; YAML keys are TorchServe's."""

    min_workers: int = Field(1, alias="minWorkers", ge=0, le=64)
    max_workers: int = Field(1, alias="maxWorkers", ge=1, le=64)
    batch_size: int = Field(1, alias="batchSize", ge=1, le=1024)
    # TorchServe 0.12 reads maxBatchDelay 0 as its 100 ms default, so 0 is refused here.
    max_batch_delay_ms: int = Field(5, alias="maxBatchDelay", ge=1, le=60_000)
    response_timeout_s: int = Field(120, alias="responseTimeout", ge=1, le=3600)
    startup_timeout_s: int = Field(120, alias="startupTimeout", ge=1, le=3600)
    device_type: Literal["cpu", "gpu"] = Field("cpu", alias="deviceType")
    device_ids: list[Annotated[int, Field(ge=0)]] | None = Field(None, alias="deviceIds")
    job_queue_size: int | None = Field(None, alias="jobQueueSize", ge=1, le=1_000_000)
    max_retry_timeout_s: int | None = Field(None, alias="maxRetryTimeoutInSec", ge=0, le=3600)
    client_timeout_ms: int | None = Field(None, alias="clientTimeoutInMills", ge=1)
    use_job_ticket: bool | None = Field(None, alias="useJobTicket")
    handler: HandlerSettings
    pt2: Pt2Settings | None = None
    ray: RaySettings = RaySettings()
    archive: ArchiveSettings | None = None

    @model_validator(mode="after")
    def _eager_model(self) -> ModelYaml:
        if self.archive is not None and (self.archive.model_source is None) != (self.handler.model_factory is None):
            raise ValueError("an eager model needs both archive.model_source (its .py file) and "
                             "handler.model_factory (the callable in it returning the nn.Module)")
        return self

    @model_validator(mode="after")
    def _check_workers(self) -> ModelYaml:
        if self.min_workers > self.max_workers:
            raise ValueError(
                f"minWorkers = {self.min_workers} exceeds maxWorkers = {self.max_workers}; "
                "allowed: minWorkers <= maxWorkers"
            )
        return self

    @model_validator(mode="after")
    def _check_ray(self) -> ModelYaml:
        ongoing = self.ray.max_ongoing_requests
        if ongoing is not None and ongoing < self.batch_size:
            raise ValueError(
                f"ray.max_ongoing_requests = {ongoing} is below batchSize = {self.batch_size}; "
                "allowed: >= batchSize (a replica could never fill a batch)"
            )
        low, high = self.ray.min_replicas, self.ray.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError(f"ray.min_replicas = {low} exceeds ray.max_replicas = {high}")
        return self

    def ray_settings(self) -> RaySettings:
        """The `ray:` section with every unset key derived from TorchServe's keys."""
        ray = self.ray
        return ray.model_copy(update={
            "min_replicas": self.min_workers if ray.min_replicas is None else ray.min_replicas,
            "max_replicas": ray.max_replicas or max(self.max_workers, ray.min_replicas or 0),
            "target_ongoing_requests": ray.target_ongoing_requests or float(self.batch_size),
            "num_gpus": (1.0 if self.device_type == "gpu" else 0.0) if ray.num_gpus is None else ray.num_gpus,
            "max_ongoing_requests": ray.max_ongoing_requests or 2 * self.batch_size,
            "max_queued_requests": ray.max_queued_requests if ray.max_queued_requests is not None
            else (self.job_queue_size or 100),
        })

    def torchserve_config(self) -> dict:
        """The model-config.yaml packed into the archive: TorchServe keys and `handler:`, no `archive:`. Unset
        keys are left out, except `handler.labels: null` (no labels), whose absence would mean the default file."""
        config = self.model_dump(by_alias=True, exclude_none=True, exclude={"archive"})
        if self.handler.labels is None:
            config["handler"]["labels"] = None
        return config


def _describe(error: dict, prefix: str = "") -> str:
    """One pydantic error as `key = value: what is allowed`."""
    key = prefix + ".".join(str(part) for part in error["loc"]) if error["loc"] else ""
    if not key:
        return error["msg"].removeprefix("Value error, ")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error" and message.startswith(key):  # a validator's message names its keys
        return message
    if error["type"] == "missing":
        return f"{key}: required, and missing"
    if error["type"] == "extra_forbidden":
        reason = "no such option" if prefix else "TorchServe would ignore it silently"
        return f"unknown key '{key}' = {error['input']!r} ({reason})"
    return f"{key} = {error.get('input')!r}: {message}"


def parse_options(model: type[BaseModel] | None, options: dict, handler: str) -> BaseModel | None:
    """`handler.options` validated by the handler's own pydantic model (`ServingHandler.options_model`), with
    the schema's error style; ModelConfigError when the handler takes no options but the YAML gives some."""
    if model is None:
        if options:
            raise ModelConfigError(f"handler.options {sorted(options)}: {handler} takes no options")
        return None
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, prefix="handler.options.") for err in exc.errors())
        raise ModelConfigError(f"{handler}: {problems}") from None


def parse_model_yaml(data: object, source: str) -> ModelYaml:
    """Validate already-loaded YAML data. Raises ModelConfigError naming `source`, each key and value."""
    if not isinstance(data, dict):
        raise ModelConfigError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return ModelYaml.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ModelConfigError(f"{source}: {problems}") from None


def load_model_yaml(path: str | Path) -> ModelYaml:
    """Read a model YAML with the safe loader (no Python tags) and validate it."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"{path}: not valid YAML (only plain YAML is accepted): {exc}") from None
    return parse_model_yaml(data, str(path))


def worker_config(model_yaml_config: dict | None, source: str = "model-config.yaml") -> ModelYaml:
    """Validate the model-config TorchServe hands to a worker (`context.model_yaml_config`)."""
    if not model_yaml_config:
        raise ModelConfigError(f"{source}: empty; the archive must carry a model-config.yaml")
    return parse_model_yaml(model_yaml_config, source)
