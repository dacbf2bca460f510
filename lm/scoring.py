"""The scoring side of the one seam: teacher-forced target scores and greedy generation.

Every metric reaches a model only through a `Scorer`. `LMScorer` implements it for any Hugging
Face causal LM. Retrieval editors subclass `LMScorer` and override its two extension points,
`forward_logits` (scoring) and `generate_ids` (generation), to run retrieval and prepend their
continuous prompts; tokenisation, padding, batching and the read-out of scores stay shared, so
a metric never learns which family of editor it is scoring.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import torch


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


@runtime_checkable
class Scorer(Protocol):
    """What scoring code may ask of a (possibly edited) model."""

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TokenScores]: ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...


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
      - `generate_ids(input_ids, attention_mask, prompts, max_new_tokens)` receives a
        left-padded batch and must return only the new token ids `[B, <= max_new_tokens]`,
        padded with `pad_id` after a row ends.
    """

    def __init__(self, model: Any, tok: Any, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.model = model
        self.tok = tok
        self.batch_size = batch_size
        # Models positioned by ALiBi or similar take no position ids; the rest get ids derived
        # from the mask so that no padding side is ever assumed.
        self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters

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

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy continuation of each prompt; returns only the new text, in input order."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
        if not prompts:
            return []
        prompt_ids = self._encode_prompts(prompts)
        texts: list[str | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            # Left padding so every row's next token is predicted from the last column.
            input_ids, attention_mask = pad_sequences(
                [prompt_ids[i] for i in chunk], self.pad_id, "left", self.device
            )
            with torch.inference_mode():
                new_ids = self.generate_ids(
                    input_ids, attention_mask, [prompts[i] for i in chunk], max_new_tokens
                )
            for index, ids in zip(chunk, new_ids.tolist()):
                texts[index] = self.tok.decode(ids, skip_special_tokens=True)
        return texts  # type: ignore[return-value]  # every slot was filled above

    def generate_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompts: Sequence[str],
        max_new_tokens: int,
    ) -> torch.Tensor:
        """New token ids of a greedy continuation of the plain model (see class doc).

        Sampling is switched off here; EOS and any logits processors still come from the
        model's own `generation_config`.
        """
        del prompts
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
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
