"""How many times the sampler compiles during a full CauGym evaluation (all six sets, every item), and how long
the harness spends outside the model. A tiny random Gemma-3 decoder with the real Gemma-3 tokenizer keeps prompt
lengths realistic while the model costs little.

    python -m bench.eval_compilations --n 1 --max-new-tokens 4 --batch-size 16
"""
from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)

    from flax import nnx

    from caujax import eval as caujax_eval
    from caujax.models import Decoder, ModelConfig, save_pretrained
    from caujax.models.gguf import gemma3_270m_path, load_gguf_tokenizer

    tokenizer = load_gguf_tokenizer(gemma3_270m_path())
    cfg = ModelConfig.tiny("gemma3", vocab_size=len(tokenizer), sliding_window=512,
                           eos_token_ids=(tokenizer.eos_token_id,))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = pathlib.Path(tmp) / "tiny-gemma3"
        save_pretrained(Decoder(cfg, rngs=nnx.Rngs(0)), tokenizer, model_dir)
        t0 = time.perf_counter()
        report = caujax_eval.main(["--model", str(model_dir), "--suite", "caugym", "--out", f"{tmp}/eval",
                                   "--n", str(args.n), "--max-new-tokens", str(args.max_new_tokens),
                                   "--batch-size", str(args.batch_size), "--temperature", "1.0",
                                   *(["--data-dir", args.data_dir] if args.data_dir else [])])
        seconds = time.perf_counter() - t0
        summary = json.loads((pathlib.Path(tmp) / "eval" / "summary.json").read_text())
    items = {name: rows for name, rows in report.items()}
    print(f"\nfull evaluation: {len(items)} sets, {summary['sampler_compilations']} sampler compilations, "
          f"{seconds:.0f} s in all")


if __name__ == "__main__":
    main()
