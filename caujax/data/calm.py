"""Loader for the CaLM-Lite English math tasks: the "basic" probability files and the "natural" Yes/No files."""
import os
import pathlib

from caujax.causal.answer import TYPES, format_prob
from caujax.data.items import (Item, check_type, clean_reason, data_root, read_rows, require, row_error,
                               yes_no_from_reason)

KINDS = ("basic", "natural")
NATURAL_TYPES = ("ATE", "CDE", "ETT", "NDE", "NIE")      # PN and PS have no Yes/No form

# CaLM data_processing/prompt/<TYPE>.py, style "basic"; the natural files use the same template.
_YES_NO_TAIL = ('Provide the calculation result to four decimal places and a final "yes" or "no" answer in JSON '
                'format, like {"ANSWER": "Yes", "PROB": "0.1234"}:')
_PROB_TAIL = 'Provide the calculation result to four decimal places in JSON format, like {"PROB": "0.1234"}:'


def file_name(task: str, kind: str) -> str:
    """CaLM-Lite file name, e.g. ATE-P_ATE-basic_EN.json or ATE-B_ATE-natural_EN.json."""
    return f"{task}-P_{task}-basic_EN.json" if kind == "basic" else f"{task}-B_{task}-natural_EN.json"


def upstream_path(task: str, kind: str) -> str:
    """Where the file sits in the OpenCausaLab/CaLM repository."""
    scenario = {"ATE": "intervention/average_treatment_effect", "CDE": "intervention/controlled_direct_effect",
                "ETT": "counterfactual/effect_of_the_treatment_on_the_treated",
                "NDE": "counterfactual/natural_direct_effect", "NIE": "counterfactual/natural_indirect_effect",
                "PN": "counterfactual/probability_of_necessity", "PS": "counterfactual/probability_of_sufficiency"}
    return f"calm_lite_dataset/{scenario[task]}/{file_name(task, kind)}"


def tasks(kind: str) -> tuple[str, ...]:
    if kind not in KINDS:
        raise ValueError(f"CaLM kind must be one of {KINDS}, got {kind!r}")
    return TYPES if kind == "basic" else NATURAL_TYPES


def render_prompt(row: dict) -> str:
    """CaLM's `basic` prompt; byte-identical to CauGym `base_dataset.json` `problem` for the basic files."""
    tail = _PROB_TAIL if row["Type"] in ("PN", "PS") else _YES_NO_TAIL
    return (f"Input Info: {row['given_info']}\n{row['Background']['data_info']}\n"
            f"Instruction: {row['Instruction']}\nQuestion: {row['Question']}\n{tail}")


def _locate(root: pathlib.Path, name: str) -> pathlib.Path:
    """A flat directory (as `download` writes it) or a CaLM checkout, where files sit in scenario folders."""
    if (root / name).is_file():
        return root / name
    found = sorted(root.rglob(name))
    if not found:
        raise FileNotFoundError(f"{name} is not in {root} (nor below it)")
    return found[0]


def _item(row: dict, path, i: int, kind: str, task: str) -> Item:
    for key in ("given_info", "Instruction", "Question", "Type"):
        require(row, key, str, path, i)
    background = require(row, "Background", dict, path, i)
    for key in ("data_info", "real_world_meaning"):
        require(background, key, str, path, i)
    if check_type(row["Type"], path, i) != task:
        raise row_error(path, i, f"Type {row['Type']!r} in the {task} file")
    reason = clean_reason(row.get("Reason"), path, i)
    gt = row.get("gt_answer")
    if kind == "basic":
        if not isinstance(gt, (int, float)) or isinstance(gt, bool):
            raise row_error(path, i, f"gt_answer should be a number, got {gt!r:.80}")
        prob = format_prob(gt)
        # Yes/No from the worked solution: base_dataset's ANSWER is inverted for ETT (DATA.md 1.4).
        answer = (f'{{"PROB": "{prob}"}}' if task in ("PN", "PS")
                  else f'{{"ANSWER": "{yes_no_from_reason(reason)}", "PROB": "{prob}"}}')
    else:
        if gt not in ("Yes", "No"):
            raise row_error(path, i, f"gt_answer should be 'Yes' or 'No', got {gt!r:.80}")
        answer = f'{{"ANSWER": "{gt}"}}'
    index = row.get("index", i)
    return Item(id=f"{pathlib.Path(path).stem}#{index}", problem=render_prompt(row), answer=answer, reason=reason,
                type=task, set_name=f"calm_{kind}", index=i, real_world_meaning=background["real_world_meaning"])


def load_calm(kind: str = "basic", data_dir: os.PathLike | str | None = None) -> list[Item]:
    """The 700 basic (7 types x 100) or 500 natural (5 x 100) CaLM-Lite EN items, from data_dir or $CALM_DIR."""
    root = data_root(data_dir, "CALM_DIR", "CaLM")
    items = []
    for task in tasks(kind):
        path = _locate(root, file_name(task, kind))
        items += [_item(row, path, i, kind, task) for i, row in enumerate(read_rows(path))]
    return items


def meanings_by_problem(data_dir: os.PathLike | str | None = None) -> dict[str, str]:
    """CaLM basic prompt text -> Background.real_world_meaning (base_dataset problems match these exactly)."""
    return {item.problem: item.real_world_meaning for item in load_calm("basic", data_dir)}
