"""The seam between editors and everything that runs and scores them.

An editor turns `(model, tokenizer, requests)` into an `Applied` handle. The harness and the
commands use only what the two protocols below list; what only some editors can do is a small
capability protocol, checked with `isinstance`, never guessed from an editor's name:

- `KeyValueWriter` (editor): writes one value under an MLP key read at a known layer and token
  (MEMIT, PMET, MEMIT-Merge, AlphaEdit), so requests whose keys coincide can be diagnosed;
- `KnowledgeKeys` (editor): the keys a retrieval memory would store for requests (AKD's
  counterpart for retrieval editors, MedREK Fig. 2c);
- `ReportsRetrieval` (applied handle): which stored edit each query retrieved;
- `RestoresSaved` (editor): loads back an edit it saved as something other than a model folder.

Scoring only ever sees a handle's `scorer` (log-probabilities, argmax agreement, generation),
so no metric needs to know which family of editor produced the edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch

from data.requests import EditRequest
from editors.hparams import Hparams
from lm.errors import UsageError
from lm.scoring import Scorer


class EditError(UsageError):
    """An edit was refused before the model was touched (non-finite update, no covariance, …);
    the message names the request(s) or layer."""


@runtime_checkable
class Applied(Protocol):
    """A live edit.

    `scorer` scores the edited model; `info` is what the editor wants recorded (layers, λ,
    losses, `info["seconds"]`, …; may be empty); `save(folder)` writes the edit into an existing
    empty folder: a model folder, or a form its editor's `RestoresSaved` reads back
    (`experiments.saved_edits` opens both); `undo()` returns the model to exactly its pre-edit
    state (a second call does nothing).
    """

    @property
    def scorer(self) -> Scorer: ...

    @property
    def info(self) -> Mapping[str, Any]: ...

    def save(self, folder: Path) -> None: ...

    def undo(self) -> None: ...


@runtime_checkable
class Editor(Protocol):
    """Anything that can write a batch of facts into a model.

    `hparams` are the settings recorded with every run (None: the editor has none of the
    editors/hparams kind, e.g. retrieval editors, whose settings are their trained network).
    `prepare(model, tok)` computes (or reads from caches) what every batch for this model needs,
    so a caller can do it once before starting parallel workers; it may do nothing.
    """

    name: str
    hparams: Hparams | None

    def prepare(self, model: Any, tok: Any) -> None: ...

    def apply(self, model: Any, tok: Any, requests: Sequence[EditRequest]) -> Applied: ...


@runtime_checkable
class KeyValueWriter(Protocol):
    """Capability: each request's value is written under the MLP key read at layer `key_layer`
    at token `key_token` (`editors.keys`). `merges_shared_keys` says what happens to requests
    whose keys coincide: they share one value (MEMIT-Merge) or overwrite each other (MEMIT,
    PMET, AlphaEdit), which callers should diagnose before applying."""

    merges_shared_keys: bool

    @property
    def key_layer(self) -> int: ...

    @property
    def key_token(self) -> str: ...


@runtime_checkable
class KnowledgeKeys(Protocol):
    """Capability of retrieval editors: the memory keys `[len(requests), r]` their `apply`
    would store for `requests` (nothing is stored)."""

    def knowledge_keys(self, requests: Sequence[EditRequest]) -> torch.Tensor: ...


@runtime_checkable
class ReportsRetrieval(Protocol):
    """Capability of retrieval edits, per query text: `retrieval_outcomes` gives the request
    whose stored entry it retrieved (None: nothing, or an entry not added through this handle's
    store); `retrieved_entries` the stored entry's metadata ({"prompt", "target_new",
    "subject"}; None: nothing retrieved), which entries loaded from a file have too."""

    def retrieval_outcomes(self, texts: Sequence[str]) -> list[EditRequest | None]: ...

    def retrieved_entries(self, texts: Sequence[str]) -> list[Mapping[str, Any] | None]: ...


@runtime_checkable
class RestoresSaved(Protocol):
    """Capability of editors whose saved edit is not a model folder (retrieval memories): the
    edit `Applied.save` wrote to `folder`, live again on the unedited `model`."""

    def load_saved(self, folder: Path, model: Any, tok: Any) -> Applied: ...
