"""A handler of your own, outside the toolkit: the text classifier, abstaining when it is not sure.

Archived with `handler.module: examples/handlers/confident_text.py:ConfidentText` (packed next to `handlers/`
as `confident_text.py`; no edit of the `handlers` package, no other archive rebuilt) and configured under
`handler.options`, validated at `make archive` and at worker start by `ConfidenceOptions`:

    handler:
      module: examples/handlers/confident_text.py:ConfidentText
      options: {min_probability: 0.6, fallback_label: unsure}
      text: {tokenizer: tokenizer.json, max_length: 128, inputs: [input_ids, attention_mask]}

Answer per text: the text classifier's (`predicted_label`, `probabilities` or `top_k`) with `label` replaced
by `fallback_label` when the most probable class has less than `min_probability`, and `confident` saying which.
docs/custom-handlers.md walks through it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from handlers.answers import ImageAnswer
from handlers.base import Decoded
from handlers.outputs import ModelOutputs
from handlers.text import TextClassifier


class ConfidenceOptions(BaseModel):
    """`handler.options` of ConfidentText."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_probability: float = Field(gt=0, lt=1)  # below it, the answer's label is fallback_label
    fallback_label: str = Field("unsure", min_length=1, max_length=64)


class ConfidentText(TextClassifier):
    """TextClassifier whose answers abstain (`label` = fallback_label, `confident` false) below min_probability."""

    options_model = ConfidenceOptions

    def encode(self, outputs: ModelOutputs, item: Decoded) -> dict | list[dict]:
        answers = super().encode(outputs, item)
        marked = [self.abstain_below_threshold(answer) for answer in (answers if item.many else [answers])]
        return marked if item.many else marked[0]

    def abstain_below_threshold(self, answer: ImageAnswer) -> dict:
        """The answer, its label replaced by the fallback when its best probability is below the threshold."""
        best = max(answer["probabilities"]) if "probabilities" in answer else answer["top_k"][0]["probability"]
        confident = best >= self.options.min_probability
        return {**answer, "label": answer["label"] if confident else self.options.fallback_label,
                "confident": confident}
