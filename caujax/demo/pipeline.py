"""The demo pipeline, one resumable stage at a time; each finished stage leaves <run_dir>/stages/<name>.json.

    data       generated training problems and a disjoint held-out set (data/train.json, data/heldout.json)
    base       the base model as a Hugging Face directory: Gemma-3-270M's GGUF converted once into a cache
               directory, or (tests) a random init of `arch` with a tokenizer trained on the problems
    eval_base  the base model's greedy replies to the held-out set (and a CauGym `base` slice when present)
    sft        LoRA SFT on worked solutions (python -m caujax.train, run dir sft/, merged export sft/hf)
    eval_sft
    grpo       LoRA GRPO with the strict causal reward, from the SFT model (grpo/, export grpo/hf)
    eval_grpo
    report     report.md, accuracy.png, curves.png (demo/report.py)

A rerun skips finished stages, continues a training stage from its last checkpoint (train --resume) and an
evaluation from its last written reply (eval.generate_set), so an interrupted `make demo` picks up where it was.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

from caujax.demo.config import DemoConfig

STAGES = ("data", "base", "eval_base", "sft", "eval_sft", "grpo", "eval_grpo", "report")


class Pipeline:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.root = pathlib.Path(cfg.run_dir)
        self.stages = self.root / "stages"

    # --- bookkeeping ---------------------------------------------------------------------------------------------
    def done(self, name: str) -> dict | None:
        path = self.stages / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def run(self, until: str | None = None) -> dict:
        """Every stage not yet done, in order (up to and including `until`); {stage: its record}."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.stages.mkdir(exist_ok=True)
        (self.root / "demo_config.json").write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2, default=str))
        records = {}
        for name in STAGES:
            record = self.done(name)
            if record is None:
                print(f"\n=== stage {name} ===", flush=True)
                t0 = time.perf_counter()
                info = getattr(self, f"_{name}")() or {}
                record = {"stage": name, "seconds": round(time.perf_counter() - t0, 1), **info}
                (self.stages / f"{name}.json").write_text(json.dumps(record, indent=2))
                print(f"=== {name} done in {record['seconds']:.0f} s ===", flush=True)
            else:
                print(f"=== stage {name}: done earlier ({record['seconds']:.0f} s), skipped ===", flush=True)
            records[name] = record
            if name == until:
                break
        return records

    # --- stages --------------------------------------------------------------------------------------------------
    def _data(self) -> dict:
        from caujax.causal.generate import generate

        c = self.cfg
        recipe = dict(tasks=c.tasks, nodes=c.nodes, style=c.style, noncause=c.noncause)
        heldout = generate(c.heldout_items, c.seed + 1, **recipe)
        seen = {row["problem"] for row in heldout}
        train, i = [], 0
        while len(train) < c.train_items:          # a problem also in the held-out set is never trained on
            batch = generate(c.train_items, c.seed + 1000 * (i + 1), **recipe)
            train += [row for row in batch if row["problem"] not in seen][: c.train_items - len(train)]
            i += 1
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        (data / "train.json").write_text(json.dumps(train, indent=1))
        (data / "heldout.json").write_text(json.dumps(heldout, indent=1))
        return {"train_items": len(train), "heldout_items": len(heldout), **recipe}

    def _base(self) -> dict:
        c = self.cfg
        if c.arch is not None:
            return self._random_base()
        from caujax.models import load_pretrained, save_pretrained

        source = c.base
        if source is None:
            from caujax.models.gguf import gemma3_270m_path
            source = str(gemma3_270m_path())
        if not source.endswith(".gguf"):
            return {"model": source}
        cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "caujax" / \
            pathlib.Path(source).stem
        if not (cache / "config.json").exists():         # converted once, for every later run
            print(f"converting {source} to safetensors in {cache} (once)", flush=True)
            model, tokenizer = load_pretrained(source)
            tmp = cache.with_name(cache.name + ".partial")
            save_pretrained(model, tokenizer, tmp)
            tmp.replace(cache)                            # a kill mid-write leaves no half directory behind
        return {"model": str(cache)}

    def _random_base(self) -> dict:
        """A random init of cfg.arch with a SentencePiece tokenizer trained on the problems (CI-sized demo)."""
        from flax import nnx

        from caujax.data import batches
        from caujax.data.caugym import load_file
        from caujax.data.examples import sft_examples, texts
        from caujax.models import Decoder, save_pretrained

        items = load_file(self.root / "data" / "train.json") + load_file(self.root / "data" / "heldout.json")
        tokenizer = batches.train_tokenizer(texts(sft_examples(items)), self.cfg.arch.vocab_size)
        arch = self.cfg.arch.replace(bos_token_id=tokenizer.bos_token_id, eos_token_ids=(tokenizer.eos_token_id,),
                                     pad_token_id=tokenizer.pad_token_id)
        path = self.root / "base"
        save_pretrained(Decoder(arch, rngs=nnx.Rngs(self.cfg.seed)), tokenizer, path)
        return {"model": str(path)}

    def _eval_base(self) -> dict:
        return self._evaluate("base", self.done("base")["model"])

    def _eval_sft(self) -> dict:
        return self._evaluate("sft", str(self.root / "sft" / "hf"))

    def _eval_grpo(self) -> dict:
        return self._evaluate("grpo", str(self.root / "grpo" / "hf"))

    def _sft(self) -> dict:
        return self._train("sft", self.cfg.sft, self.done("base")["model"])

    def _grpo(self) -> dict:
        return self._train("grpo", self.cfg.grpo, str(self.root / "sft" / "hf"))

    def _report(self) -> dict:
        from caujax.demo.report import write_report
        return write_report(self.root, self.cfg, {name: self.done(name) for name in STAGES[:-1]})

    # --- shared ----------------------------------------------------------------------------------------------------
    def _train(self, name: str, run, model_path: str) -> dict:
        from caujax import train

        run_dir = self.root / name
        cfg = dataclasses.replace(run, run_dir=str(run_dir), export=True,
                                  model=dataclasses.replace(run.model, path=model_path, arch=None),
                                  data=dataclasses.replace(run.data, source=str(self.root / "data" / "train.json")))
        resume = any(p.name.isdigit() for p in (run_dir / "checkpoints").glob("*"))
        if resume:
            print(f"continuing {run_dir} from its last checkpoint", flush=True)
        train.train(cfg, resume=resume)
        lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
        return {"run_dir": str(run_dir), "steps": cfg.steps, "final_loss": lines[-1]["loss"] if lines else None,
                "model": str(run_dir / "hf")}

    def _evaluate(self, name: str, model_path: str) -> dict:
        from caujax.demo.report import stage_scores
        from caujax.eval import generate_set
        from caujax.models import load_pretrained
        from caujax.sampling import SamplingParams
        from caujax.data.caugym import load_file

        out = self.root / "eval" / name
        out.mkdir(parents=True, exist_ok=True)
        model, tokenizer = load_pretrained(model_path)
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.cfg.eval_max_new_tokens)
        sets = {"heldout": load_file(self.root / "data" / "heldout.json", set_name="heldout")}
        caugym = _caugym_slice(self.cfg.caugym_items)
        if caugym:
            sets["caugym_base"] = caugym
        record = {"model": model_path}
        for set_name, items in sets.items():
            generations = generate_set(model, tokenizer, f"{name}/{set_name}", items, out / f"{set_name}.jsonl",
                                       params, self.cfg.eval_batch_size)
            record[set_name] = stage_scores(items, generations)
            first = generations[items[0].id]["all_generated_answers"][0]
            print(f"{set_name}: strict {record[set_name]['strict']:.1%}, format-valid "
                  f"{record[set_name]['format_valid']:.1%}; first reply:\n{first[:600]}", flush=True)
        return record


def _caugym_slice(n: int):
    """The first n CauGym `base` items when the data is found ($CAUGYM_DIR or ../shared/caugym), else None."""
    if not n:
        return None
    from caujax.data import load_caugym

    beside = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "caugym"
    where = os.environ.get("CAUGYM_DIR") or (str(beside) if beside.is_dir() else None)
    if where is None:
        return None
    try:
        return load_caugym("base", where)[:n]
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"(CauGym base not evaluated: {err})", flush=True)
        return None
