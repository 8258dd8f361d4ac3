"""The command line of `python -m caujax.train`: a preset, --method, --resume, dotted overrides (caujax/config.py),
--list-keys, and a --help that keeps train.py's docstring as written and lists every config key (config_help.py)."""
from __future__ import annotations

import argparse
import warnings

from caujax import config_help, methods
from caujax.config import RunConfig, apply_overrides, load_preset, parse_overrides, to_json_dict


def parse_args(argv: list[str], description: str) -> tuple[RunConfig, bool]:
    """(config, resume) from the command line: a preset, --method, --resume and dotted overrides. --help prints
    `description` as written, then every config key with its default (with --config: the preset's value), and exits.
    Raises ValueError / FileNotFoundError for a bad preset or override (SystemExit(2) for a bad option)."""
    parser = argparse.ArgumentParser(prog="python -m caujax.train", description=description, allow_abbrev=False,
                                     add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-h", "--help", action="store_true",
                        help="show this help and every config key with its default (with --config: the preset's "
                             "value), then exit")
    parser.add_argument("--config", help="a preset file, e.g. configs/tiny.py (required)")
    parser.add_argument("--method", choices=list(methods.METHODS),
                        help="the method (default: the preset's): " + "; ".join(
                            f"{m.name}: {m.summary}" for m in methods.METHODS.values()))
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest intact checkpoint in run_dir (none: start fresh)")
    parser.add_argument("--list-keys", action="store_true",
                        help="print every dotted config key with the preset's value (after overrides), then exit")
    args, rest = parser.parse_known_args(argv)
    if args.help:
        parser.epilog = _help_keys(args, rest)
        parser.print_help()
        raise SystemExit(0)
    if not args.config:
        parser.error("the following arguments are required: --config")
    overrides = parse_overrides(rest)
    if args.method:
        overrides = {"method": args.method, **overrides}
    preset = load_preset(args.config)
    cfg = apply_overrides(preset, overrides)
    section = getattr(preset, preset.method)
    if cfg.method != preset.method and section != type(section)():
        ours = "as set on the command line" if any(k.startswith(cfg.method + ".") for k in overrides) else "defaults"
        warnings.warn(f"{args.config} configures {preset.method} (its --{preset.method}.* section is not the "
                      f"default) but the run is --method {cfg.method}: those settings are not used, and the "
                      f"--{cfg.method}.* section is {ours}", stacklevel=3)
    if args.list_keys:
        print("\n".join(f"--{k}={v!r}" for k, v in _flat(to_json_dict(cfg)).items()))
        raise SystemExit(0)
    return cfg, args.resume


def _help_keys(args, rest: list[str]) -> str:
    """The epilog of --help: how overrides are written, then the config keys (config_help.help_text) of the preset
    with the command line's --method and overrides applied, or of the schema without --config."""
    how = ("Any config key below can be set with a dotted override, e.g. --optim.lr=1e-5 or --steps 4; tuples as\n"
           "comma lists (--grpo.rollout.rewards=causal,format); --list-keys prints the values after overrides.\n\n")
    if not args.config:
        return how + config_help.help_text(None)
    try:
        overrides = ({"method": args.method} if args.method else {}) | parse_overrides(rest)
        return how + config_help.help_text(apply_overrides(load_preset(args.config), overrides))
    except (ValueError, FileNotFoundError) as e:    # --help still helps: the schema, and why not the preset
        return how + f"(--config {args.config}: {e})\n" + config_help.help_text(None)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out
