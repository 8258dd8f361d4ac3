"""A reply whose thinking is still open at its end has no final answer (issue 13, kind 3): in the scorer, in the
evaluation records and scores, and in the GRPO/PPO rewards, including chat templates that open <think> in the
prompt (the reply then carries only </think>, and a truncated one no tag at all)."""
from __future__ import annotations

import types

import numpy as np
import pytest

from caujax import sampling, scoring
from caujax.data.examples import RLExample
from caujax.data.items import Item
from caujax.losses.params import RolloutParams
from caujax.rl import rollout
from caujax.rl.rewards import BUILTIN, RewardSet
from caujax.sampling.sampler import SampleOutput, Samples
from caujax.scoring import LACK_CONDITION, final_answer, prompt_opens_thinking, reward, score, well_formed
from model_fixtures import byte_tokenizer

GT = '{"ANSWER": "Yes", "PROB": "0.5"}'
ISSUE = '<think>Try the adjustment formula ... {"ANSWER": "Yes", "PROB": "0.5"} hmm, redo'     # cut at the cap
ITEM = Item("i", "question", GT, {}, type="ATE")
R1_PROMPT = "<｜begin▁of▁sentence｜><｜User｜>question<｜Assistant｜><think>\n"      # DeepSeek-R1-Distill template
QWEN3_OFF = "<|im_start|>user\nquestion<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"  # thinking off


# ---- the scorer ---------------------------------------------------------------------------------------------------
def test_the_issues_unclosed_thinking_has_no_answer():
    assert score(ISSUE, GT, "strict") is False and reward(ISSUE, GT) == 0.0
    assert final_answer(ISSUE) is None and not well_formed(ISSUE, GT)
    assert score(ISSUE, GT, "paper") is True              # the paper's scorer credits it; kept bit-exact
    lack = "<think>P(Y | X=1) is not given, so LACK_CONDITION... wait, maybe via"
    assert score(lack, LACK_CONDITION, "strict") is False and reward(lack, LACK_CONDITION) == 0.0
    assert score(lack, LACK_CONDITION, "paper") is True


@pytest.mark.parametrize("reply,opened,strict", [
    ('<think>a</think>{"ANSWER": "Yes", "PROB": "0.5"}', False, True),              # closed: answered
    ('<think>a</think>{"PROB": "0.5"} <think>on second thought {"PROB": "0.5"}', False, False),  # reopened, cut
    ('<think>a</think>{"PROB": "0.5"}<think>b</think>{"PROB": "0.5"}', False, True),
    ('{"ANSWER": "Yes", "PROB": "0.5"}', False, True),                              # a model that does not think
    ('so the ATE is {"ANSWER": "Yes", "PROB": "0.5"} hmm', True, False),            # template opened, truncated
    ('so it is 0.5</think>{"ANSWER": "Yes", "PROB": "0.5"}', True, True),           # template opened, closed
    ('so it is 0.5</think>{"ANSWER": "Yes", "PROB": "0.5"}<think>but', True, False),
])
def test_thinking_open_at_the_end_means_no_final_answer(reply, opened, strict):
    assert score(reply, GT, "strict", opened=opened) is strict
    assert reward(reply, GT, opened=opened) == (1.0 if strict else 0.0)


def test_prompt_opens_thinking_reads_the_template():
    assert prompt_opens_thinking(R1_PROMPT)
    assert not prompt_opens_thinking(QWEN3_OFF)           # opened and closed again: the reply starts answering
    assert not prompt_opens_thinking("<start_of_turn>user\nquestion<end_of_turn>\n<start_of_turn>model\n")
    assert prompt_opens_thinking("<think>old</think> then <think>\n")


def test_decoding_that_drops_the_closing_tag_is_refused():
    tok = byte_tokenizer()
    scoring.check_tags_survive_decoding(tok)              # a plain added text: kept
    tok.add_special_tokens({"additional_special_tokens": ["</think>"]})
    with pytest.raises(ValueError, match="special token that decoding drops"):
        scoring.check_tags_survive_decoding(tok)


# ---- evaluation ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from caujax.models import load_pretrained
    from model_fixtures import make_tiny_checkpoint_with_tokenizer

    return load_pretrained(make_tiny_checkpoint_with_tokenizer(tmp_path_factory.mktemp("m")))


@pytest.mark.parametrize("opens", [False, True])
def test_eval_scores_a_truncated_reply_of_an_opening_template_as_unanswered(tiny, tmp_path, monkeypatch, opens):
    """The fake sampler answers every item right, without any tag, and runs into max_new_tokens."""
    from caujax.eval import generate_set
    from caujax.eval_report import set_scores

    model, tokenizer = tiny
    if opens:
        monkeypatch.setattr(tokenizer, "chat_template", tokenizer.chat_template.replace(
            "<assistant>{% endif %}", "<assistant><think>\n{% endif %}"))
    items = [ITEM, Item("j", "other question", '{"PROB": "0.25"}', {}, type="PN")]
    params = sampling.SamplingParams(n=2, max_new_tokens=5)

    def fake(model, tokenizer, prompts, params, mesh=None):
        by_prompt = {p: it for it in items for p in prompts if it.problem in p}
        texts = [[by_prompt[p].answer] * params.n for p in prompts]
        ids = [[[100] * params.max_new_tokens] * params.n for _ in prompts]        # no EOS: truncated
        return SampleOutput(ids, [[np.zeros(5)] * params.n for _ in prompts], texts,
                            [[False] * params.n for _ in prompts])

    monkeypatch.setattr(sampling, "sample", fake)
    generations = generate_set(model, tokenizer, "set", items, tmp_path / "set.jsonl", params, batch_size=2)
    assert all(r["prompt_opened_thinking"] is opens and r["truncated"] == [True, True] for r in generations.values())
    rows = set_scores(items, generations)
    assert rows["model (strict)"]["all"] == (0.0 if opens else 1.0)
    assert rows["model (paper)"]["all"] == 1.0


