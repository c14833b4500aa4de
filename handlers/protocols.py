"""Protocols: the wire formats a handler speaks, as parts composed around its one contract.

A handler decodes one request into `Decoded` and encodes its answer from its rows of the model output; a
protocol owns everything about the wire around that (LitServe's specs are the model):

    claims(request)                  whether this request is in this protocol (from its headers / route)
    parse(request) -> envelope       the wire body -> the protocol's own request object (ClientError if bad)
    decode(handler, envelope)        -> the handler's Decoded (the protocol calls the handler's method for it)
    encode(handler, request, envelope, item, outputs) -> Reply   one answer on the wire
    refuse(request, error) -> Reply  a ClientError in this protocol's error form

`ServingHandler.protocols` lists the protocols a handler speaks besides TorchServe's own bodies
(`TorchServeBodies`, always there, last: it claims every request no other protocol claimed); `Speaks` is that
list, checked, and runs the per-request seam: `decode` (the claiming protocol parses the request and decodes it
into the handler's Decoded, an `Entry`) and `encode` (the entry's protocol answers it). A protocol names the
handler methods it calls (`requires`); `check` fails at `initialize` (so at the archive preflight) when a
handler lists a protocol without them, not at the first request of that protocol.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from handlers.decoding import request_body
from handlers.errors import ClientError, ModelConfigError
from handlers.outputs import add_extra_outputs

if TYPE_CHECKING:  # annotations only: base imports this module
    from handlers.base import Decoded, ServingHandler
    from handlers.outputs import ModelOutputs

JSON_CONTENT_TYPE = "application/json"
Envelope = TypeVar("Envelope")


def header_value(headers: Mapping | None, name: str) -> str | None:
    """A header's value whatever its letter case (TorchServe keeps the client's; gRPC metadata may be bytes)."""
    for key, value in (headers or {}).items():
        key = key.decode("latin-1") if isinstance(key, bytes | bytearray) else str(key)
        if key.lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
    return None


@dataclass(frozen=True)
class RequestInfo:
    """One request of a batch as TorchServe hands it over: its index in the batch, its row (`{"body": ...}`,
    form fields or gRPC inputs), its headers (read once per request) and TorchServe's request id."""

    index: int
    row: Mapping[str, object]
    headers: Mapping[str, str]
    request_id: str

    @classmethod
    def of(cls, context, index: int, row: Mapping[str, object]) -> RequestInfo:
        """Request `index` of the batch TorchServe's `context` holds: its row, headers and request id."""
        ids = getattr(context, "request_ids", None) or {}
        return cls(index, row, context.get_all_request_header(index) or {}, str(ids.get(index, index)))

    def header(self, name: str) -> str | None:
        """A request header by its lower-case name, or None."""
        return header_value(self.headers, name)

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")


@dataclass(frozen=True)
class Reply:
    """One answer on the wire: its body, content type, extra headers and HTTP status."""

    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    phrase: str = "OK"

    def send(self, context, index: int) -> bytes:
        """Set this answer's status (when not 200), content type and headers for request `index` on TorchServe's
        `context`; the body, for the handler to return."""
        if self.status != 200:
            context.set_response_status(self.status, self.phrase, index)
        context.set_response_content_type(index, self.content_type)
        for name, value in self.headers.items():
            context.set_response_header(index, name, value)
        return self.body


def json_bytes(value: object) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


