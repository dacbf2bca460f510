"""Tiny randomly initialised causal LMs of every supported family, and a matching tokenizer.

Built from transformers configs in-process (no downloads, ~0.1 s each) so tests of hooks,
adapters, statistics and editors run on real architecture code without the embedded model.
Import these directly (`from tiny_models import tiny_model, tiny_tokenizer`) or use the
fixtures in `conftest.py`.

Sizes: residual width 32, MLP width 64, 3 layers, 4 heads, vocabulary 300 (the tokenizer's
256 byte symbols, 2 specials and 42 merges fit exactly).
"""

from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

FAMILIES = ("llama", "qwen2", "mistral", "gemma", "gemma2", "gemma3_text", "gpt2", "gptj")
GATED_FAMILIES = ("llama", "qwen2", "mistral", "gemma", "gemma2", "gemma3_text")

VOCAB = 300
HIDDEN = 32
MLP_WIDTH = 64
LAYERS = 3
HEADS = 4
BOS_ID, EOS_ID = 0, 1  # the tokenizer's "<s>" and "</s>"

# Short and long lines on purpose: the covariance tests need batches that contain padding.
SENTENCES = (
    "The capital of France is Paris.",
    "The Eiffel Tower is located in Paris, France.",
    "Aspirin is used to treat pain and fever.",
    "The mother tongue of Danielle Darrieux is French.",
    "Ibuprofen interacts with warfarin.",
    "Rome is the capital of Italy.",
    "Water boils at one hundred degrees.",
    "Insulin lowers blood sugar.",
    "Berlin is a large city in Germany with many museums and parks.",
    "The Danube flows through Vienna and Budapest.",
    "Tea.",
    "Metformin is a common treatment for type two diabetes.",
    "The Louvre holds the Mona Lisa.",
    "Cats sleep a lot.",
    "Mount Everest is the highest mountain above sea level.",
    "Penicillin was discovered by Alexander Fleming in London.",
    "Yes.",
    "The Nile is a long river in Africa.",
)
CORPUS_TEXT = "\n".join(SENTENCES) + "\n"


def tiny_config(model_type: str, layers: int = LAYERS, **overrides) -> transformers.PretrainedConfig:
    """A small config of `model_type` (one of FAMILIES) with our tokenizer's special ids."""
    special = dict(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=None)
    decoder = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=MLP_WIDTH,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=2,
        head_dim=HIDDEN // HEADS,
        max_position_embeddings=128,
        **special,
    )
    if model_type in ("gemma2", "gemma3_text", "mistral", "qwen2"):
        decoder["sliding_window"] = 64
    gpt_style = dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=layers, n_head=HEADS, n_positions=128,
                     n_inner=MLP_WIDTH, **special)
    builders = {
        "llama": lambda: transformers.LlamaConfig(**decoder),
        "qwen2": lambda: transformers.Qwen2Config(**decoder),
        "mistral": lambda: transformers.MistralConfig(**decoder),
        "gemma": lambda: transformers.GemmaConfig(**decoder),
        "gemma2": lambda: transformers.Gemma2Config(**decoder),
        "gemma3_text": lambda: transformers.Gemma3TextConfig(**decoder),
        "gpt2": lambda: transformers.GPT2Config(**gpt_style),
        "gptj": lambda: transformers.GPTJConfig(rotary_dim=4, **gpt_style),
    }
    if model_type not in builders:
        raise ValueError(f"No tiny config for {model_type!r}; choose one of {', '.join(FAMILIES)}.")
    config = builders[model_type]()
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def tiny_model(model_type: str = "llama", seed: int = 0, layers: int = LAYERS, **overrides) -> torch.nn.Module:
    """A seeded random model in eval mode with gradients off (as `lm.loading.load` returns)."""
    config = tiny_config(model_type, layers=layers, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model


def tiny_tokenizer(pad: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE (vocabulary 300) trained on SENTENCES; adds BOS like most causal LMs.

    No pad token unless `pad=True` (then "</s>" doubles as pad, as many checkpoints do).
    """
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(list(SENTENCES), trainer)
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", raw.token_to_id("<s>"))]
    )
    assert raw.token_to_id("<s>") == BOS_ID and raw.token_to_id("</s>") == EOS_ID
    extra = {"pad_token": "</s>"} if pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", **extra)


def mlp_input_hook(store: dict, name: str):
    """A forward pre-hook (with kwargs) that records a module's main input under `name`."""

    def hook(_module, args, kwargs):
        store[name] = args[0] if args else kwargs["hidden_states"]

    return hook


def reference_keys(model_type: str, mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The MLP key act(W_in x) (gated: act(gate x) * up x) computed from the weights directly,
    independently of the modules' forward code: what the output projection must receive."""
    F = torch.nn.functional
    if model_type in GATED_FAMILIES:
        gate = x @ mlp.gate_proj.weight.T
        up = x @ mlp.up_proj.weight.T
        act = F.silu(gate) if model_type in ("llama", "qwen2", "mistral") else F.gelu(gate, approximate="tanh")
        return act * up
    if model_type == "gpt2":  # Conv1D: weight is [in, out]
        return F.gelu(x @ mlp.c_fc.weight + mlp.c_fc.bias, approximate="tanh")
    if model_type == "gptj":
        return F.gelu(x @ mlp.fc_in.weight.T + mlp.fc_in.bias, approximate="tanh")
    raise ValueError(f"No reference key formula for {model_type!r}.")
