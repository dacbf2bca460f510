"""The scoring side of the one seam: teacher-forced target scores and generation (greedy, or
seeded top-k sampling to a fixed length for fluency).

Every metric reaches a model only through a `Scorer`. `LMScorer` implements it for any Hugging
Face causal LM. Retrieval editors subclass `LMScorer` and override its two extension points,
`forward_logits` (scoring) and `generate_ids` (generation), to run retrieval and prepend their
continuous prompts; tokenisation, padding, batching and the read-out of scores stay shared, so
a metric never learns which family of editor it is scoring.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

import torch

from lm.memory import halving_batch_on_out_of_memory, scorer_batch_size


@dataclass(frozen=True)
class TokenScores:
    """One teacher-forced target: its token ids, the log-probability the model gave each token,
    and the token the model ranked first at each of those positions."""

    target_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    argmax_ids: tuple[int, ...]

    @property
    def accuracy(self) -> float:
        """Fraction of target positions where the model's top token is the target token."""
        hits = sum(int(a == t) for a, t in zip(self.argmax_ids, self.target_ids))
        return hits / len(self.target_ids)

    @property
    def sum_logprob(self) -> float:
        """Log-probability of the whole target (natural log), i.e. log P(target | prompt)."""
        return float(sum(self.logprobs))


@dataclass(frozen=True)
class Continuation:
    """A generated continuation: its new token ids (no padding) and their decoded text."""

    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class TopKSampling:
    """Sampling as the ROME/MEMIT fluency evaluation does it (`generate_fast`): each new token is
    drawn from the `k` most likely ones (softmax at temperature 1 over those k), and the
    end-of-text/end-of-turn and other special tokens are never drawn, so every continuation has
    exactly the requested number of new tokens: a model that would stop early cannot score a
    different length. `seed` seeds a private copy of torch's generator (the global one is left
    as it was), so the same prompts, batch size and model give the same texts."""

    k: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"Top-k sampling needs k of at least 1, got {self.k}.")


@runtime_checkable
class Scorer(Protocol):
    """What scoring code may ask of a (possibly edited) model."""

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TokenScores]: ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int,
                 sampling: TopKSampling | None = None) -> list[str]: ...

    def continuations(self, prompts: Sequence[str], max_new_tokens: int,
                      sampling: TopKSampling | None = None) -> list[Continuation]: ...


def output_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """Float32 logits of final hidden states (rows chosen by the caller): the output head,
    then the final soft-capping of the families that have one (Gemma 2/3)."""
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only, correct for left, right or no padding.

    Padding slots get position 0; their outputs are never read.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int, side: Literal["left", "right"], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists to one `[batch, longest]` tensor; returns (input_ids, attention_mask)."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(0, len(seq)) if side == "right" else slice(longest - len(seq), longest)
        input_ids[row, span] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, span] = 1
    return input_ids.to(device), attention_mask.to(device)


# Rows per scoring and generation batch unless told otherwise; `lm.memory.scorer_batch_size`
# lowers it when the memory budget cannot hold it.
BATCH_SIZE = 32

# Padded tokens a scoring batch may hold, per row of `batch_size`: short texts fill whole
# batches, while a long one is scored with fewer (or no) others instead of padding them all.
TOKENS_PER_ROW = 128


