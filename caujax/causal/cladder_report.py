"""The CLadder solver (`cladder_solve`) against a CLadder file's gold answers: coverage and accuracy per query type,
every wrong answer, and the abstentions grouped by reason.

    python -m caujax.causal.cladder_report PATH.json

Coverage = answered / all; accuracy = right / answered. Rows are grouped by the file's query_type; the solver never
sees it (nor the gold answer): it reads the question text only.
"""
from __future__ import annotations

import collections
import re
import sys
from dataclasses import dataclass

from caujax.causal.cladder_answer import LadderAnswer
from caujax.causal.cladder_solve import solve_cladder


@dataclass(frozen=True)
class Row:
    id: str
    query_type: str       # the file's query type (for grouping only)
    expected: str         # gold "yes" / "no"
    got: LadderAnswer
    verdict: str          # right | wrong | abstain


@dataclass(frozen=True)
class Line:
    """One line of the table: a query type (or "ALL")."""
    query_type: str
    n: int
    right: int
    wrong: int
    abstain: int

    @property
    def answered(self) -> int:
        return self.right + self.wrong

    @property
    def coverage(self) -> float:
        return self.answered / self.n if self.n else 0.0

    @property
    def accuracy(self) -> float:
        return self.right / self.answered if self.answered else 0.0


def judge(expected: str, got: LadderAnswer) -> str:
    if got.status != "ok":
        return "abstain"
    return "right" if got.answer == expected else "wrong"


def _text(item) -> str:
    """The question text of an item: `.text`, or `.problem` (caujax.data.cladder.CladderItem)."""
    text = getattr(item, "text", None)
    return text if text is not None else item.problem


def report_rows(items) -> list[Row]:
    """Solve every item (objects with .id, .text or .problem, .answer "yes"/"no", .query_type) and judge it."""
    rows = []
    for item in items:
        got = solve_cladder(_text(item))
        expected = str(item.answer).strip().lower()
        rows.append(Row(str(item.id), str(item.query_type), expected, got, judge(expected, got)))
    return rows


def table(rows: list[Row]) -> list[Line]:
    """Per query type in first-seen order, then "ALL"."""
    by = collections.defaultdict(list)
    for r in rows:
        by[r.query_type].append(r)

    def line(name, group):
        c = collections.Counter(r.verdict for r in group)
        return Line(name, len(group), c["right"], c["wrong"], c["abstain"])

    return [line(t, g) for t, g in by.items()] + [line("ALL", rows)]


def reason_kind(reason: str) -> str:
    """A reason with its quoted phrases and numbers blanked, so abstentions group by kind."""
    kind = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    return re.sub(r"[-+]?\d+(?:\.\d+)?", "#", kind)


def format_report(rows: list[Row], examples: int = 3) -> str:
    """The table, every wrong answer (id, query type, gold, the solver's reason), and the abstentions grouped by
    reason with a few example ids."""
    out = [(f"{'query_type':<20}{'n':>6}{'answered':>10}{'right':>7}{'wrong':>7}{'abstain':>9}{'coverage':>10}"
            f"{'accuracy':>10}")]
    for ln in table(rows):
        out.append(f"{ln.query_type:<20}{ln.n:>6}{ln.answered:>10}{ln.right:>7}{ln.wrong:>7}{ln.abstain:>9}"
                   f"{ln.coverage:>10.1%}{ln.accuracy:>10.1%}")
    wrong = [r for r in rows if r.verdict == "wrong"]
    out.append(f"\nwrong answers: {len(wrong)}")
    for r in wrong:
        out.append(f"  id {r.id} [{r.query_type}] gold {r.expected}, solver {r.got.answer}: {r.got.reason}")
    groups = collections.defaultdict(list)
    for r in rows:
        if r.verdict == "abstain":
            groups[reason_kind(r.got.reason)].append(r)
    out.append(f"\nabstentions: {sum(len(g) for g in groups.values())}, by reason")
    for kind, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        types = ", ".join(f"{t} {n}" for t, n in collections.Counter(r.query_type for r in group).most_common())
        ids = ", ".join(r.id for r in group[:examples])
        out.append(f"  {len(group):>5}  {kind}\n         ({types}; e.g. ids {ids}; first: {group[0].got.reason})")
    return "\n".join(out)


def load_items(path) -> list:
    """The items of a CLadder file, or of the one file in a directory, read by the project's loader
    (`caujax.data.cladder.resolve`, `load_cladder`)."""
    from caujax.data.cladder import load_cladder, resolve

    return load_cladder(resolve(path))


def main(argv=None) -> int:
    """The report on stdout (exit 0); a missing or malformed file is one line on stderr naming the file and row
    (exit 2), like the other command-line tools."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m caujax.causal.cladder_report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", metavar="PATH", help="a CLadder file (v1.5 or v1 layout; .json, .jsonl or .parquet) or "
                                                 "a directory holding one")
    args = ap.parse_args(argv)
    try:
        items = load_items(args.path)
    except (ValueError, OSError) as e:             # RowError is a ValueError
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    try:
        print(format_report(report_rows(items)))
    except BrokenPipeError:           # `... | head`: the reader has what it wanted
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
