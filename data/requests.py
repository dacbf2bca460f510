"""The edit-request record every loader builds and every editor consumes.

It imports nothing of the project but the leaf `lm.errors`, so the data loaders (below the editors) and the editors
can both use it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from lm.errors import UsageError


class EditRequestError(UsageError):
    """A request cannot be edited as given (the message names the request and the field)."""


@dataclass(frozen=True)
class LocalityProbe:
    """An unrelated prompt whose prediction the edit must leave unchanged."""

    prompt: str
    ground_truth: str


@dataclass(frozen=True)
class EditRequest:
    """One fact to write into a model.

    `subject` is a span that occurs verbatim in `prompt` (MEMIT keys are read at its last
    token); it is None when the record has no entity span (MedVersa), in which case
    locate-then-edit editors use the prompt's last token. `locality` maps a group name
    (`td`, `em`, `ss`, `ts` for MedCF; `default` elsewhere) to its probes.
    """

    prompt: str
    target_new: str
    subject: str | None = None
    target_true: str | None = None
    rephrase_prompts: tuple[str, ...] = ()
    locality: Mapping[str, tuple[LocalityProbe, ...]] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Field-level reasons this request cannot be edited (empty when it is valid)."""
        found = []
        if not self.prompt.strip():
            found.append("field 'prompt' is empty")
        if not self.target_new.strip():
            found.append("field 'target_new' is empty")
        if self.subject is not None:
            if not self.subject.strip():
                found.append("field 'subject' is empty")
            elif self.subject not in self.prompt:
                found.append(f"subject {self.subject!r} does not occur in prompt {self.prompt!r}")
        return found


def validate_requests(requests: Sequence[EditRequest]) -> None:
    """Raise `EditRequestError` naming the first invalid request by its index in the batch."""
    if not requests:
        raise EditRequestError("No edit requests were given.")
    for index, request in enumerate(requests):
        problems = request.problems()
        if problems:
            raise EditRequestError(f"Request {index}: {problems[0]}.")
