"""PMET (Li et al., "PMET: Precise Model Editing in a Transformer", AAAI 2024, method section):
attention and MLP vectors, FFN-only rewrite.

Two vectors are trained at l*: one added to the attention output, one to the MLP output (the
components, not the residual stream), each decayed and clamped relative to its own initial norm.
A request stops early once its target is the argmax at every target token and its KL term is at
most `argmax_stop_kl` (0.01), as the reference's compute_zs does. Only the MLP vector is used afterwards: the MLP output projections of the edited layers absorb
`z_mlp − (current MLP output at l*)`, spread with a square root so earlier layers take more.
"""

from __future__ import annotations

from editors.memit import MemitEditor
from editors.values import ValueOptions
from lm.adapters import ArchAdapter


class PmetEditor(MemitEditor):
    name = "pmet"

    def value_sites(self, adapter: ArchAdapter) -> tuple[str, ...]:
        layer = self.hparams.last_layer
        return (adapter.attention_name(layer), adapter.mlp_name(layer))

    def output_site(self, adapter: ArchAdapter) -> str:
        return adapter.mlp_name(self.hparams.last_layer)

    def value_options(self) -> ValueOptions:
        hp = self.hparams
        return ValueOptions.from_hparams(
            hp,
            argmax_nll_weight=hp.argmax_nll_weight,
            argmax_stop_kl=hp.argmax_stop_kl,
            decay_weights=(hp.attn_decay_weight, hp.mlp_decay_weight),
        )
