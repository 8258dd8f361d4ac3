"""The config keys as `--help` lists them: every dotted field of the run schema (caujax/config.py) with its value -
the schema's default, or a preset's - and the line of documentation the source gives it."""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
import typing

from caujax.config import ARCH_RUN_KEYS, RunConfig, _dataclass_in

_REQUIRED = "<required>"


def field_docs(cls) -> dict[str, str]:
    """{field name: one line of documentation} of dataclass `cls`: the trailing comment of the field's line in the
    class body, with the comment-only lines that continue it ("#      more text"), else the field's entry in the
    class docstring ("name: ..." or "a / name: ..."). Fields without either are absent."""
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls) -> tuple[tuple[str, str], ...]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):          # made at run time (RunConfig itself): its base class holds the fields
        return ()
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    docs = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.lineno in comments:
            text, n = [comments[node.lineno]], node.lineno + 1
            while n in comments and re.match(r"\s*#\s{8,}", lines[n - 1]):    # a continuation, aligned far right
                text.append(comments[n])
                n += 1
            docs[node.target.id] = " ".join(text)
    names = {f.name for f in dataclasses.fields(cls)}
    doc = " ".join((cls.__doc__ or "").split())
    entries = [m for m in re.finditer(r"(?<![\w.])((?:\w+ ?/ ?)*\w+): ", doc)
               if set(re.split(r" ?/ ?", m.group(1))) <= names]
    for m, nxt in zip(entries, [*entries[1:], None]):
        text = doc[m.start():nxt.start() if nxt else len(doc)].strip()
        names = re.split(r" ?/ ?", m.group(1))
        for name in names:                 # a shared entry ("a / b: ...") is printed once, under its first name
            docs.setdefault(name, text[len(m.group(0)):] if name == names[0] else f"see {names[0]} above")
    return tuple(docs.items())


def format_value(value) -> str:
    """A value as it is written on the command line: strings bare, tuples as comma lists, booleans lowercase."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value) if value else "()"
    if isinstance(value, str):
        return value if value and value.strip() == value else repr(value)
    return str(value)


def rows(cfg_or_cls, prefix: str = "", sections: set[str] | None = None) -> list[tuple[str, str, str]]:
    """[(dotted key, value, documentation)] of every settable field: of a config instance (a preset's values), or
    of a dataclass (its defaults; <required> where it has none, and the fields of a nested dataclass whose default
    is None, e.g. model.arch). `sections`: the only method sections (`dpo`, `grpo`, ...) to list; None = all."""
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    docs = {**dict(_base_docs(cls)), **field_docs(cls)}
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not prefix and sections is not None and f.name in _method_names() and f.name not in sections:
            continue
        key = prefix + f.name
        if key in ARCH_RUN_KEYS:           # set by --model.<name>; on model.arch they are refused (config.py)
            continue
        if isinstance(cfg_or_cls, type):
            value = f.default if f.default is not dataclasses.MISSING else \
                f.default_factory() if f.default_factory is not dataclasses.MISSING else _REQUIRED
        else:
            value = getattr(cfg_or_cls, f.name)
        inner = _dataclass_in(hints[f.name])
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += rows(value, key + ".")
        elif inner is not None and isinstance(cfg_or_cls, type) and value in (None, _REQUIRED):
            if value is None:              # a meaningful setting ("model.arch=None: the checkpoint's"), not a heading
                out.append((key, "None", docs.get(f.name, "")))
            out += rows(inner, key + ".")
        else:
            out.append((key, value if value is _REQUIRED else format_value(value), docs.get(f.name, "")))
    return out


def _base_docs(cls):
    """Documentation of fields a class inherits (RunConfig takes its common fields from _RunFields)."""
    return [kv for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for kv in field_docs(base).items()]


@functools.cache
def _method_names() -> frozenset[str]:
    from caujax.methods import METHODS
    return frozenset(METHODS)


def help_text(cfg=None, width: int = 118) -> str:
    """The config-keys part of `python -m caujax.train --help`: of preset `cfg` (its values, and only the section of
    its method), or with cfg None of the schema (its defaults, every method's section)."""
    if cfg is None:
        head = "config keys, with the schema's defaults (give --config PRESET with --help for a preset's values):"
        table = rows(RunConfig)
    else:
        head = (f"config keys, with this preset's values for --method {cfg.method} (other methods' sections: "
                f"--help --method M):")
        table = rows(cfg, sections={cfg.method})
    key_width = min(max(len(f"--{k}={v}") for k, v, _ in table), 46)
    out = [head]
    for key, value, doc in table:
        left = f"--{key}={value}"
        pad = " " * (key_width - len(left)) if len(left) <= key_width else "\n" + " " * (key_width + 2)
        wrapped = textwrap.wrap(doc, width - key_width - 4) or [""]
        out.append(f"  {left}{pad}  {wrapped[0]}".rstrip())
        out += [" " * (key_width + 4) + line for line in wrapped[1:]]
    return "\n".join(out)
