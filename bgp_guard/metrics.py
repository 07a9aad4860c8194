"""The guard's Prometheus metrics on the replay path, made when first used.

prometheus_client brings an HTTP server and client with it: a tenth of a second of every
start, a sixth of a `guard replay` of ten thousand messages. A replay serves no metrics, so
it runs `unserved()` and never imports prometheus_client. Everywhere else (`guard watch`,
library use, tests) a metric is a real one, registered in `overcast.metrics.REGISTRY` when
first used, or by `create_all()` before /metrics is served so that each is listed from the
start.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

_served = True
_defined: list[Lazy] = []


class Lazy:
    """A prometheus_client Counter or Gauge, made on first use (see above)."""

    __slots__ = ("_args", "_kind", "_made")

    def __init__(
        self,
        kind: Literal["Counter", "Gauge"],
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
    ) -> None:
        self._kind = kind
        self._args = (name, documentation, tuple(labelnames))
        self._made: Any = None
        _defined.append(self)

    def _metric(self) -> Any:
        made = self._made
        if made is None:
            if not _served:
                return _NOTHING  # not kept: a later use, with metrics served, makes the metric
            import prometheus_client

            from overcast.metrics import REGISTRY

            kind = getattr(prometheus_client, self._kind)
            made = self._made = kind(*self._args, registry=REGISTRY)
        return made

    def labels(self, *values: str) -> Any:
        return self._metric().labels(*values)

    def inc(self, amount: float = 1) -> None:
        self._metric().inc(amount)

    def set(self, value: float) -> None:
        self._metric().set(value)


class _Nothing:
    """A metric while none are served: takes every change, keeps none."""

    def labels(self, *values: str) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass


_NOTHING = _Nothing()


@contextmanager
def unserved() -> Iterator[None]:
    """Within: metrics not made yet stay unmade (and prometheus_client unimported)."""
    global _served
    before, _served = _served, False
    try:
        yield
    finally:
        _served = before


def create_all() -> None:
    """Make every metric defined so far, so that /metrics lists each from the start."""
    for metric in _defined:
        metric._metric()
