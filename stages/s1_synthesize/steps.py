"""The synthesis steps (METHOD.md steps 1-6), each a function from the previous step's products to its own, keyed by
prompt id. Every prompt a step cannot serve is recorded with its reason in `stats`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ray_cluster.generation import GenerationResult
from rlhf_stack.core.chat import user_messages
from rlhf_stack.core.records import (
    Candidate,
    InitialPair,
    PairJudgment,
    PromptRecord,
    Refinement,
    RMBoostPair,
    TeacherAnswer,
)
from stages.s1_synthesize.config import SynthesizeConfig
from stages.s1_synthesize.judge import CalibrateItem, Judge, PairItem, RefineItem
from stages.s1_synthesize.llm_judge import ask_until_parsed, to_sampling
from stages.s1_synthesize.pairing import decide, pick_pair, seeded_rng
from stages.s1_synthesize.parsing import parse_rewrite
from stages.s1_synthesize.prompts import REWRITE_ASPECTS, rewrite_messages, rewrite_regex
from stages.s1_synthesize.session import ModelSession, make_request
from stages.s1_synthesize.stats import StageStats, normalized_edit_distance

TopK = tuple[np.ndarray, np.ndarray]  # token ids [n_tokens, k] int32, logprobs [n_tokens, k] float32


@dataclass(frozen=True)
class PromptItem:
    """An item that is just a prompt (RMBoost rewrites)."""

    key: str
    prompt: str


def _messages(prompt: str) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in user_messages(prompt))


DATASET_CHOSEN, DATASET_REJECTED = "dataset:chosen", "dataset:rejected"  # generator names of a record's answers


def candidates(cfg: SynthesizeConfig, prompts: list[PromptRecord], sessions: dict[str, ModelSession],
               stats: StageStats) -> dict[str, list[Candidate]]:
    """Step 1: `responses_per_generator` answers from each generator. Generators other than the teacher run first
    and release their engines before the teacher's start. With `candidates_from: dataset`, the record's own chosen
    and rejected answers instead (the teacher still judges them in both orders)."""
    if cfg.candidates_from == "dataset":
        return dataset_candidates(prompts, stats)
    sampling = to_sampling(cfg.candidate_sampling)
    answers: dict[tuple[str, str, int], GenerationResult] = {}
    for alias in sorted(cfg.generators, key=lambda a: a == cfg.teacher):
        requests, keys = [], []
        for p in prompts:
            for j in range(cfg.responses_per_generator):
                requests.append(make_request("candidates", alias, f"{p.id}/{alias}/{j}", _messages(p.prompt),
                                             sampling, overflow="truncate_left"))
                keys.append((p.id, alias, j))
        answers.update(zip(keys, sessions[alias].generate("candidates", requests)))
        if alias != cfg.teacher:
            sessions[alias].close()
    st, out = stats.steps["candidates"], {}
    for p in prompts:
        st.requested += 1
        found = [Candidate(generator=alias, text=r.completions[0].text, finish_reason=r.completions[0].finish_reason)
                 for alias in cfg.generators for j in range(cfg.responses_per_generator)
                 if not (r := answers[(p.id, alias, j)]).error]
        if len(found) < 2:
            stats.drop(p.id, "candidates", "too_few_candidates")
        elif len({c.text.strip() for c in found}) < 2:
            stats.drop(p.id, "candidates", "identical_candidates")
        else:
            out[p.id] = found
            st.kept += 1
    return out


def dataset_candidates(prompts: list[PromptRecord], stats: StageStats) -> dict[str, list[Candidate]]:
    st, out = stats.steps["candidates"], {}
    for p in prompts:
        st.requested += 1
        if p.chosen is None or p.rejected is None:
            stats.drop(p.id, "candidates", "no_dataset_pair")
        elif p.chosen.strip() == p.rejected.strip():
            stats.drop(p.id, "candidates", "identical_candidates")
        else:
            out[p.id] = [Candidate(generator=DATASET_CHOSEN, text=p.chosen, finish_reason="stop"),
                         Candidate(generator=DATASET_REJECTED, text=p.rejected, finish_reason="stop")]
            st.kept += 1
    return out


def initial_pairs(cfg: SynthesizeConfig, prompts: list[PromptRecord], cands: dict[str, list[Candidate]],
                  judge: Judge, stats: StageStats, seed: int) -> tuple[dict[str, InitialPair], list[bool]]:
    """Step 2: the judge scores one random pair per prompt in both orders; the averaged scores pick chosen and
    rejected. Returns the kept pairs and, per judged pair, whether its preference survived the order swap."""
    shown, items = {}, []
    for p in prompts:
        if p.id in cands:
            a, b = pick_pair(cands[p.id], seeded_rng(seed, "pair", p.id))
            shown[p.id] = (a, b)
            texts = cands[p.id]
            items += [PairItem(f"{p.id}/ab", p.id, p.prompt, texts[a].text, texts[b].text),
                      PairItem(f"{p.id}/ba", p.id, p.prompt, texts[b].text, texts[a].text)]
    verdicts = judge.score_pairs(items)
    stats.judged("initial_scores", verdicts)
    st, pairs, consistent = stats.steps["initial_scores"], {}, []
    for (pid, (a, b)), ab, ba in zip(shown.items(), verdicts[0::2], verdicts[1::2]):
        st.requested += 1
        if ab.value is None or ba.value is None:
            stats.drop(pid, "initial_scores", ab.reason or ba.reason)
            continue
        d = decide(ab.value, ba.value, drop_position_flips=cfg.drop_position_flips,
                   tie_tolerance=cfg.tie_tolerance, min_score_gap=cfg.min_score_gap)
        consistent.append(d.consistent)
        if d.reason:
            stats.drop(pid, "initial_scores", d.reason)
            continue
        (w, sw), (lo, sl) = ((a, d.score_a), (b, d.score_b)) if d.a_wins else ((b, d.score_b), (a, d.score_a))
        pairs[pid] = InitialPair(
            chosen_index=w, rejected_index=lo, chosen=cands[pid][w].text, rejected=cands[pid][lo].text,
            chosen_score=sw, rejected_score=sl,
            judgments=[PairJudgment(first=a, second=b, scores=ab.value), PairJudgment(first=b, second=a,
                                                                                       scores=ba.value)])
        st.kept += 1
    return pairs, consistent


def teacher_answers(cfg: SynthesizeConfig, prompts: list[PromptRecord], pairs: dict[str, InitialPair],
                    teacher: ModelSession, stats: StageStats) -> tuple[dict[str, TeacherAnswer], dict[str, TopK]]:
    """Step 3: the teacher's own answer y_T to every prompt with a pair, with the top-k logprobs of its tokens."""
    sampling = to_sampling(cfg.answer_sampling, top_logprobs=cfg.teacher_top_logprobs)
    todo = [p for p in prompts if p.id in pairs]
    requests = [make_request("teacher_answer", teacher.alias, p.id, _messages(p.prompt), sampling,
                             overflow="truncate_left") for p in todo]
    st, answers, topk = stats.steps["teacher_answer"], {}, {}
    for p, result in zip(todo, teacher.generate("teacher_answer", requests)):
        st.requested += 1
        if result.error:
            stats.drop(p.id, "teacher_answer", result.error)
            continue
        c = result.completions[0]
        answers[p.id] = TeacherAnswer(text=c.text, token_ids=list(c.token_ids), finish_reason=c.finish_reason)
        if cfg.teacher_top_logprobs and c.token_ids and len(c.top_logprobs) == len(c.token_ids):
            topk[p.id] = _topk_arrays(c.top_logprobs, cfg.teacher_top_logprobs)
        st.kept += 1
    return answers, topk


