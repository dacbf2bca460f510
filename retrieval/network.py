"""The trainable part of a retrieval editor: what RECIPE and MedREK differ in, as configuration.

Both map pooled encoder vectors (RECIPE §4.1–4.2; MedREK §4.2) to
  - a memory key per edit and a query per incoming prompt (compared by cosine similarity),
  - the knowledge sentinel's key (MedREK's knowledge prototype), the per-query threshold,
  - a continuous prompt [T, d_llm] per edit.
RECIPE: key from the statement (prompt + target) through MLP_K, query through a separate
MLP_Q, prompt = MLP_P(MLP_K(statement)). MedREK: key from the question only through the
shared MLP_qk that also encodes queries, prompt from the statement through a separate MLP_v and
an attention prompt encoder. The ablations are the mixtures in between.

Keys, queries and the sentinel are L2-normalised: with raw dot products a key of large norm
beats the sentinel for every query, and the InfoNCE temperature (learned here) would fight the
projections' scale; the comparison "entry beats sentinel" is the paper's, on the unit sphere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from data.requests import EditRequest
from retrieval.modules import (
    AttentionPromptEncoder,
    CopySlots,
    EncoderSlots,
    KnowledgeSentinel,
    MLPPromptEncoder,
    ProjectionMLP,
)

# A learned InfoNCE scale above this lets the loss reward ever larger logits instead of better
# rankings (CLIP caps its scale the same way).
MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a retrieval editor. Widths: encoder pooled 4h, representation r, LLM d."""

    name: str
    key_source: Literal["statement", "question"]
    shared_query_key: bool
    prompt_source: Literal["key", "value"]
    prompt_encoder: Literal["mlp", "attention"]
    encoder_hidden: int  # h; the pooled encoder vector is 4h wide
    llm_width: int
    embedding_scale: float  # std of the LLM's input embeddings (prompt initial scale)
    width: int = 512
    prompt_length: int = 3
    sentinel_tokens: int = 10
    slots: int = 4
    copy_tokens: int = 0
    # Encoder slots: the knowledge encoder's last-layer states of the statement's last tokens.
    # Checkpoints written before this setting existed have none (the default).
    encoder_tokens: int = 0
    heads: int = 8
    initial_logit_scale: float = 10.0

    def __post_init__(self):
        if self.key_source not in ("statement", "question"):
            raise ValueError(f"key_source must be 'statement' or 'question', got {self.key_source!r}.")
        if self.prompt_source not in ("key", "value"):
            raise ValueError(f"prompt_source must be 'key' or 'value', got {self.prompt_source!r}.")
        if self.prompt_encoder not in ("mlp", "attention"):
            raise ValueError(f"prompt_encoder must be 'mlp' or 'attention', got {self.prompt_encoder!r}.")
        if self.prompt_source == "key" and self.key_source != "statement":
            raise ValueError("A prompt made from the key needs keys built from the statement.")
        if self.prompt_source == "key" and self.shared_query_key:
            raise ValueError("A prompt made from the key needs a key MLP of its own, not a shared one.")
        for field in ("width", "prompt_length", "sentinel_tokens", "slots", "heads"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}.")
        for field in ("copy_tokens", "encoder_tokens"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be non-negative, got {getattr(self, field)}.")
        if self.prompt_encoder == "mlp" and (self.copy_tokens or self.encoder_tokens):
            raise ValueError("Copy and encoder slots are read by the attention prompt encoder only; "
                             "set copy_tokens and encoder_tokens to 0 with prompt_encoder 'mlp'.")

    @classmethod
    def for_models(cls, encoder, llm, **settings) -> "NetworkConfig":
        """The architecture `settings` for this knowledge encoder and LLM: the widths and the
        prompts' initial scale are read from the two models."""
        return cls(encoder_hidden=encoder.hidden_width, llm_width=llm.get_input_embeddings().embedding_dim,
                   embedding_scale=llm_embedding_scale(llm), **settings)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, fields: dict) -> "NetworkConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown network settings {unknown}")
        return cls(**fields)


def statement_text(request: EditRequest) -> str:
    """The edit as one sentence: prompt followed by the new target (RECIPE's k = q ⊕ a)."""
    return f"{request.prompt} {request.target_new.strip()}"


