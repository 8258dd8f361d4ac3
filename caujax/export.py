"""The end-of-run export: the trained model as a Hugging Face directory (or a PEFT adapter), written atomically
with a marker naming the step it holds, so that a resumed run knows whether its export is missing or older."""
from __future__ import annotations

import json
import pathlib
import warnings

import jax

from caujax.config import RunConfig
from caujax.models import save_pretrained
from caujax.staged_dir import staged_dir


EXPORT_MARKER = "caujax_export.json"      # the step an export was written at, inside the exported directory


def export_dir(cfg: RunConfig) -> pathlib.Path:
    """<run_dir>/hf (a Hugging Face directory), or <run_dir>/adapter for a PEFT adapter export."""
    peft = cfg.model.lora.rank and cfg.model.lora.export == "peft"
    return pathlib.Path(cfg.run_dir) / ("adapter" if peft else "hf")


def exported_step(cfg: RunConfig) -> int | None:
    """The step of the run's latest complete export, or None."""
    marker = export_dir(cfg) / EXPORT_MARKER
    return json.loads(marker.read_text())["step"] if marker.exists() else None


def export(model, tokenizer, path: pathlib.Path, sample_text: str, extra_files: dict[str, str] | None = None) -> None:
    """A Hugging Face directory (gathered on every process, written by process 0), with `extra_files` {name: text}
    beside it; process 0 then warns when AutoTokenizer would read the tokenizer back differently (transformers picks
    the tokenizer class from config.json's model_type for some families, e.g. Qwen2Tokenizer for qwen2)."""

    import transformers

    owner = jax.process_index() == 0                      # only process 0 writes the directory
    with staged_dir(path, owner=owner) as staged:
        save_pretrained(model, tokenizer, staged)
        if owner:
            for name, value in (extra_files or {}).items():
                (staged / name).write_text(value)
    if not owner:
        return
    reloaded = transformers.AutoTokenizer.from_pretrained(path)
    if reloaded(sample_text, add_special_tokens=False).input_ids != \
            tokenizer(sample_text, add_special_tokens=False).input_ids:
        warnings.warn(f"{path}: AutoTokenizer loads the exported tokenizer as {type(reloaded).__name__}, which "
                      f"encodes differently from the {type(tokenizer).__name__} the model was trained with")


def check_peft_export(cfg: RunConfig) -> None:
    """Refuse up front (not after training) a PEFT export that cannot be written or used."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ValueError("model.lora.export=peft needs peft: pip install 'caujax[peft]' (or "
                         "--model.lora.export=merged for a plain Hugging Face directory)") from None
    path = cfg.model.path
    if not path or path.endswith(".gguf"):
        raise ValueError(f"model.lora.export=peft writes an adapter for a Hugging Face base checkpoint, but "
                         f"model.path={path!r} is {'a GGUF file' if path else 'a random init'}: export the base "
                         f"with caujax.models.save_pretrained and train from that directory, or use "
                         f"--model.lora.export=merged")
