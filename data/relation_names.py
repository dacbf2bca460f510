"""Short phrases naming CounterFact's inferred relations, read from
`files/counterfact/relation_names.json`.

MEMIT-Merge's App. C writes edits with a relation slot ("{subject}'s {relation} is"), but the
MEND/RECIPE layout of CounterFact stores prompts only. `data.relations.infer_relations` (on
train + test) groups the prompt templates into relations, each named by its smallest template;
the file maps each such name to a phrase written by hand from the group's templates (its
"about" field says how, including the groups that merge several Wikidata relations).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from lm.errors import UsageError

COUNTERFACT_RELATION_NAMES = Path(__file__).with_name("files") / "counterfact" / "relation_names.json"


class RelationNameError(UsageError, LookupError):
    """A relation has no phrase, or the phrase file is unreadable (one sentence says which)."""


@dataclass(frozen=True)
class RelationNames:
    """Inferred relation (its smallest template, e.g. "The capital city of {} is") -> phrase."""

    phrases: Mapping[str, str]

    def phrase(self, relation: str) -> str:
        try:
            return self.phrases[relation]
        except KeyError:
            raise RelationNameError(
                f"No relation phrase for the inferred relation {relation!r}; add it to "
                f"{COUNTERFACT_RELATION_NAMES.name}."
            ) from None


def counterfact_relation_names(path: Path = COUNTERFACT_RELATION_NAMES) -> RelationNames:
    """The shipped phrases; RelationNameError if the file is missing or malformed."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RelationNameError(f"Cannot read the relation phrases in {path} ({error}).") from None
    phrases = document.get("relations") if isinstance(document, dict) else None
    if not isinstance(phrases, dict) or not all(
        isinstance(key, str) and isinstance(value, str) and value.strip()
        for key, value in phrases.items()
    ):
        raise RelationNameError(f"{path} must hold an object 'relations' mapping names to non-empty phrases.")
    return RelationNames(MappingProxyType(dict(phrases)))
