"""Why PMET edits less than MEMIT on MedCF++: its value vectors, early stop and spread, measured.

    python -m perf.pmet_diagnosis [--records 20] [--seed 0] [--out runs/pmet-diagnosis.json]

On the same seeded draw of MedCF++ **train** records `tune` uses, each variant is one editor's
own `apply` run by the harness (fluency and perplexity off) and scored by its metrics; beside
the scores it prints what the edit's record holds and the harness does not report:

- the value optimisation: Adam steps taken per request (the early stops end it sooner), the
  target NLL at the end, and the clamped share;
- PMET only: the target NLL on each bare edit prompt when the unedited model gets both optimised
  vectors at l* (attention output and MLP output, as the optimisation saw them) against only the
  MLP vector, which is all PMET writes into the weights (its method, Li et al. 2024);
- the spread: the mean gap ‖z − h‖ at the output the spread targets, before each edited layer
  (MEMIT: the block output, which lower layers' updates move towards its target; PMET: the MLP
  output of l*, which they need not, so each layer's square-root share is of whatever gap is
  left).

Variants: MEMIT and PMET with their MedCF++ defaults; PMET with its attention vector held at
≈0 (`attn_decay_weight` 1e6), so the MLP vector carries the whole edit; PMET with MEMIT's linear
spread. The last two are diagnostics, not PMET. Results are kept in `--out`; a variant already
there is not run again. Whether the early stops end the optimisation too soon is read from the
Adam steps of the plain PMET run (`updates` equal to the step budget minus one: no stop).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

VARIANTS = {
    "memit": ("memit", {}),
    "pmet": ("pmet", {}),
    "pmet-attention-vector-zero": ("pmet", {"attn_decay_weight": 1e6}),
    "pmet-linear-spread": ("pmet", {"spread_rule": "linear"}),
}


def _bare_prompt_nll(model, adapter, batch, values, layer: int, use_attention: bool) -> list[float]:
    """Per request: mean target NLL on its bare prompt with the optimised vectors added at l*."""
    attention_site, mlp_site = adapter.attention_name(layer), adapter.mlp_name(layer)
    nlls = []
    for index, (sites, target) in enumerate(zip(batch.sites, batch.targets)):
        site = sites[0]
        vectors = {mlp_site: values.deltas[mlp_site][index]}
        if use_attention:
            vectors[attention_site] = values.deltas[attention_site][index]

        def add(module_name):
            def hook(_module, _inputs, output):
                hidden = output[0] if isinstance(output, tuple) else output
                hidden[:, site.position] += vectors[module_name].to(hidden.dtype)
                return output
            return hook

        handles = [model.get_submodule(name).register_forward_hook(add(name)) for name in vectors]
        try:
            ids = torch.tensor([list(site.ids) + list(target[:-1])])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, len(site.ids) - 1:].float()
        finally:
            for handle in handles:
                handle.remove()
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="mean")
        nlls.append(float(nll))
    return nlls


def run_variant(name: str, model, tok, edits) -> dict:
    from editors.kv_editor import prepare_batch
    from editors.registry import make_editor
    from experiments.harness import run_batch
    from experiments.records import Settings
    from experiments.tuning import metrics_of
    from lm.adapters import adapter_for

    editor_name, overrides = VARIANTS[name]
    editor = make_editor(editor_name, model, overrides, benchmark=edits.dataset.benchmark)
    seen: dict = {}
    optimise, apply = editor.optimise, editor.apply

    def recording_optimise(*args):
        seen["values"] = optimise(*args)
        return seen["values"]

    def recording_apply(model_, tok_, requests):
        edit = apply(model_, tok_, requests)
        seen["info"] = edit.info
        return edit

    editor.optimise, editor.apply = recording_optimise, recording_apply
    record = run_batch(editor, model, tok, edits, settings=Settings(fluency_prompts=0, perplexity_tokens=0))
    values, info, hp = seen["values"], seen["info"], editor.hparams
    out = {
        "hparams": {k: v for k, v in hp.to_dict().items()
                    if k in ("mom2_update_weight", "v_lr", "v_num_grad_steps", "clamp_norm_factor", "kl_factor",
                             "spread_rule", "argmax_stop_kl", "attn_decay_weight", "layers")},
        "metrics": metrics_of(record.aggregate),
        "adam_steps_mean": float(values.updates.float().mean()),
        "adam_steps_min": int(values.updates.min()),
        "value_nll_mean": float(values.nll.nanmean()),
        "residual_norms": info["residual_norms"],
    }
    for site in values.sites:
        ratio = values.deltas[site].norm(dim=1) / values.initial[site].norm(dim=1)
        out[f"delta_over_h0[{site}]"] = float(ratio.mean())
        out[f"clamped_share[{site}]"] = float((ratio > hp.clamp_norm_factor - 1e-3).float().mean())
    if len(values.sites) == 2:
        adapter = adapter_for(model)
        batch = prepare_batch(model, tok, edits.requests, hp)
        both = _bare_prompt_nll(model, adapter, batch, values, hp.last_layer, use_attention=True)
        mlp_only = _bare_prompt_nll(model, adapter, batch, values, hp.last_layer, use_attention=False)
        out["bare_prompt_nll_both_vectors"] = sum(both) / len(both)
        out["bare_prompt_nll_mlp_vector_only"] = sum(mlp_only) / len(mlp_only)
    return out


def main() -> None:
    from experiments.edit_sets import draw_edits
    from lm.loading import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/pmet-diagnosis.json"))
    args = parser.parse_args()
    edits = draw_edits("medcfpp", args.records, args.seed, "train")
    model, tok = load("default")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.variants.split(","):
        if name in results:
            continue
        results[name] = run_variant(name, model, tok, edits)
        print(name, json.dumps(results[name], indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
