"""TorchServe 0.12's wire facts, written once: its default listener ports and the error answers of its frontend.

Imported by the client (to recognise an answer), by the engines that speak TorchServe's API (the Ray ingress
and worker send the same answers) and by the tests. Imports nothing but the standard library, so every tier
may use it.

The error answers, measured on TorchServe 0.12.0 (REST; each is the JSON body `{"code", "type", "message"}`):

    status  type                           message                                        when
    404     ModelNotFoundException         Model not found: <model>                       unknown model
    404     ModelVersionNotFoundException  Model version: <v> does not exist for model: <m>  unknown version
    404     ResourceNotFoundException      Requested resource is not found, ...           unknown path
    400     InvalidKeyException            TOKEN_FAILED                                   missing or wrong token
    503     ServiceUnavailableException    Model "<model>" has no worker to serve ...     queue full (or no worker)
    503     InternalServerException        Prediction failed                              the handler raised
    507     InternalServerException        Out of resources                               MemoryError in the handler

Over gRPC the token refusal is PERMISSION_DENIED with the same TOKEN_FAILED text, and a full queue is INTERNAL
with the `NO_WORKER` text (the type is lost there; see toolkit.client.error_body).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# The five listeners of a TorchServe whose config.properties names none (toolkit.properties.Ports.default()).
INFERENCE_PORT = 8080
MANAGEMENT_PORT = 8081
METRICS_PORT = 8082
GRPC_INFERENCE_PORT = 7070
GRPC_MANAGEMENT_PORT = 7071

# TorchServe's refusal of a missing, wrong or expired token: the message of REST's 400 InvalidKeyException and
# the details of gRPC's PERMISSION_DENIED.
TOKEN_FAILED = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
# The words every one of TorchServe's "no room for this request" texts contains (a full job queue; it says the
# same when the model has no worker at all).
NO_WORKER_PHRASE = "has no worker to serve inference request"


@dataclass(frozen=True)
class FrontendError:
    """One error answer of TorchServe's frontend: the HTTP status, the Java exception name it sends as `type`,
    and the message, a `str.format` template of named fields (`{model}`, `{version}`). `retry_after_s`: the
    Retry-After header an engine of ours adds (TorchServe itself sends none); None for no header."""

    status: int
    type: str
    message: str
    retry_after_s: int | None = None

    def text(self, **fields: object) -> str:
        """The message with its fields filled in (KeyError naming a field the template needs and was not given)."""
        return self.message.format(**fields)

    def body(self, **fields: object) -> bytes:
        """The JSON body `{"code": status, "type": type, "message": text}` TorchServe sends, UTF-8."""
        return json.dumps({"code": self.status, "type": self.type, "message": self.text(**fields)}).encode()

    def headers(self) -> dict[str, str]:
        """The extra response headers of this answer: Retry-After when it has one, else none."""
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}

    def matches(self, status: int, kind: str) -> bool:
        """Whether an answer's status and `type` are this error's."""
        return (status, kind) == (self.status, self.type)


MODEL_NOT_FOUND = FrontendError(404, "ModelNotFoundException", "Model not found: {model}")
VERSION_NOT_FOUND = FrontendError(
    404, "ModelVersionNotFoundException", "Model version: {version} does not exist for model: {model}"
)
RESOURCE_NOT_FOUND = FrontendError(
    404, "ResourceNotFoundException", "Requested resource is not found, please refer to API document."
)
INVALID_KEY = FrontendError(400, "InvalidKeyException", TOKEN_FAILED)
# No room in the model's job queue. TorchServe's own words for it; clients recognise it by status and type
# (REST) or by NO_WORKER_PHRASE (gRPC). Engines of ours send it with Retry-After: 1.
NO_WORKER = FrontendError(
    503, "ServiceUnavailableException",
    'Model "{model}" ' + NO_WORKER_PHRASE + ". Please use scale workers API to add workers.", retry_after_s=1,
)
# A batch whose handler raised: every request of the batch gets this.
PREDICTION_FAILED = FrontendError(503, "InternalServerException", "Prediction failed")
# A batch whose handler answered a list of the wrong length.
BATCH_MISMATCH = FrontendError(503, "InternalServerException", "number of batch response mismatched")
# A batch whose handler ran out of memory (MemoryError).
OUT_OF_RESOURCES = FrontendError(507, "InternalServerException", "Out of resources")
