"""The teacher LLM as the judge: prompts P1-P3, constrained decoding where configured, retries, parsing.

An answer that does not parse is asked again (`parse_retries` times; a greedy request is re-asked at
`retry_temperature`, since greedy decoding would repeat itself), then the item is dropped with the last reason.
A prompt that does not fit the teacher's context is dropped as "prompt_too_long" and never cut: cutting a judge
prompt would change what is judged (METHOD.md D22).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ray_cluster.generation import Completion, GenerationRequest, Sampling
from stages.s1_synthesize.config import SamplingConfig, SynthesizeConfig
from stages.s1_synthesize.judge import CalibrateItem, PairItem, Refined, RefineItem, Verdict
from stages.s1_synthesize.parsing import Parsed, expected_scores, parse_refinement, parse_scores
from stages.s1_synthesize.prompts import (
    ONE_SCORE,
    PAIR_SCORES,
    calibrate_messages,
    pair_messages,
    refine_messages,
    refine_regex,
)
from stages.s1_synthesize.session import ModelSession, make_request


def to_sampling(cfg: SamplingConfig, **extra) -> Sampling:
    return Sampling(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                    top_k=cfg.top_k, min_p=cfg.min_p, **extra)


class LLMJudge:
    name = "llm"

    def __init__(self, teacher: ModelSession, cfg: SynthesizeConfig):
        self.teacher = teacher
        self.cfg = cfg
        constrained = cfg.score_format == "regex"
        k = cfg.score_top_logprobs if cfg.score_from == "expectation" else 0
        self._pair_sampling = to_sampling(cfg.judge_sampling, regex=PAIR_SCORES if constrained else None,
                                          top_logprobs=k)
        self._calibrate_sampling = to_sampling(cfg.calibrate_sampling, regex=ONE_SCORE if constrained else None,
                                               top_logprobs=k)
        self._refine_sampling = to_sampling(cfg.refine_sampling, regex=(
            refine_regex(cfg.refine_max_chars, cfg.refine_reasoning == "one_line") if cfg.structured_refinement
            else None))

    def score_pairs(self, items: Sequence[PairItem]) -> list[Verdict[tuple[float, float]]]:
        def build(item: PairItem, sampling: Sampling, key: str) -> GenerationRequest:
            return make_request("initial_scores", self.teacher.alias, key,
                                pair_messages(item.prompt, item.first, item.second), sampling)

        return ask_until_parsed(self.teacher, "initial_scores", items, self._pair_sampling, build,
                                lambda item, c: self._scores(c, 2), self.cfg)

    def refine(self, items: Sequence[RefineItem]) -> list[Verdict[Refined]]:
        def build(item: RefineItem, sampling: Sampling, key: str) -> GenerationRequest:
            return make_request("refine", self.teacher.alias, key,
                                refine_messages(item.prompt, item.preferred, item.rejected), sampling)

        def parse(item: RefineItem, completion: Completion) -> Parsed:
            edit = parse_refinement(completion.text, item.rejected)
            return edit if edit.value is None else Parsed(Refined(chosen=edit.value, completion=completion.text))

        return ask_until_parsed(self.teacher, "refine", items, self._refine_sampling, build, parse, self.cfg)

    def calibrate(self, items: Sequence[CalibrateItem]) -> list[Verdict[float]]:
        def build(item: CalibrateItem, sampling: Sampling, key: str) -> GenerationRequest:
            r = item.refine
            messages = calibrate_messages(r.prompt, r.preferred, r.rejected, item.refined.completion,
                                          item.rejected_score)
            return make_request("calibrate", self.teacher.alias, key, messages, sampling)

        def parse(item: CalibrateItem, completion: Completion) -> Parsed:
            scores = self._scores(completion, 1)
            return scores if scores.value is None else Parsed(scores.value[0])

        return ask_until_parsed(self.teacher, "calibrate", items, self._calibrate_sampling, build, parse, self.cfg)

    def _scores(self, completion: Completion, count: int) -> Parsed:
        scores = parse_scores(completion.text, count)
        if scores is None:
            return Parsed(reason="unparseable_score")
        if self.cfg.score_from == "expectation":
            scores = expected_scores(completion, count, lambda entry: entry.token)
            if scores is None:
                return Parsed(reason="no_score_logprobs")
        return Parsed(tuple(scores))


def ask_until_parsed(session: ModelSession, step: str, items: Sequence, sampling: Sampling,
                     build: Callable[[object, Sampling, str], GenerationRequest],
                     parse: Callable[[object, Completion], Parsed], cfg: SynthesizeConfig) -> list[Verdict]:
    """Asks the model about every item, re-asks those whose answer does not parse, and returns one Verdict each.

    Args:
        build: (item, sampling, request key) -> the request; the key names the item and the attempt.
        parse: (item, completion) -> Parsed value or reason.
    """
    verdicts: list[Verdict | None] = [None] * len(items)
    failures = [0] * len(items)
    reasons: list[str] = [""] * len(items)
    todo = list(range(len(items)))
    for attempt in range(cfg.parse_retries + 1):
        if not todo:
            break
        asked = sampling
        if attempt and sampling.temperature == 0:
            asked = replace(sampling, temperature=cfg.retry_temperature)
        requests = [build(items[i], asked, f"{items[i].key}/try{attempt}") for i in todo]
        retry = []
        for i, result in zip(todo, session.generate(step, requests)):
            if result.error:
                verdicts[i] = Verdict(reason=result.error, attempts=attempt + 1, parse_failures=failures[i])
                continue
            parsed = parse(items[i], result.completions[0])
            if parsed.value is not None:
                verdicts[i] = Verdict(parsed.value, attempts=attempt + 1, parse_failures=failures[i])
            else:
                failures[i] += 1
                reasons[i] = parsed.reason
                retry.append(i)
        todo = retry
    for i in todo:
        verdicts[i] = Verdict(reason=reasons[i], attempts=cfg.parse_retries + 1, parse_failures=failures[i])
    return verdicts  # type: ignore[return-value]  # every item got a verdict