class RetrievalNetwork(nn.Module):
    """Projections, prompt encoder and sentinel of one retrieval editor (see module docstring)."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        pooled_width = 4 * config.encoder_hidden
        self.key_mlp = ProjectionMLP(pooled_width, config.width)
        self.query_mlp = None if config.shared_query_key else ProjectionMLP(pooled_width, config.width)
        self.value_mlp = ProjectionMLP(pooled_width, config.width) if config.prompt_source == "value" else None
        if config.prompt_encoder == "attention":
            self.prompt_encoder = AttentionPromptEncoder(
                config.width, config.prompt_length, config.llm_width, config.embedding_scale,
                slots=config.slots, copy_tokens=config.copy_tokens, heads=config.heads,
                encoder_tokens=config.encoder_tokens, encoder_width=config.encoder_hidden,
            )
        else:
            self.prompt_encoder = MLPPromptEncoder(
                config.width, config.prompt_length, config.llm_width, config.embedding_scale
            )
        self.sentinel = KnowledgeSentinel(config.sentinel_tokens, config.encoder_hidden)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(config.initial_logit_scale)))

    @classmethod
    def initialised(cls, config: NetworkConfig, encoder, seed: int = 0) -> "RetrievalNetwork":
        """A new network (seeded) whose sentinel starts as the encoder embeddings of random real
        tokens, so the frozen encoder first sees it as an ordinary (if odd) text."""
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            network = cls(config)
        if network.query_mlp is not None:
            # Queries start in the key space, so an edit query starts nearest its own key (top-1
            # 1.00 at step 0). This alone does not prevent RECIPE's collapse at a retriever rate of
            # 1e-3 (every query on the sentinel, neighbour InfoNCE stuck near 2 ln 257): the
            # pooled features share one large component, so Adam's first steps shift all keys
            # and queries together; RECIPE trains its retriever at 1e-4 (retrieval/README.md).
            network.query_mlp.load_state_dict(network.key_mlp.state_dict())
        table = encoder.input_embeddings.weight.detach().cpu()
        tokens = torch.randint(0, table.shape[0], (config.sentinel_tokens,), generator=generator)
        with torch.no_grad():
            network.sentinel.embeddings.copy_(table[tokens])
        return network

    # ----- texts ---------------------------------------------------------------------------

    def key_text(self, request: EditRequest) -> str:
        return request.prompt if self.config.key_source == "question" else statement_text(request)

    @staticmethod
    def value_text(request: EditRequest) -> str:
        return statement_text(request)

    @property
    def copies_statement(self) -> bool:
        """Whether prompts take the statement's last LLM token embeddings as copy slots."""
        return self.config.prompt_encoder == "attention" and self.config.copy_tokens > 0

    # ----- representations -----------------------------------------------------------------

    def keys(self, key_features: torch.Tensor) -> torch.Tensor:
        """Unit memory keys [N, r] from pooled key-text vectors [N, 4h]."""
        return F.normalize(self.key_mlp(key_features), dim=-1)

    def queries(self, query_features: torch.Tensor) -> torch.Tensor:
        """Unit queries [N, r] from pooled query vectors [N, 4h]."""
        mlp = self.key_mlp if self.query_mlp is None else self.query_mlp
        return F.normalize(mlp(query_features), dim=-1)

    def sentinel_key(self, encoder) -> torch.Tensor:
        """The sentinel's unit key [1, r], projected like a memory key."""
        return self.keys(self.sentinel.pooled(encoder))

    @property
    def reads_encoder_tokens(self) -> bool:
        """Whether prompts attend over the knowledge encoder's token states of the statement."""
        return self.config.prompt_encoder == "attention" and self.config.encoder_tokens > 0

    def prompts(
        self, value_features: torch.Tensor, copies: CopySlots | None = None, encoded: EncoderSlots | None = None
    ) -> torch.Tensor:
        """Continuous prompts [N, T, d] from pooled statement vectors [N, 4h] (+ token slots)."""
        mlp = self.key_mlp if self.value_mlp is None else self.value_mlp
        return self.prompt_encoder(mlp(value_features), copies, encoded)

    def statement_prompts(
        self, value_features: torch.Tensor, statements: Sequence[str], llm, tok, encoder
    ) -> torch.Tensor:
        """`prompts` with the token slots the prompt encoder takes from the statements: the LLM's
        embeddings of their tokens (copy slots) and/or the knowledge encoder's states."""
        copies = (statement_token_embeddings(llm, tok, statements, self.config.copy_tokens)
                  if self.copies_statement else None)
        encoded = None
        if self.reads_encoder_tokens:
            with torch.no_grad():  # the encoder is frozen
                encoded = EncoderSlots(*encoder.token_states(statements, self.config.encoder_tokens))
        return self.prompts(value_features, copies, encoded)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(retriever parameters, prompt-path parameters). A key MLP that also feeds the prompt
        (RECIPE) counts as retriever: both losses train it."""
        prompt_modules = [self.prompt_encoder] + ([self.value_mlp] if self.value_mlp is not None else [])
        prompt = [p for module in prompt_modules for p in module.parameters()]
        chosen = {id(p) for p in prompt}
        return [p for p in self.parameters() if id(p) not in chosen], prompt

    def part_parameters(self, part: str) -> dict[str, nn.Parameter]:
        """The named parameters of one part, "retriever" or "prompts" (as `parameter_groups` splits them)."""
        if part not in ("retriever", "prompts"):
            raise ValueError(f"A network's parts are 'retriever' and 'prompts', not {part!r}.")
        prompt = {id(p) for p in self.parameter_groups()[1]}
        return {name: p for name, p in self.named_parameters() if (id(p) in prompt) == (part == "prompts")}

    @property
    def logit_scale(self) -> torch.Tensor:
        """InfoNCE inverse temperature, learned and capped at MAX_LOGIT_SCALE."""
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def llm_embedding_scale(llm) -> float:
    """Std of the LLM's input embedding entries: the scale a prompt vector should start at."""
    return float(llm.get_input_embeddings().weight.detach().float().std())


def statement_token_embeddings(llm, tok, statements: Sequence[str], limit: int) -> CopySlots:
    """The copy slots of each statement: the LLM's input embeddings of its last `limit` tokens,
    last token first (n <= limit slots per row)."""
    embedding = llm.get_input_embeddings()
    device = embedding.weight.device
    ids = [
        tok(statement, add_special_tokens=False)["input_ids"][::-1][:limit]
        for statement in statements
    ]
    longest = max((len(row) for row in ids), default=0)
    padded = torch.zeros(len(ids), longest, dtype=torch.long, device=device)
    mask = torch.zeros(len(ids), longest, dtype=torch.bool, device=device)
    for row, row_ids in enumerate(ids):
        padded[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        mask[row, : len(row_ids)] = True
    with torch.no_grad():
        return CopySlots(embedding(padded).float(), mask)
