"""A test-only handler of the e2e tier: the tabular classifier, slower by `handler.options.delay_ms` per batch, to
exercise responseTimeout, a full job queue and a drain on a real TorchServe. Archived as a handler of your own
(`handler.module: tests/e2e/slow_handler.py:SlowTabular`), so nothing test-only ships in the handler library."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from handlers.base import Batch
from handlers.tabular import TabularClassifier


class SlowOptions(BaseModel):
    """`handler.options` of SlowTabular."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_ms: int = Field(ge=0, le=600_000)  # sleep this long in each batch's inference


class SlowTabular(TabularClassifier):
    """TabularClassifier whose inference sleeps `delay_ms` first (the warm-up forward of initialize does not)."""

    options_model = SlowOptions

    def inference(self, batch: Batch) -> Batch:
        time.sleep(self.options.delay_ms / 1000)
        return super().inference(batch)