def length_batches(lengths: Sequence[int], max_rows: int, max_padded_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length: sorted by length, each batch holds at
    most `max_rows` items and, padded to its longest, at most `max_padded_tokens` tokens (a
    longer item than that is a batch of its own)."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        batch = batches[-1] if batches else None
        # Sorted ascending, so this item is the longest of its batch: padded size = rows × its length.
        if batch and len(batch) < max_rows and (len(batch) + 1) * lengths[index] <= max_padded_tokens:
            batch.append(index)
        else:
            batches.append([index])
    return batches


class LMScorer:
    """`Scorer` for a Hugging Face causal LM and its tokenizer.

    Scoring: each prompt is tokenised with the tokenizer's usual special tokens (e.g. BOS), the
    target as `" " + target.lstrip()` without special tokens, and the two id lists are
    concatenated, so " Paris" and "Paris" score identically. Pairs are sorted by length,
    right-padded and run in batches of `batch_size`.

    The model is used as given (call `model.eval()` beforehand so dropout is off); neither the
    model nor the tokenizer is modified.

    Extension points for editors that change the forward pass without changing weights:
      - `forward_hidden(input_ids, attention_mask, prompts)` must return the final hidden
        states `[B, T, d]` (after the final norm, before the output head) aligned with
        `input_ids` (position t predicts token t + 1); the scorer applies the output head only
        at the target positions, since full-vocabulary logits at every position are a fifth of
        a scoring pass on the embedded model. A retrieval editor retrieves with `prompts` (the
        raw prompt texts of the batch, without targets), prepends its continuous prompt
        embeddings, extends the mask (`positions_from_mask` gives matching position ids) and
        strips the prepended positions from the states it returns.
      - `generate_ids(input_ids, attention_mask, prompts, max_new_tokens, decoding)` receives a
        left-padded batch and must return only the new token ids `[B, <= max_new_tokens]`,
        padded with `pad_id` after a row ends. `decoding` holds the keyword arguments for the
        model's `generate` (greedy or top-k sampling, see `decoding_arguments`); an override
        passes them on unchanged so that every path decodes alike.
    """

    def __init__(self, model: Any, tok: Any, batch_size: int = BATCH_SIZE):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.model = model
        self.tok = tok
        self.batch_size = batch_size
        # Models positioned by ALiBi or similar take no position ids; the rest get ids derived
        # from the mask so that no padding side is ever assumed.
        self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters

    @classmethod
    def within_budget(cls, model: Any, tok: Any) -> "LMScorer":
        """A scorer whose batches are sized from the memory budget (`lm.memory.scorer_batch_size`;
        the model's architecture must be one `lm.adapters` knows)."""
        return cls(model, tok, scorer_batch_size(model))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_id(self) -> int:
        """Filler id for padded slots: the pad token, else EOS (never written into `tok`)."""
        for candidate in (self.tok.pad_token_id, self.tok.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0  # No pad and no EOS: the id only fills masked slots, so any id will do.

    # ----- scoring -------------------------------------------------------------------------

    @halving_batch_on_out_of_memory
    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TokenScores]:
        """Teacher-forced scores of each target after its prompt, in input order."""
        if len(prompts) != len(targets):
            raise ValueError(f"Got {len(prompts)} prompts but {len(targets)} targets.")
        if not prompts:
            return []
        prompt_ids = self._encode_prompts(prompts)
        target_ids = self._encode_targets(targets)
        results: list[TokenScores | None] = [None] * len(prompts)
        lengths = [len(p) + len(t) for p, t in zip(prompt_ids, target_ids)]
        for chunk in length_batches(lengths, self.batch_size, self.batch_size * TOKENS_PER_ROW):
            scored = self._score_batch(
                [prompt_ids[i] for i in chunk],
                [target_ids[i] for i in chunk],
                [prompts[i] for i in chunk],
            )
            for index, item in zip(chunk, scored):
                results[index] = item
        return results  # type: ignore[return-value]  # every slot was filled above

    def forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: Sequence[str]
    ) -> torch.Tensor:
        """Final hidden states `[B, T, d]` of the plain model; `prompts` is unused here (see
        class doc)."""
        del prompts
        extra = {"position_ids": positions_from_mask(attention_mask)} if self._takes_position_ids else {}
        body = self.model.base_model
        return body(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    def _score_batch(
        self,
        prompt_ids: Sequence[list[int]],
        target_ids: Sequence[list[int]],
        prompts: Sequence[str],
    ) -> list[TokenScores]:
        sequences = [p + t for p, t in zip(prompt_ids, target_ids)]
        input_ids, attention_mask = pad_sequences(sequences, self.pad_id, "right", self.device)
        # Target token j of row r sits at len(prompt) + j and is predicted one position earlier.
        rows, cols, wanted = [], [], []
        for row, (p, t) in enumerate(zip(prompt_ids, target_ids)):
            rows.extend([row] * len(t))
            cols.extend(range(len(p) - 1, len(p) + len(t) - 1))
            wanted.extend(t)
        with torch.inference_mode():
            hidden = self.forward_hidden(input_ids, attention_mask, prompts)
            index_device = hidden.device
            picked = output_logits(self.model, hidden[
                torch.tensor(rows, device=index_device), torch.tensor(cols, device=index_device)
            ])
            logprobs = picked.log_softmax(-1)
            wanted_ids = torch.tensor(wanted, device=index_device)[:, None]
            token_logprobs = logprobs.gather(1, wanted_ids).squeeze(1).tolist()
            argmax = picked.argmax(-1).tolist()
        scores, offset = [], 0
        for t in target_ids:
            span = slice(offset, offset + len(t))
            scores.append(TokenScores(tuple(t), tuple(token_logprobs[span]), tuple(argmax[span])))
            offset += len(t)
        return scores

    # ----- generation ----------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], max_new_tokens: int,
                 sampling: TopKSampling | None = None) -> list[str]:
        """Continuation of each prompt (greedy, or `sampling`); only the new text, in input order."""
        return [found.text for found in self.continuations(prompts, max_new_tokens, sampling)]

    @halving_batch_on_out_of_memory
    def continuations(self, prompts: Sequence[str], max_new_tokens: int,
                      sampling: TopKSampling | None = None) -> list[Continuation]:
        """Each prompt's continuation (new token ids without padding, and their text), in
        input order.

        With `sampling`, torch's generator is seeded once per call inside a forked RNG state,
        and the batches are drawn in a fixed order (prompts sorted by length, `batch_size` at a
        time), so the draws depend on the prompts and the batch size only.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
        if not prompts:
            return []
        prompt_ids = self._encode_prompts(prompts)
        decoding = decoding_arguments(self.model, self.tok, max_new_tokens, sampling)
        found: list[Continuation | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))
        with torch.random.fork_rng(devices=[]):
            if sampling is not None:
                torch.manual_seed(sampling.seed)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                # Left padding so every row's next token is predicted from the last column.
                input_ids, attention_mask = pad_sequences(
                    [prompt_ids[i] for i in chunk], self.pad_id, "left", self.device
                )
                with torch.inference_mode():
                    new_ids = self.generate_ids(
                        input_ids, attention_mask, [prompts[i] for i in chunk], max_new_tokens,
                        decoding=decoding,
                    )
                for index, row in zip(chunk, new_ids.tolist()):
                    ids = _strip_padding(row, self.pad_id, decoding)
                    found[index] = Continuation(self.tok.decode(ids, skip_special_tokens=True), ids)
        return found  # type: ignore[return-value]  # every slot was filled above

    def generate_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompts: Sequence[str],
        max_new_tokens: int,
        decoding: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """New token ids of a continuation of the plain model (see class doc); greedy unless
        `decoding` says otherwise. EOS and any other logits processors come from the model's own
        `generation_config` unless `decoding` overrides them."""
        del prompts
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            **(decoding or GREEDY),
        )
        return output[:, input_ids.shape[1] :]

    # ----- tokenisation --------------------------------------------------------------------

    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        encoded = self.tok(list(prompts))["input_ids"]
        for index, ids in enumerate(encoded):
            # The first target token is predicted from the last prompt token, so one must exist.
            if not ids:
                raise ValueError(f"Prompt {index} ({prompts[index]!r}) encodes to no tokens.")
        return [list(ids) for ids in encoded]

    def _encode_targets(self, targets: Sequence[str]) -> list[list[int]]:
        for index, target in enumerate(targets):
            # " " alone would still encode to a space token and be scored as a real target.
            if not target.strip():
                raise ValueError(f"Target {index} ({target!r}) is empty.")
        spaced = [" " + target.lstrip() for target in targets]
        encoded = self.tok(spaced, add_special_tokens=False)["input_ids"]
        for index, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"Target {index} ({targets[index]!r}) encodes to no tokens.")
        return [list(ids) for ids in encoded]


GREEDY: Mapping[str, Any] = MappingProxyType({"do_sample": False, "num_beams": 1})


def decoding_arguments(model: Any, tok: Any, max_new_tokens: int,
                       sampling: TopKSampling | None) -> dict[str, Any]:
    """Keyword arguments of `model.generate` for greedy decoding or `sampling`.

    Sampling overrides whatever the model's `generation_config` sets (top-p, temperature,
    repetition penalties), suppresses every special token (end of text, end of turn, BOS, pad)
    and asks for `max_new_tokens` at least, so no row ends early.
    """
    if sampling is None:
        return dict(GREEDY)
    ends = model.generation_config.eos_token_id
    ends = [] if ends is None else [ends] if isinstance(ends, int) else list(ends)
    special = sorted({int(i) for i in [*tok.all_special_ids, *ends] if i is not None})
    return {"do_sample": True, "num_beams": 1, "top_k": sampling.k, "top_p": 1.0,
            "temperature": 1.0, "repetition_penalty": 1.0, "suppress_tokens": special,
            "min_new_tokens": max_new_tokens}


def _strip_padding(ids: Sequence[int], pad_id: int, decoding: Mapping[str, Any]) -> tuple[int, ...]:
    """A generated row without the padding after its end (sampled rows never end early, and
    their pad id may be a suppressed token only: nothing to strip)."""
    if decoding.get("do_sample"):
        return tuple(ids)
    row = list(ids)
    while row and row[-1] == pad_id:
        row.pop()
    return tuple(row)
