"""The test-time frame window of the temporal models, causal or with a bounded lookahead (the
original's ``INTERVAL_PRE_TEST`` / ``INTERVAL_AFTER_TEST``): which buffered frames a frame is
answered with, and when."""

from __future__ import annotations

from collections import deque
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class LookaheadWindow(Generic[T]):
    """A FIFO of per-frame items of one video, ``before + after + 1`` long.

    Frame ``t`` is answered once frame ``t + after`` has been appended (:meth:`pop_ready`), with
    the window of frames ``t - before .. t + after``; at the end of the video :meth:`drain`
    answers the frames still waiting with the later frames that exist. ``after = 0`` is causal:
    every frame is answered as it arrives, with the ``before`` frames preceding it.

    Args:
        before: earlier frames in a window (``interval_pre_test``).
        after: later frames waited for (``interval_after_test``).
    """

    def __init__(self, *, before: int, after: int):
        self.before = before
        self.after = after
        self.items: deque[T] = deque(maxlen=before + after + 1)
        self.pending = 0  # appended frames not answered yet (<= after)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def clear(self) -> None:
        """Start a new video."""
        self.items.clear()
        self.pending = 0

    def append(self, item: T) -> None:
        """Buffer the newest frame's item (the oldest item leaves when the FIFO is full)."""
        self.items.append(item)
        self.pending += 1

    def pop_ready(self) -> tuple[list[T], int] | None:
        """``(window, index)`` of the oldest waiting frame once ``after`` later frames are in:
        ``window`` = the items of frames ``t - before .. t + after`` (oldest first, fewer at the
        start of a video), ``window[index]`` = frame ``t``'s; None while it waits."""
        return self._pop() if self.pending > self.after else None

    def drain(self) -> list[tuple[list[T], int]]:
        """At the end of a video, ``(window, index)`` of every frame still waiting (oldest first);
        the window of frame ``t`` then ends at the last frame."""
        return [self._pop() for _ in range(self.pending)]

    def _pop(self) -> tuple[list[T], int]:
        position = len(self.items) - self.pending
        first = max(0, position - self.before)
        self.pending -= 1
        return list(self.items)[first:], position - first