class Protocol(abc.ABC, Generic[Envelope]):
    """A wire format around the handler contract (see the module docstring)."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()

    def check(self, handler: ServingHandler) -> None:
        """ModelConfigError naming each handler method this protocol calls that the handler lacks."""
        missing = [method for method in self.requires if not callable(getattr(handler, method, None))]
        if missing:
            raise ModelConfigError(
                f"{type(handler).__name__} lists the {self.name} protocol but does not define "
                f"{', '.join(missing)}; define {'them' if len(missing) > 1 else 'it'} or drop {self.name} from "
                "its `protocols`"
            )

    @abc.abstractmethod
    def claims(self, request: RequestInfo) -> bool:
        """Whether `request` came in this protocol."""

    @abc.abstractmethod
    def parse(self, request: RequestInfo) -> Envelope:
        """The request's body -> this protocol's request object; raise ClientError for a malformed one."""

    @abc.abstractmethod
    def decode(self, handler: ServingHandler, envelope: Envelope) -> Decoded:
        """The handler's Decoded for this request (through the handler method this protocol requires)."""

    @abc.abstractmethod
    def encode(self, handler: ServingHandler, request: RequestInfo, envelope: Envelope, item: Decoded,
               outputs: ModelOutputs) -> Reply:
        """This request's answer from its rows of the model outputs."""

    def refuse(self, request: RequestInfo, error: ClientError) -> Reply:
        """A refused request: its status and TorchServe's error body `{"code", "type", "message"}`."""
        return Reply(json_bytes(error.to_body()), status=error.status, phrase=error.phrase)


class TorchServeBodies(Protocol[object]):
    """TorchServe's own bodies (REST `/predictions`, gRPC `Predictions`): the body as TorchServe hands it to
    `handler.decode`, the JSON of `handler.encode` as the answer. Claims every request."""

    name = "TorchServe"
    requires = ("decode", "encode")

    def claims(self, request: RequestInfo) -> bool:
        return True

    def parse(self, request: RequestInfo) -> object:
        return request_body(request.row, request.content_type)

    def decode(self, handler: ServingHandler, envelope: object) -> Decoded:
        return handler.decode(envelope)

    def encode(self, handler: ServingHandler, request: RequestInfo, envelope: object, item: Decoded,
               outputs: ModelOutputs) -> Reply:
        answer = add_extra_outputs(handler.encode(outputs, item), outputs, handler.settings.extra_outputs,
                                   handler.answer_per_item, item.many)
        return Reply(json_bytes(answer))


TORCHSERVE_BODIES = TorchServeBodies()


@dataclass(frozen=True)
class Entry:
    """One request of a batch after decode: the request, the protocol that claimed it, what that protocol
    parsed (handed back to its `encode`), and its `Decoded` or the ClientError it will be answered with."""

    request: RequestInfo
    protocol: Protocol
    result: Decoded | ClientError
    envelope: object = None


@dataclass(frozen=True)
class Speaks:
    """The protocols a handler speaks, in the order they are asked to claim a request, TorchServe's own bodies
    last. Build it with `Speaks.checked` (at `initialize`)."""

    protocols: tuple[Protocol, ...]

    @classmethod
    def checked(cls, handler: ServingHandler, protocols: tuple[Protocol, ...]) -> Speaks:
        """`protocols` + TorchServe's bodies, each checked against `handler` (ModelConfigError names a missing
        method)."""
        speaks = cls((*protocols, TORCHSERVE_BODIES))
        for protocol in speaks.protocols:
            protocol.check(handler)
        return speaks

    def decode(self, handler: ServingHandler, request: RequestInfo) -> Entry:
        """The first protocol that claims `request` parses it and decodes it into the handler's Decoded (then
        `handler.check_count`); a ClientError on the way is that request's answer."""
        protocol = next(p for p in self.protocols if p.claims(request))
        envelope = None
        try:
            envelope = protocol.parse(request)
            item = protocol.decode(handler, envelope)
            handler.check_count(item.count)
        except ClientError as error:
            return Entry(request, protocol, error, envelope)
        return Entry(request, protocol, item, envelope)

    @staticmethod
    def encode(handler: ServingHandler, entry: Entry, outputs: ModelOutputs | None) -> bytes:
        """One request's answer from its protocol (`outputs`: its rows; None when it was refused); its status,
        content type and headers set on the handler's TorchServe context."""
        if isinstance(entry.result, ClientError):
            reply = entry.protocol.refuse(entry.request, entry.result)
        else:
            reply = entry.protocol.encode(handler, entry.request, entry.envelope, entry.result, outputs)
        return reply.send(handler.context, entry.request.index)