# ---- GRPO / PPO rewards -------------------------------------------------------------------------------------------
def test_builtin_rewards_read_opened():
    texts = ['{"ANSWER": "Yes", "PROB": "0.5"}', 'x</think>{"ANSWER": "Yes", "PROB": "0.5"}']
    assert BUILTIN["causal"](["p"] * 2, texts, [ITEM] * 2, opened=[True, True]) == [0.0, 1.0]
    assert BUILTIN["causal"](["p"] * 2, texts, [ITEM] * 2) == [1.0, 1.0]
    assert BUILTIN["format"](["p"] * 2, texts, [ITEM] * 2, opened=[True, True]) == [0.0, 1.0]
    assert BUILTIN["causal"](["p"], [ISSUE], [ITEM]) == [0.0] and BUILTIN["format"](["p"], [ISSUE], [ITEM]) == [0.0]


def test_reward_set_passes_row_facts_to_functions_that_ask(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("seen = []\n"
                    "def plain(p, c, i):\n    return [0.0] * len(c)\n"
                    "def asks(p, c, i, truncated):\n    return [float(t) for t in truncated]\n"
                    "def anything(p, c, i, **kw):\n    return [float(len(kw))] * len(c)\n")
    rs = RewardSet.from_params(RolloutParams(rewards=("causal", "format", "plain", "asks", "anything"),
                                             reward_weights=(1.0, 0.1, 1.0, 1.0, 1.0), reward_file=str(path)))
    texts = ['{"ANSWER": "Yes", "PROB": "0.5"}'] * 2
    total_R, terms = rs(["p"] * 2, texts, [ITEM] * 2, truncated=np.array([True, False]), opened=[True, False])
    np.testing.assert_array_equal(terms["causal"], [0.0, 1.0])   # truncated inside the template's <think>: no answer
    np.testing.assert_array_equal(terms["asks"], [1.0, 0.0])
    np.testing.assert_array_equal(terms["anything"], [2.0, 2.0])
    np.testing.assert_allclose(total_R, [0.0 + 1.0 + 2.0, 1.1 + 2.0])
    with pytest.raises(ValueError, match="opened has 1 rows, expected 2"):
        rs(["p"] * 2, texts, [ITEM] * 2, opened=[True])


@pytest.mark.parametrize("opens", [False, True])
def test_rollout_rewards_a_truncated_completion_of_an_opening_template_zero(monkeypatch, opens):
    """RolloutSource._sample_groups on the byte tokenizer, with the sampler replaced: two completions per prompt,
    both the right answer without a tag, the first ended by EOS, the second cut at max_completion_length."""
    tok = byte_tokenizer()
    if opens:
        tok.chat_template = tok.chat_template.replace("<assistant>{% endif %}", "<assistant><think>\n{% endif %}")
    examples = [RLExample("i", "question", GT, ITEM)]
    prompt_ids = rollout.encode_prompts(tok, examples, 512, "grpo.rollout")
    assert rollout.prompts_open_thinking(tok, prompt_ids) == [opens]
    answer = tok(GT, add_special_tokens=False)["input_ids"]
    eos, M = tok.eos_token_id, len(answer)
    tokens = np.zeros((2, M + 1), np.int32)
    tokens[0, :M + 1], tokens[1, :M] = answer + [eos], answer
    out = Samples(tokens, np.zeros((2, M + 1), np.float32), np.array([M + 1, M]), np.array([True, False]),
                  np.full((2, M + 1), -np.inf, np.float32), M + 1)
    monkeypatch.setattr(rollout, "sample_ids", lambda *a, **k: out)
    ro = RolloutParams(n=2, rewards=("causal", "format"), reward_weights=(1.0, 0.1), max_completion_length=M)
    source = types.SimpleNamespace(
        ro=ro, G=2, k=0, ctx=types.SimpleNamespace(cfg=types.SimpleNamespace(data=types.SimpleNamespace(seed=0)),
                                                   mesh=None),
        prompt_ids=prompt_ids, eos_ids=(eos,), pad_id=0, sampled_tokens=0, tokenizer=tok, examples=examples,
        rewards=RewardSet.from_params(ro), opened=rollout.prompts_open_thinking(tok, prompt_ids))
    group = rollout.RolloutSource._sample_groups(source, None, [0], 0)
    assert group["text_R"] == [GT, GT]
    # EOS without </think> after an opened <think> is still unfinished thinking; a plain model answered both times
    np.testing.assert_allclose(group["reward_R"], [0.0, 0.0] if opens else [1.1, 1.1])
    np.testing.assert_array_equal(group["correct_R"], [0.0, 0.0] if opens else [1.0, 1.0])
