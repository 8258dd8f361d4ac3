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
import resource
import time

from caujax.demo.config import DemoConfig
from caujax.staged_dir import staged_dir

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
        """Every stage not yet done, in order (up to and including `until`); {stage: its record}. Raises ValueError
        when run_dir holds a demo started with other settings (its finished stages would not match them)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.stages.mkdir(exist_ok=True)
        self._check_same_demo()
        records = {}
        for name in STAGES:
            record = self.done(name)
            if record is None:
                print(f"\n=== stage {name} ===", flush=True)
                t0 = time.perf_counter()
                info = getattr(self, f"_{name}")() or {}
                record = {"stage": name, "seconds": round(time.perf_counter() - t0, 1),
                          "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), **info}
                _write_atomic(self.stages / f"{name}.json", json.dumps(record, indent=2))
                print(f"=== {name} done in {record['seconds']:.0f} s ===", flush=True)
            else:
                print(f"=== stage {name}: done earlier ({record['seconds']:.0f} s), skipped ===", flush=True)
            records[name] = record
            if name == "base" and not self.done("grpo"):
                self._preflight()
            if name == until:
                break
        return records

    def _check_same_demo(self) -> None:
        path = self.root / "demo_config.json"
        now = json.loads(json.dumps(dataclasses.asdict(self.cfg), default=str))
        if path.exists() and any(self.stages.glob("*.json")):
            saved = json.loads(path.read_text())
            changed = sorted(k for k in now.keys() | saved.keys() if now.get(k) != saved.get(k))
            if changed:
                raise ValueError(f"{self.root} holds a demo started with other settings ({', '.join(changed)} "
                                 f"differ; its demo_config.json has them): rerun it with those, choose another "
                                 f"--run_dir, or pass --fresh to start this one over")
        _write_atomic(path, json.dumps(now, indent=2))

    # --- stages --------------------------------------------------------------------------------------------------
    def _data(self) -> dict:
        from caujax.causal.generate import generate

        c = self.cfg
        recipe = dict(tasks=c.tasks, nodes=c.nodes, style=c.style, noncause=c.noncause, precision=c.precision,
                      reason=c.reason)
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
            with staged_dir(cache) as staged:             # a kill mid-write leaves no half directory behind
                save_pretrained(model, tokenizer, staged)
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
    def _stage_run(self, name: str, run, model_path: str):
        """The stage's RunConfig: its model path, the generated training set, a run_dir under the demo's, and a
        merged export (the next stage loads <run_dir>/hf; a PEFT adapter is not a loadable model)."""
        lora = dataclasses.replace(run.model.lora, export="merged")
        return dataclasses.replace(run, run_dir=str(self.root / name), export=True,
                                   model=dataclasses.replace(run.model, path=model_path, arch=None, lora=lora),
                                   data=dataclasses.replace(run.data, source=str(self.root / "data" / "train.json")))

    def _preflight(self) -> None:
        """The training stages' own input checks (prompt lengths against the rollout cache, the schedule, the
        rewards), run once the base tokenizer exists: a bad setting fails here, not after an hour of SFT."""
        import transformers

        from caujax import methods
        from caujax.data.examples import load_examples

        base = self.done("base")["model"]
        tokenizer = transformers.AutoTokenizer.from_pretrained(base)
        for name in ("sft", "grpo"):
            cfg = self._stage_run(name, getattr(self.cfg, name), base)
            method = methods.get(cfg.method)
            if method.validate is not None:
                examples = load_examples(cfg.data.source, cfg.data.num_examples, cfg.data.seed, cfg.method,
                                         method.examples)
                method.validate(cfg, examples, tokenizer)

    def _train(self, name: str, run, model_path: str) -> dict:
        from caujax import train
        from caujax.resume import saved_steps

        cfg = self._stage_run(name, run, model_path)
        run_dir = pathlib.Path(cfg.run_dir)
        resume = bool(saved_steps(run_dir))
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
    """n CauGym `base` items spread over the task types (eval.spread_over_types) when the data is found (where
    every CLI looks: $CAUGYM_DIR, then shared/caugym beside the repository or the current directory, then
    data/cache/caugym; data.items.data_root), else None: this slice is optional."""
    if not n:
        return None
    from caujax.data import load_caugym
    from caujax.data.items import data_root
    from caujax.eval import spread_over_types

    try:
        return spread_over_types(load_caugym("base", data_root(None, "CAUGYM_DIR", "CauGym")), n)
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"(CauGym base not evaluated: {err})", flush=True)
        return None


def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Write beside `path` and rename over it: a kill mid-write leaves the old file or the new, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