def _topk_arrays(top, k: int) -> TopK:
    ids = np.zeros((len(top), k), dtype=np.int32)
    logprobs = np.full((len(top), k), -np.inf, dtype=np.float32)  # positions with fewer than k alternatives
    for i, position in enumerate(top):
        for j, entry in enumerate(position[:k]):
            ids[i, j], logprobs[i, j] = entry.token_id, entry.logprob
    return ids, logprobs


def refinements(prompts: list[PromptRecord], pairs: dict[str, InitialPair], answers: dict[str, TeacherAnswer],
                judge: Judge, stats: StageStats) -> dict[str, Refinement]:
    """Steps 4-5: the judge edits y_l into y*_w guided by y_T, then scores y*_w anchored on s_l."""
    items = [RefineItem(p.id, p.id, p.prompt, answers[p.id].text, pairs[p.id].rejected)
             for p in prompts if p.id in answers]
    verdicts = judge.refine(items)
    stats.judged("refine", verdicts)
    st, refined = stats.steps["refine"], []
    for item, v in zip(items, verdicts):
        st.requested += 1
        if v.value is None:
            stats.drop(item.key, "refine", v.reason)
        else:
            refined.append(CalibrateItem(item.key, item, v.value, pairs[item.key].rejected_score))
            st.kept += 1
    verdicts = judge.calibrate(refined)
    stats.judged("calibrate", verdicts)
    st, out = stats.steps["calibrate"], {}
    for item, v in zip(refined, verdicts):
        st.requested += 1
        if v.value is None:
            stats.drop(item.key, "calibrate", v.reason)
            continue
        out[item.key] = Refinement(
            chosen=item.refined.chosen, completion=item.refined.completion, calibrated_score=v.value,
            margin=v.value - item.rejected_score,
            edit_distance=normalized_edit_distance(item.refined.chosen, item.refine.rejected))
        st.kept += 1
    return out


def rmboost(cfg: SynthesizeConfig, prompts: list[PromptRecord], answers: dict[str, TeacherAnswer],
            teacher: ModelSession, stats: StageStats, seed: int) -> dict[str, RMBoostPair]:
    """Step 6 (baseline): the teacher rewrites its own answer better or worse on a few random aspects."""
    plans = {}
    for p in prompts:
        if p.id in answers:
            rng = seeded_rng(seed, "rmboost", p.id)
            plans[p.id] = (rng.choice(["better", "worse"]), " and ".join(rng.sample(REWRITE_ASPECTS, 2)))
    regex = rewrite_regex(cfg.refine_max_chars) if cfg.structured_refinement else None
    sampling = to_sampling(cfg.rmboost_sampling, regex=regex)
    items = [PromptItem(p.id, p.prompt) for p in prompts if p.id in plans]

    def build(item: PromptItem, s, key: str):
        direction, aspects = plans[item.key]
        return make_request("rmboost", teacher.alias, key,
                            rewrite_messages(item.prompt, answers[item.key].text, direction, aspects), s)

    verdicts = ask_until_parsed(teacher, "rmboost", items, sampling, build,
                                lambda item, c: parse_rewrite(c.text, answers[item.key].text), cfg)
    stats.judged("rmboost", verdicts)
    st, out = stats.steps["rmboost"], {}
    for item, v in zip(items, verdicts):
        st.requested += 1
        if v.value is None:
            stats.drop(item.key, "rmboost", v.reason)
            continue
        direction, original = plans[item.key][0], answers[item.key].text
        chosen, rejected = (v.value, original) if direction == "better" else (original, v.value)
        out[item.key] = RMBoostPair(direction=direction, chosen=chosen, rejected=rejected)
        st.kept += 1
    return out

