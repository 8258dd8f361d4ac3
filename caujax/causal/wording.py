"""Layout and wording of rewritten problems: sections, the task type, graph statements, the clauses with numbers."""
from __future__ import annotations

import re

NUMBER = re.compile(r"(?<![\d.])(?:0?\.\d+|1\.0+)(?!\.?\d)")
_FORMAT = re.compile(r"(?:^|(?<=[\n.?!:]))\s*(?:Please\s+)?(?:Provide|Present|Give|Report|Express|Return|Output)\b"
                     r"[^\n?]*?(?:decimal|JSON|json)[^\n]*")
_NAMES = [("ETT", r"effect of (?:the )?treatment on the treated|treatment effect on the treated|\(ETT\)|\bETT\b"),
          ("NDE", r"natural direct effect|\(NDE\)|\bNDE\b"), ("NIE", r"natural indirect effect|\(NIE\)|\bNIE\b"),
          ("CDE", r"controlled direct effect|\(CDE\)|\bCDE\b"), ("ATE", r"average treatment effect|\(ATE\)|\bATE\b"),
          ("PN", r"probability of necessity|necessity probability|\(PN\)|\bPN\b"),
          ("PS", r"probability of sufficiency|sufficiency probability|\(PS\)|\bPS\b")]
_CAUSAL = re.compile(
    r"\b(?:is|are|was|were)?\s*(?:also\s+)?(?:directly\s+|causally\s+)?(?:influenced|affected|impacted|determined|"
    r"shaped|driven|caused)\s+by\b|\b(?:has|have|exerts?|with)\s+(?:a\s+)?(?:direct\s+)?(?:causal\s+)?"
    r"(?:effects?|impacts?|influences?)\s+(?:on|upon)\b|\b(?:directly\s+|also\s+|causally\s+|further\s+)*"
    r"(?:influences?|affects?|impacts?|determines?|shapes?|drives?|causes?|contributes?\s+to|leads?\s+to|"
    r"governs?)\b", re.IGNORECASE)
_LINK = re.compile(r",|;|\bboth\b|\band\b|\bwhich\b|\bin turn\b|\balso\b|\bwhile\b|\bas well as\b|\bitself\b|"
                   r"\badditionally\b|\bfurthermore\b|\bmoreover\b|\beach\b|\bsimilarly\b|\bdirectly\b|\bthen\b",
                   re.IGNORECASE)
_SPLIT_AFTER_NUM = re.compile(r"(?:,?\s*\b(?:while|whereas|but|with)\b|;|,\s*and\b|\.\s|,\s*(?=(?:and\s+)?0?\.\d))",
                              re.IGNORECASE)
PROB_WORDS = {"probability", "likelihood", "chance", "chances", "odds", "p"}


class Abstain(Exception):
    pass


# ----------------------------------------------------------------------------------------------- sections
def sections(text: str) -> tuple[str, str, str]:
    """(body, instruction, question) of a rewritten problem; headers are optional."""
    text = re.sub(r"Let's think step by step\.?", "", text)
    text = _FORMAT.sub("", text)
    text = re.sub(r"(?m)^\s*Input Info:\s*", "", text)
    m_q = re.search(r"(?i)\b(?:Question|Query)\s*:\s*", text)
    m_i = re.search(r"(?i)\b(?:Instruction|Task)\s*:\s*", text)
    instruction = ""
    if m_q:
        question = text[m_q.end():].strip()
        head = text[:m_q.start()]
    else:
        sents = re.split(r"(?<=[.?!])\s+", text.strip())
        last_num = max([i for i, s in enumerate(sents) if NUMBER.search(s)], default=-1)
        tail = [s for s in sents[last_num + 1:] if s.strip()]
        if not tail:
            raise Abstain("no question found")
        qi = next((i for i, s in enumerate(tail) if re.search(r"\?|\b(?:would|does|determine|what|will)\b", s, re.I)),
                  len(tail) - 1)
        question = " ".join(tail[qi:])
        head = " ".join(sents[:last_num + 1] + tail[:qi])
    if m_i and (not m_q or m_i.start() < m_q.start()):
        instruction = head[m_i.start():].split("\n\n")[0] if m_i.start() < len(head) else ""
        instruction = re.sub(r"(?i)^\s*(?:Instruction|Task)\s*:\s*", "", instruction).strip()
        instruction = re.split(r"(?<=[.?!])\s", instruction)[0]
        head = head[:m_i.start()]
    return head.strip(), instruction, question


