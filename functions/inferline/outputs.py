"""Model scores to answers, as the spec's output mapping says: a threshold for binary models,
top-k labels for multiclass ones."""

from __future__ import annotations

from typing import Any

from inferline.spec import ModelSpec


class BadModelOutput(ValueError):
    """The endpoint's answer does not fit the request or the spec: a server fault."""


def map_scores(spec: ModelSpec, classes: list[Any], scores: list[Any], expected: int) -> list[dict]:
    """One {"label", "score"} (plus "top_k" for multiclass) per instance, in request order."""
    if len(scores) != expected:
        raise BadModelOutput(f"endpoint returned {len(scores)} scores for {expected} instances")
    if [str(c) for c in classes] != [str(c) for c in spec.target.classes]:
        raise BadModelOutput(
            f"endpoint classes {classes} differ from the spec's {spec.target.classes}"
        )
    if spec.task == "binary":
        negative, positive = spec.target.classes
        threshold = spec.output.threshold
        return [
            {
                "label": spec.label_for(positive if float(s) >= threshold else negative),
                "score": float(s),
            }
            for s in scores
        ]
    k = spec.output.top_k
    results = []
    for row in scores:
        if len(row) != len(spec.target.classes):
            raise BadModelOutput("endpoint returned a probability row of the wrong length")
        pairs = zip(spec.target.classes, row, strict=True)
        ranked = sorted(pairs, key=lambda cs: -float(cs[1]))[:k]
        top = [{"label": spec.label_for(c), "score": float(p)} for c, p in ranked]
        results.append({"label": top[0]["label"], "score": top[0]["score"], "top_k": top})
    return results
