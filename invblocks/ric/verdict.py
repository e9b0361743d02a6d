"""How good a trained model is: its margin over the task's trivial answer, its embedding's
quality, and one score that counts both.

A model that restores no better than the trivial answer (the reference repeated, upscaled or
made gray: the task's ``baseline``) is useless however low its loss, and so
is one whose embedding does not look like the reference. The trainer judges every validation
by :class:`Verdict` (keeping the checkpoint of the best score) and ends with its
:meth:`Verdict.line`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

__all__ = ["EMBEDDING_TARGET", "Verdict", "margin"]

EMBEDDING_TARGET = 30.0
"""The embedding PSNR in dB under which the embedding is visibly not the reference."""


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def margin(metrics: Mapping[str, float]) -> float | None:
    """The restored images' PSNR over the trivial restoration's, in dB, from the metrics of
    :func:`~invblocks.ric.evaluation.evaluate`: over the images other than the one the
    reference is made from where there are several (the right view, the secret, the other
    frames), over the image itself where there is one; ``None`` without a baseline."""
    for suffix in ("_no_ref", ""):
        restored = _finite(metrics.get(f"restored_psnr{suffix}"))
        baseline = _finite(metrics.get(f"baseline_psnr{suffix}"))
        if restored is not None and baseline is not None:
            return restored - baseline
    return None


@attrs.frozen(kw_only=True)
class Verdict:
    """A model's validation judged against its task's targets.

    Attributes:
        restored_psnr: The restored images' PSNR (dB).
        margin: dB over the trivial restoration (:func:`margin`; ``None``: the task has no
            baseline).
        embedding_psnr: The embedding's PSNR against the reference (``None``: no reference).
        margin_target: The margin a useful model reaches (the task's
            ``margin_target``).
        embedding_target: The embedding PSNR a useful model reaches.
    """

    restored_psnr: float
    margin: float | None
    embedding_psnr: float | None
    margin_target: float = 0.0
    embedding_target: float = EMBEDDING_TARGET

    @classmethod
    def of(
        cls,
        metrics: Mapping[str, float],
        margin_target: float = 0.0,
        embedding_target: float = EMBEDDING_TARGET,
    ) -> Verdict:
        """The verdict on the metrics of one evaluation."""
        restored = _finite(metrics.get("restored_psnr"))
        return cls(
            restored_psnr=math.nan if restored is None else restored,
            margin=margin(metrics),
            embedding_psnr=_finite(metrics.get("embedding_psnr")),
            margin_target=margin_target,
            embedding_target=embedding_target,
        )

    @property
    def score(self) -> float:
        """How many dB the model is above the nearer target, the smaller of ``margin -
        margin_target`` and ``embedding_psnr - embedding_target`` (of those the task has; the
        restored PSNR for a task with neither). Non-negative when both targets are met; higher
        is better."""
        parts = []
        if self.margin is not None:
            parts.append(self.margin - self.margin_target)
        if self.embedding_psnr is not None:
            parts.append(self.embedding_psnr - self.embedding_target)
        return min(parts) if parts else self.restored_psnr

    @property
    def shortfalls(self) -> tuple[str, ...]:
        """What falls short, ``"margin"``, ``"embedding"``, neither or both."""
        short = []
        if self.margin is not None and self.margin < self.margin_target:
            short.append("margin")
        if self.embedding_psnr is not None and self.embedding_psnr < self.embedding_target:
            short.append("embedding")
        return tuple(short)

    @property
    def ok(self) -> bool:
        """Both targets met."""
        return not self.shortfalls

    def line(self, split: str = "the validation split") -> str:
        """One sentence: ``"restores 2.31 dB above the trivial answer on the validation
        split; embedding 34.20 dB"``."""
        if self.margin is None:
            said = f"restores {self.restored_psnr:.2f} dB PSNR on {split}"
        else:
            side = "above" if self.margin >= 0 else "below"
            said = f"restores {abs(self.margin):.2f} dB {side} the trivial answer on {split}"
        if self.embedding_psnr is not None:
            said += f"; embedding {self.embedding_psnr:.2f} dB"
        return said

    def advice(self) -> str:
        """What to try for each shortfall (``""`` when there is none)."""
        tips = []
        if "margin" in self.shortfalls:
            tips.append(
                "train longer (--set cpu_budget=SECONDS), on more data (--set data=FOLDER), "
                "or with the task's default recipe"
            )
        if "embedding" in self.shortfalls:
            tips.append(
                f"the embedding is under {self.embedding_target:g} dB: weight it more "
                "(--set losses.embedding=WEIGHT) or train longer"
            )
        return "; ".join(tips)