_TYPE_WORDS = re.compile(r"(?i)^.*?(?:effect of (?:the )?treatment on the treated|treatment effect on the treated|"
                         r"average treatment effect|controlled direct effect|natural direct effect|"
                         r"natural indirect effect|probability of necessity|probability of sufficiency|"
                         r"necessity probability|sufficiency probability)\s*(?:\((?:ATE|CDE|ETT|NDE|NIE|PN|PS)\))?")
_TYPE_NAME = re.compile(r"(?i)effect of (?:the )?treatment on the treated|treatment effect on the treated|"
                        r"average treatment effect|controlled direct effect|natural direct effect|"
                        r"natural indirect effect|"
                        r"probability of necessity|probability of sufficiency|necessity probability|"
                        r"sufficiency probability|\((?:ATE|CDE|ETT|NDE|NIE|PN|PS)\)")
_PAIR = re.compile(r"(?i)(?:'s)?\s+(?:causal\s+)?(?:impact|effect|influence|effects)?\s*(?:on|upon)\s+|"
                   r"\s+(?:affects?|influences?|impacts?|shapes?|determines?|affecting|influencing|impacting)\s+")


def instruction_pair(instruction: str) -> tuple[str, str] | None:
    """(treatment phrase, outcome phrase) from `Evaluate the ETT of X on Y` and its rewordings."""
    m = _TYPE_WORDS.match(instruction)
    if not m:
        return None
    rest = instruction[m.end():]
    rest = re.sub(r"(?i)^\s*(?:when examining|examining|when considering|considering)\s+", "", rest)
    rest = re.sub(r"(?i)^\s*(?:of|for|regarding|concerning|about|on|in|with respect to)\s+(?:how\s+)?", "", rest)
    rest = re.sub(r"(?i)^(?:the\s+)?(?:causal\s+)?(?:influence|impact|effect|role)\s+of\s+", "", rest)
    rest = re.split(r"(?i)\s+(?:through|via|under|when|while|given|mediated|with the|in the context)\b|[.,;(]", rest)[0]
    parts = _PAIR.split(rest, maxsplit=1)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        return None
    return parts[0].strip(), parts[1].strip()


def task_type(instruction: str, question: str, body: str) -> str | None:
    for src in (instruction, question, body):
        found = {t for t, pat in _NAMES if re.search(pat, src, re.IGNORECASE)}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            return None
    q = question.lower()
    if re.search(r"minimum|minimal|lower bound|lowest|maximum|maximal|upper bound|highest possible|upper limit", q):
        return "PN"                    # PN and PS share one formula in (x, y) terms
    if "mediat" in q:
        kind = _mediator_kind(q)
        if kind:
            return kind
        return None
    if re.search(r"\b(?:conditioned on|holding|held|fixed|maintained|kept constant|constant at)\b", q) or \
            re.search(r"^(?:given that|when|if|with)\b[^?]*?\b(?:remains?|stays?|is set|are set)\b[^?]*?,"
                      r"\s*(?:would|does|will)", q):
        return "CDE"
    if re.search(r"\bcurrently\b|\binstead\b(?! of)|had (?:\w+ ){0,3}been|\btreated\b|\bactually\b", q):
        return "ETT"
    if re.search(r"\b(?:set|changed|increas\w*|reduc\w*|decreas\w*|shift\w*|switch\w*|intervene\w*)\b", q):
        return "ATE"
    return None


