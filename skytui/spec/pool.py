"""`pool:` of a pool YAML: PoolSpec, a fixed number of workers or an autoscaling range.

May touch `values`, `base` and `errors`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, Strict, ValidationInfo, model_validator

from skytui.spec.base import _SpecModel
from skytui.spec.errors import _fail
from skytui.spec.values import MAX_WHOLE


class PoolSpec(_SpecModel):
    """`pool:` of a pool YAML: a fixed number of workers, or autoscaling
    between min_workers and max_workers on the length of the pool's queue."""

    workers: Annotated[int, Strict(), Field(ge=0, le=10_000)] | None = None
    min_workers: Annotated[int, Strict(), Field(ge=0, le=10_000)] | None = None
    max_workers: Annotated[int, Strict(), Field(ge=1, le=10_000)] | None = None
    queue_length_threshold: Annotated[int, Strict(), Field(ge=1, le=MAX_WHOLE)] | None = None
    upscale_delay_seconds: Annotated[float, Field(ge=0, le=MAX_WHOLE, allow_inf_nan=False)] | None = None
    downscale_delay_seconds: Annotated[float, Field(ge=0, le=MAX_WHOLE, allow_inf_nan=False)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if data is None:
            raise _fail("must be a mapping: {workers: N} or {min_workers, max_workers}")
        if isinstance(data, dict):
            cls._refuse_unknown_keys(data, info)
        return data

    @model_validator(mode="after")
    def _check_shape(self) -> PoolSpec:
        autoscaling = {
            name for name in ("min_workers", "max_workers", "queue_length_threshold",
                              "upscale_delay_seconds", "downscale_delay_seconds")
            if getattr(self, name) is not None
        }
        if self.workers is not None and autoscaling:
            raise _fail(f"give either workers or autoscaling ({', '.join(sorted(autoscaling))}), not both",
                        sorted(autoscaling)[0])
        if self.workers is None and self.max_workers is None:
            if autoscaling:
                raise _fail("autoscaling needs max_workers", sorted(autoscaling)[0])
            raise _fail("needs workers: N, or min_workers and max_workers")
        if self.min_workers is not None and self.max_workers is not None and self.min_workers > self.max_workers:
            raise _fail(f"min_workers ({self.min_workers}) is greater than max_workers ({self.max_workers})",
                        "min_workers")
        return self

    @property
    def autoscaling(self) -> bool:
        return self.workers is None
