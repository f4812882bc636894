"""A rollout's decisions, pure: where it stands and each arm's figures in, the next decision out.

The loop of Flagger's canary analysis and Argo Rollouts' canary steps, for a model whose quality arrives late:

- an optional mirror phase comes first: the candidate gets copies of the traffic (answers dropped) at weight 0
  until both guardrails judged the copies and passed (then the first step), or one failed (rolled back);
- every look evaluates the guardrails (error rate, latency) and the accuracy gate on the figures since the rollout
  began; a failed gate rolls back at once (baseline 100, candidate 0) and says which gate, with its figures;
- a step holds until the candidate has ``minOutcomes`` outcomes in it and both guardrails could judge and passed,
  then advances to the next step's weight;
- at the last step the ``promote`` policy's always-valid test decides: promoted (candidate 100) when it passes;
- ``maxDuration`` ends the rollout kept_baseline (baseline 100) at whatever step it holds.

The same function runs in ``market-ab rollout run``, in the calibration's simulations and in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from . import gates as g
from .document import RolloutSpec

PROGRESSING, PROMOTED, ROLLED_BACK, KEPT_BASELINE, ABORTED = (
    "progressing", "promoted", "rolled_back", "kept_baseline", "aborted")
PHASES = (PROGRESSING, PROMOTED, ROLLED_BACK, KEPT_BASELINE, ABORTED)  # market_ab_rollout_phase is the index
HOLD, ADVANCE, ROLL_BACK, PROMOTE, KEEP_BASELINE = "hold", "advance", "roll_back", "promote", "keep_baseline"


@dataclass(frozen=True)
class Progress:
    """What the loop carries from one look to the next (every audit line holds it: a restarted loop resumes)."""

    started: float  # seconds, the loop's clock
    step_started: float
    step: int = 0  # index into spec.steps
    mirroring: bool = False  # in the mirror phase, before the first step
    step_outcomes: int = 0  # the candidate's outcomes when the step began
    worse_p: float = 1.0  # running minimum of the accuracy gate's always-valid p
    promote_p: float = 1.0  # running minimum of the promote policy's always-valid p
    phase: str = PROGRESSING

    @classmethod
    def begin(cls, now: float, mirroring: bool = False) -> Progress:
        return cls(started=now, step_started=now, mirroring=mirroring)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    action: str  # hold, advance, roll_back, promote or keep_baseline
    progress: Progress  # where the rollout stands after it
    candidate_weight: int  # percent; the baseline has the rest
    gates: tuple[g.GateResult, ...]
    reasons: tuple[str, ...]

    @property
    def weights(self) -> dict[str, int]:
        return {"baseline": 100 - self.candidate_weight, "candidate": self.candidate_weight}


def decide(spec: RolloutSpec, progress: Progress, baseline: g.ArmFigures, candidate: g.ArmFigures,
           now: float) -> Decision:
    """The decision of one look. ``progress.phase`` must be progressing."""
    if progress.mirroring:
        return _mirror_phase(spec, progress, baseline, candidate, now)
    judged = [g.error_rate(spec, baseline, candidate), g.latency(spec, baseline, candidate),
              g.accuracy(spec, baseline, candidate, progress.worse_p)]
    progress = replace(progress, worse_p=judged[2].figures["always_valid_p"])
    failed = [gate for gate in judged if gate.verdict == g.FAIL]
    if failed:
        return Decision(ROLL_BACK, replace(progress, phase=ROLLED_BACK), 0, tuple(judged),
                        tuple(f"{gate.name}: {gate.reason}" for gate in failed))
    weight = spec.steps[progress.step]
    in_step = candidate.outcomes - progress.step_outcomes
    waiting = [f"{in_step} of {spec.min_outcomes} candidate outcomes in this step"] \
        if in_step < spec.min_outcomes else []
    waiting += [f"{gate.name}: {gate.reason}" for gate in judged[:2] if gate.verdict == g.INCONCLUSIVE]
    last = progress.step == len(spec.steps) - 1
    if last:
        promotion = g.promotion(spec, baseline, candidate, progress.promote_p)
        progress = replace(progress, promote_p=promotion.figures["always_valid_p"])
        judged.append(promotion)
        if not waiting and promotion.verdict == g.PASS:
            return Decision(PROMOTE, replace(progress, phase=PROMOTED), 100, tuple(judged), (promotion.reason,))
        if promotion.verdict != g.PASS:
            waiting.append(promotion.reason)
    if now - progress.started >= spec.max_duration:
        return time_is_up(spec, progress, tuple(judged))
    if not last and not waiting:
        step = progress.step + 1
        advanced = replace(progress, step=step, step_started=now, step_outcomes=candidate.outcomes)
        return Decision(ADVANCE, advanced, spec.steps[step], tuple(judged),
                        (f"step {progress.step + 1} passed its gates with {in_step} candidate outcomes",))
    return Decision(HOLD, progress, weight, tuple(judged), tuple(waiting))


def _mirror_phase(spec: RolloutSpec, progress: Progress, baseline: g.ArmFigures, candidate: g.ArmFigures,
                  now: float) -> Decision:
    """The guardrails on the candidate's mirror copies; no outcomes come back from answers nobody sees."""
    judged = (g.error_rate(spec, baseline, candidate), g.latency(spec, baseline, candidate))
    failed = [gate for gate in judged if gate.verdict == g.FAIL]
    if failed:
        return Decision(ROLL_BACK, replace(progress, phase=ROLLED_BACK, mirroring=False), 0, judged,
                        tuple(f"{gate.name} (mirror phase): {gate.reason}" for gate in failed))
    if all(gate.verdict == g.PASS for gate in judged):
        first = replace(progress, mirroring=False, step=0, step_started=now, step_outcomes=candidate.outcomes)
        return Decision(ADVANCE, first, spec.steps[0], judged,
                        (f"the mirror phase passed both guardrails on {candidate.requests} copies",))
    if now - progress.started >= spec.max_duration:
        return time_is_up(spec, progress, judged)
    return Decision(HOLD, progress, 0, judged, tuple(f"{gate.name}: {gate.reason}" for gate in judged
                                                    if gate.verdict == g.INCONCLUSIVE))


def time_is_up(spec: RolloutSpec, progress: Progress, judged: tuple = ()) -> Decision:
    """``maxDuration`` reached: the baseline is kept (also when the figures cannot be read)."""
    where = "in the mirror phase" if progress.mirroring else \
        f"at step {progress.step + 1} of {len(spec.steps)} (candidate weight {spec.steps[progress.step]}%)"
    return Decision(KEEP_BASELINE, replace(progress, phase=KEPT_BASELINE, mirroring=False), 0, judged,
                    (f"maxDuration {spec.max_duration:g} s reached {where} without a promotion",))