def _mediator_kind(q: str) -> str | None:
    """NDE when the question keeps the mediator fixed, NIE when the mediator moves to its counterfactual value."""
    still = ("remain", "unchang", "fixed", "held", "constant", "steady", "stay", "frozen", "kept", "same")
    moves = ("shift", "adjust", "chang", "take", "move", "attain", "reach", "become", "vary", "respond", "assume")
    if re.search(r"prevent\w* (?:any |all )?(?:changes?|mediat)|"
                 r"(?:without|no) (?:any )?chang\w* (?:to|in) (?:the )?mediat", q):
        return "NDE"
    votes = set()
    for m in re.finditer(r"mediat\w*(?:'s)?", q):
        after = re.sub(r"\([^)]*\)", " ", q[m.end():m.end() + 80]).split()[:4]
        before = [w for w in q[max(0, m.start() - 40):m.start()].split() if w not in ("the", "any", "all", "its")]
        verb = before[-1] if before else ""
        if any(w.startswith(still) for w in after) or verb.startswith(("hold", "fix", "keep", "maintain", "freez")):
            votes.add("NDE")
        if any(w.startswith(moves) for w in after) or verb.startswith(("allow", "let")):
            votes.add("NIE")
    return votes.pop() if len(votes) == 1 else None


# ----------------------------------------------------------------------------------------------- graph
def graph_phrases(body: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Noun phrases around causal verbs in the sentences before the first number, and the edges they state."""
    first_num = NUMBER.search(body)
    graph_text = body[:first_num.start()] if first_num else body
    graph_text = graph_text.split(":", 1)[1] if ":" in graph_text[:300] else graph_text
    phrases, edges = [], []
    for sent in re.split(r"(?<=[.!?])\s+|\n", graph_text):
        t = _TYPE_NAME.search(sent)
        if t:                        # "..., examine the natural direct effect of X on Y" is not a graph statement
            sent = re.sub(r"(?i)[,;]?\s*(?:\b(?:examine|evaluate|consider|focusing on|determine|analy[sz]e|"
                          r"assess)\b.*)?$", "", sent[:t.start()])
        parts = _CAUSAL.split(sent)
        verbs = _CAUSAL.findall(sent)
        if len(parts) < 2:
            continue
        groups = [[p.strip() for p in _LINK.split(part) if p and p.strip(" .")] for part in parts]
        groups = [[re.sub(r"(?i)^(?:where|in which|whereby|with|the|an?|its|their)\s+", "", p.strip(" .")) for p in g]
                  for g in groups]
        for g in groups:
            phrases.extend(p for p in g if p)
        for (src, dst), verb in zip(zip(groups, groups[1:]), verbs):
            passive = bool(re.search(r"\bby\b", verb, re.IGNORECASE))
            for a in src[-1:] if src else []:
                for b in dst:
                    edges.append((b, a) if passive else (a, b))
    return phrases, edges


# ----------------------------------------------------------------------------------------------- facts
def fact_clauses(body: str) -> list[tuple[str, bool]]:
    """(clause, continues the previous clause's sentence) for every clause that states one number."""
    out = []
    for sent in re.split(r"\n+|(?<=[.!?])\s+(?=[A-Z\-•*])", body):
        sent = sent.strip(" -•*\t")
        cont = False
        while True:
            nums = list(NUMBER.finditer(sent))
            if len(nums) <= 1:
                break
            cut = _SPLIT_AFTER_NUM.search(sent, nums[0].end())
            if not cut or cut.start() > nums[1].start():
                raise Abstain(f"cannot split a sentence with two numbers: {sent[:100]!r}")
            out.append((sent[:cut.start()], cont))
            sent, cont = sent[cut.end():], True
        if NUMBER.search(sent):
            out.append((sent, cont))
    return out


