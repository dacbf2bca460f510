"""What the covariance cache needs to know about a model and its tokenizer, as plain data.

Every cache key is derived from a `ModelFacts` by `keys_for_identity`, whether the identity
was measured on a loaded model (`ModelFacts.of`) or recalled from a memo without loading it
(`covariance.cache_hit`), so both routes name the same cache files by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Sequence

from covariance.cache import StatisticKey, tokenizer_fingerprint
from covariance.collect import CollectOptions, forward_dtype
from covariance.corpus import Corpus
from lm.adapters import adapter_for, adapter_for_type
from lm.loading import model_fingerprint


@dataclass(frozen=True)
class ModelFacts:
    """The facts about a model and its tokenizer that a statistic's cache key depends on (not
    `retrieval.memory.ModelIdentity`, which names the LLM an edit memory was built for)."""

    model_fingerprint: str
    tokenizer_fingerprint: str
    model_type: str
    num_layers: int
    mlp_width: int  # d_ff: every layer's statistic is mlp_width × mlp_width
    native_forward_dtype: str  # what `forward_dtype` gives without bf16, e.g. "float32"
    bf16_forward_dtype: str  # ... and with it

    @classmethod
    def of(cls, model, tok) -> "ModelFacts":
        adapter = adapter_for(model)
        _, mlp_width = adapter.widths(model)
        return cls(
            model_fingerprint=model_fingerprint(model),
            tokenizer_fingerprint=tokenizer_fingerprint(tok),
            model_type=model.config.model_type,
            num_layers=adapter.num_layers(model),
            mlp_width=mlp_width,
            native_forward_dtype=_dtype_name(forward_dtype(model, bf16=False)),
            bf16_forward_dtype=_dtype_name(forward_dtype(model, bf16=True)),
        )

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, facts: dict) -> "ModelFacts | None":
        """The identity stored by `as_json`, or None if the facts do not have its exact shape."""
        expected = {field.name: field.type for field in fields(cls)}
        if set(facts) != set(expected):
            return None
        if not all(isinstance(facts[name], int if kind == "int" else str) for name, kind in expected.items()):
            return None
        return cls(**facts)


def keys_for_identity(
    identity: ModelFacts, layers: Sequence[int], corpus: Corpus, options: CollectOptions
) -> dict[int, StatisticKey]:
    adapter = adapter_for_type(identity.model_type)
    common = dict(
        model=identity.model_fingerprint,
        tokenizer=identity.tokenizer_fingerprint,
        corpus=corpus.digest,
        token_budget=options.token_budget,
        max_length=options.max_length,
        compute_dtype=identity.bf16_forward_dtype if options.bf16 else identity.native_forward_dtype,
    )
    return {layer: StatisticKey(module=adapter.mlp_out_name(layer), layer=layer, **common) for layer in layers}


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")
