"""Journey definitions: the JSON a journey's draft and versions hold, and its validation.

    {"steps": [
        {"key": "start", "type": "entry", "audience_id": 3, "next": "pause"},       # or "event": "signed_up"
        {"key": "pause", "type": "wait", "duration": {"days": 1, "hours": 2}, "next": "vip?"},
        {"key": "vip?", "type": "condition", "rule": {"all": [...]}, "next_true": "crm", "next_false": "done"},
        {"key": "crm", "type": "activate", "partner_config_id": 7, "partner_audience_id": "seg-1",
         "profile_variables": ["first_name"], "action": "add", "next": "done"},
        {"key": "done", "type": "exit"}
    ]}

Every step may carry a "label" (shown on the pages). Conditions are audience rules (audiences.rules) on the profile's
attributes. Activation steps name a partner configuration whose partner is usable in journeys; profile variables only
where the partner supports them; the action must be one the partner syncs.

`validate_steps` checks each step on its own (what a draft must satisfy to be saved: its activation steps become
rows linked to their configurations); `validate_definition` adds the graph rules publishing needs: exactly one entry,
every `next` naming a step, no cycles, every step reachable from the entry, an exit reachable from every step.
Errors are ValidationError({"definition": [...]}), each message naming the step key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError

from audiences.rules import ATTRIBUTE, validate_rule
from dap.service_helpers import is_id

MAX_STEPS = 200
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:?-]{0,63}")
EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
DURATION_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
MAX_WAIT = timedelta(days=366)
ACTIONS = ("add", "update", "remove")
MAX_PROFILE_VARIABLES = 50

COMMON = {"key", "type", "label"}
ALLOWED = {
    "entry": COMMON | {"audience_id", "event", "next"},
    "wait": COMMON | {"duration", "next"},
    "condition": COMMON | {"rule", "next_true", "next_false"},
    "activate": COMMON | {"partner_config_id", "partner_audience_id", "profile_variables", "action", "next"},
    "exit": COMMON,
}
TYPES = tuple(ALLOWED)


def empty_definition() -> dict:
    return {"steps": []}


@dataclass(frozen=True)
class Activation:
    """An activation step as the link table stores it."""

    step_key: str
    label: str
    partner_config_id: int
    action: str
    partner_audience_id: str
    profile_variables: list[str]


def steps_of(definition: dict) -> list[dict]:
    steps = definition.get("steps") if isinstance(definition, dict) else None
    return steps if isinstance(steps, list) else []


def step_map(definition: dict) -> dict[str, dict]:
    return {s["key"]: s for s in steps_of(definition) if isinstance(s, dict) and isinstance(s.get("key"), str)}


def entry_step(definition: dict) -> dict | None:
    return next((s for s in steps_of(definition) if isinstance(s, dict) and s.get("type") == "entry"), None)


def successors(step: dict) -> list[str]:
    if step.get("type") == "condition":
        return [k for k in (step.get("next_true"), step.get("next_false")) if k is not None]
    if step.get("type") == "exit":
        return []
    return [step["next"]] if step.get("next") is not None else []


def wait_duration(step: dict) -> timedelta:
    return timedelta(seconds=sum(DURATION_UNITS[u] * n for u, n in step["duration"].items()))


def activations(definition: dict) -> list[Activation]:
    """The activation steps of a (step-valid) definition."""
    return [
        Activation(
            step_key=s["key"],
            label=s.get("label", ""),
            partner_config_id=s["partner_config_id"],
            action=s.get("action", "add"),
            partner_audience_id=s.get("partner_audience_id", ""),
            profile_variables=list(s.get("profile_variables", [])),
        )
        for s in steps_of(definition)
        if s.get("type") == "activate"
    ]


def ordered_keys(definition: dict) -> list[str]:
    """Step keys in an order where every step comes after those leading to it (for a valid definition: a
    topological order from the entry), so one pass over the steps moves a profile as far as it can go."""
    steps = step_map(definition)
    incoming = dict.fromkeys(steps, 0)
    for step in steps.values():
        for nxt in successors(step):
            if nxt in incoming:
                incoming[nxt] += 1
    ready = [k for k, n in incoming.items() if n == 0]
    order: list[str] = []
    while ready:
        key = ready.pop(0)
        order.append(key)
        for nxt in successors(steps[key]):
            if nxt in incoming:
                incoming[nxt] -= 1
                if incoming[nxt] == 0:
                    ready.append(nxt)
    return order + [k for k in steps if k not in order]


# --- validation -------------------------------------------------------------------------------------------------


def _where(index: int, step: Any) -> str:
    key = step.get("key") if isinstance(step, dict) else None
    return f'step "{key}"' if isinstance(key, str) and key else f"steps[{index}]"


def validate_steps(definition: Any) -> dict:
    """The definition when every step is well-formed on its own; else ValidationError({"definition": [...]})."""
    problems: list[str] = []
    if not isinstance(definition, dict):
        raise ValidationError({"definition": ['A definition is an object: {"steps": [...]}.']})
    unknown = sorted(set(definition) - {"steps"})
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}: a definition holds only steps")
    steps = definition.get("steps", [])
    if not isinstance(steps, list):
        raise ValidationError({"definition": ["steps: expected a list of steps."]})
    if len(steps) > MAX_STEPS:
        raise ValidationError({"definition": [f"A journey has at most {MAX_STEPS} steps."]})
    seen: set[str] = set()
    config_ids: dict[int, list[str]] = {}
    audience_ids: dict[int, list[str]] = {}
    for i, step in enumerate(steps):
        where = _where(i, step)
        if not isinstance(step, dict):
            problems.append(f"{where}: expected an object")
            continue
        key = step.get("key")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            problems.append(f"{where}: key is required: up to 64 letters, digits and _ . : ? - (not starting with one)")
        elif key in seen:
            problems.append(f'{where}: the key "{key}" is used by more than one step')
        else:
            seen.add(key)
        kind = step.get("type")
        if not isinstance(kind, str) or kind not in ALLOWED:
            problems.append(f"{where}: type must be one of {', '.join(TYPES)}")
            continue
        extra = sorted(set(step) - ALLOWED[kind])
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(extra)} for a {kind} step")
        label = step.get("label", "")
        if not isinstance(label, str) or len(label) > 200:
            problems.append(f"{where}: label is text of at most 200 characters")
        for field in ("next", "next_true", "next_false"):
            if field in ALLOWED[kind] and field in step and not isinstance(step[field], str):
                problems.append(f"{where}: {field} is the key of another step")
        if kind in ("entry", "wait", "activate") and not step.get("next"):
            problems.append(f"{where}: next is required (the key of the step that follows)")
        if kind == "condition":
            for field in ("next_true", "next_false"):
                if not step.get(field):
                    problems.append(f"{where}: {field} is required (the key of the step that follows)")
        check = _CHECKS.get(kind)
        if check:
            check(step, where, problems, config_ids, audience_ids)
    _check_audiences(audience_ids, problems)
    _check_configs(config_ids, steps, problems)
    if problems:
        raise ValidationError({"definition": problems})
    return definition


def _check_entry(step, where, problems, config_ids, audience_ids) -> None:
    has_audience, has_event = "audience_id" in step, "event" in step
    if has_audience == has_event:
        problems.append(f"{where}: an entry has either audience_id (profiles entering the audience) or event")
        return
    if has_audience:
        value = step["audience_id"]
        if not is_id(value):
            problems.append(f"{where}: audience_id is the id of an audience")
        else:
            audience_ids.setdefault(value, []).append(where)
    else:
        value = step["event"]
        if not isinstance(value, str) or not EVENT_NAME.fullmatch(value):
            problems.append(f"{where}: event is an event name (letters, digits and _ . : -, at most 100)")


def _check_wait(step, where, problems, config_ids, audience_ids) -> None:
    duration = step.get("duration")
    units = ", ".join(DURATION_UNITS)
    if not isinstance(duration, dict) or not duration:
        problems.append(f'{where}: duration is required, e.g. {{"hours": 2}} (units: {units})')
        return
    unknown = sorted(set(duration) - set(DURATION_UNITS))
    if unknown:
        problems.append(f"{where}: unknown duration unit(s) {', '.join(unknown)} (units: {units})")
        return
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in duration.values()):
        problems.append(f"{where}: duration amounts are whole numbers, 0 or more")
        return
    # In whole seconds first: a timedelta of a huge amount would overflow.
    total = sum(DURATION_UNITS[unit] * n for unit, n in duration.items())
    if total <= 0:
        problems.append(f"{where}: a wait lasts at least one second")
    elif total > MAX_WAIT.total_seconds():
        problems.append(f"{where}: a wait lasts at most {MAX_WAIT.days} days")


def _check_condition(step, where, problems, config_ids, audience_ids) -> None:
    if "rule" not in step:
        problems.append(f'{where}: rule is required (an audience rule: {{"all": [...]}} or {{"any": [...]}})')
        return
    try:
        validate_rule(step["rule"])
    except ValidationError as exc:
        problems.extend(f"{where}: {message}" for message in exc.message_dict.get("rule", exc.messages))


def _check_activate(step, where, problems, config_ids, audience_ids) -> None:
    config_id = step.get("partner_config_id")
    if not is_id(config_id):
        problems.append(f"{where}: partner_config_id is required (the id of a connector configuration)")
    else:
        config_ids.setdefault(config_id, []).append(where)
    action = step.get("action", "add")
    if action not in ACTIONS:
        problems.append(f"{where}: action is one of {', '.join(ACTIONS)}")
    audience_id = step.get("partner_audience_id", "")
    if not isinstance(audience_id, str) or len(audience_id) > 200:
        problems.append(f"{where}: partner_audience_id is text of at most 200 characters")
    variables = step.get("profile_variables", [])
    if not isinstance(variables, list) or len(variables) > MAX_PROFILE_VARIABLES:
        problems.append(f"{where}: profile_variables is a list of at most {MAX_PROFILE_VARIABLES} attribute names")
    else:
        bad = [v for v in variables if not isinstance(v, str) or not ATTRIBUTE.fullmatch(v) or "__" in v]
        if bad:
            problems.append(f"{where}: profile_variables holds attribute names (letters, digits, single underscores)")
        elif len(set(variables)) != len(variables):
            problems.append(f"{where}: profile_variables names an attribute twice")


_CHECKS = {"entry": _check_entry, "wait": _check_wait, "condition": _check_condition, "activate": _check_activate}


def _check_audiences(audience_ids: dict[int, list[str]], problems: list[str]) -> None:
    from audiences.models import Audience

    if not audience_ids:
        return
    found = set(Audience.objects.filter(pk__in=list(audience_ids)).values_list("pk", flat=True))
    for audience_id, wheres in audience_ids.items():
        if audience_id not in found:
            problems.extend(f"{where}: audience {audience_id} does not exist" for where in wheres)


def _check_configs(config_ids: dict[int, list[str]], steps: list, problems: list[str]) -> None:
    from connectors.models import PartnerConfig
    from connectors.partners.base import UsableIn
    from connectors.partners.registry import REGISTRY

    if not config_ids:
        return
    configs = {
        c.pk: c for c in PartnerConfig.objects.filter(pk__in=list(config_ids)).select_related("connector")
    }  # deactivated connectors are allowed: their deliveries are recorded as skipped
    by_where = {_where(i, s): s for i, s in enumerate(steps) if isinstance(s, dict)}
    for config_id, wheres in config_ids.items():
        config = configs.get(config_id)
        for where in wheres:
            if config is None:
                problems.append(f"{where}: partner configuration {config_id} does not exist")
                continue
            partner = REGISTRY.get(config.connector.partner_key)
            name = f'"{config.connector.name} / {config.name}"'
            if partner is None or UsableIn.JOURNEYS not in partner.usable_in:
                label = partner.name if partner else config.connector.partner_key
                problems.append(f"{where}: {name} cannot be used in journeys ({label} is not usable in journeys)")
                continue
            step = by_where.get(where, {})
            action = step.get("action", "add")
            if action in ACTIONS and action not in partner.syncs_on:
                synced = ", ".join(str(s) for s in partner.syncs_on)
                problems.append(f"{where}: {partner.name} does not sync {action} (it syncs {synced})")
            if step.get("profile_variables") and not partner.profile_variables:
                problems.append(f"{where}: {partner.name} does not take profile variables")
            # The partner-side audience, as an audience connection names it (same rules, where the partner has them).
            clean_audience_id = getattr(partner, "clean_audience_id", None)
            audience_id = step.get("partner_audience_id", "")
            if clean_audience_id is not None and isinstance(audience_id, str) and len(audience_id) <= 200:
                try:
                    clean_audience_id(audience_id, config.settings)
                except ValidationError as exc:
                    problems.extend(f"{where}: partner_audience_id: {m}" for m in exc.messages)


def validate_definition(definition: Any) -> dict:
    """Everything publishing needs: well-formed steps and a sound graph."""
    validate_steps(definition)
    steps = step_map(definition)
    problems: list[str] = []
    if not steps:
        raise ValidationError({"definition": ["A journey needs steps: an entry, what follows, and an exit."]})
    entries = [k for k, s in steps.items() if s["type"] == "entry"]
    if not entries:
        problems.append("the journey has no entry step (type entry: an audience or an event)")
    elif len(entries) > 1:
        problems.append(f"the journey has more than one entry step: {', '.join(entries)}; keep exactly one")
    for key, step in steps.items():
        for nxt in successors(step):
            if nxt not in steps:
                problems.append(f'step "{key}": the next step "{nxt}" does not exist')
            elif steps[nxt]["type"] == "entry":
                problems.append(f'step "{key}": cannot lead back to the entry step "{nxt}"')
    if not any(s["type"] == "exit" for s in steps.values()):
        problems.append("the journey has no exit step (type exit)")
    if problems:
        raise ValidationError({"definition": problems})
    cycle = _find_cycle(steps)
    if cycle:
        problems.append(f"the steps form a cycle: {' → '.join(cycle)}")
    else:
        reachable = _reachable(steps, entries[0])
        for key in steps:
            if key not in reachable:
                problems.append(f'step "{key}" cannot be reached from the entry "{entries[0]}"')
        can_exit = _can_reach_exit(steps)
        for key in steps:
            if key not in can_exit:
                problems.append(f'step "{key}": no exit can be reached from it')
    if problems:
        raise ValidationError({"definition": problems})
    return definition


def _reachable(steps: dict[str, dict], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in successors(steps[todo.pop()]):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _can_reach_exit(steps: dict[str, dict]) -> set[str]:
    before: dict[str, set[str]] = {k: set() for k in steps}
    for key, step in steps.items():
        for nxt in successors(step):
            before[nxt].add(key)
    done = {k for k, s in steps.items() if s["type"] == "exit"}
    todo = list(done)
    while todo:
        for prev in before[todo.pop()]:
            if prev not in done:
                done.add(prev)
                todo.append(prev)
    return done


def _find_cycle(steps: dict[str, dict]) -> list[str]:
    """One cycle's keys (first repeated at the end), or [] when the steps form none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in steps:
        if state.get(root):
            continue
        path: list[str] = []
        stack = [(root, iter(successors(steps[root])))]
        state[root] = 1
        path.append(root)
        while stack:
            key, children = stack[-1]
            nxt = next(children, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[key] = 2
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(successors(steps[nxt]))))
    return []


def describe_step(step: dict, *, audiences: dict[int, str] | None = None, configs: dict[int, str] | None = None) -> str:
    """One line in plain words for the pages."""
    kind = step.get("type")
    if kind == "entry":
        if "audience_id" in step:
            name = (audiences or {}).get(step["audience_id"], f"audience {step['audience_id']}")
            return f'Profiles entering the audience "{name}"'
        return f'Profiles posting the event "{step.get("event")}"'
    if kind == "wait":
        parts = [f"{n} {unit if n != 1 else unit[:-1]}" for unit, n in step.get("duration", {}).items() if n]
        return "Wait " + ", ".join(parts)
    if kind == "condition":
        return f"If {describe_rule(step.get('rule', {}))}: go to {step.get('next_true')}, else {step.get('next_false')}"
    if kind == "activate":
        name = (configs or {}).get(step.get("partner_config_id"), f"configuration {step.get('partner_config_id')}")
        text = f"{step.get('action', 'add').capitalize()} at {name}"
        if step.get("partner_audience_id"):
            text += f" (partner audience {step['partner_audience_id']})"
        if step.get("profile_variables"):
            text += f" with {', '.join(step['profile_variables'])}"
        return text
    if kind == "exit":
        return "Exit"
    return str(kind)


def describe_rule(rule: Any) -> str:
    if not isinstance(rule, dict):
        return "?"
    for group, word in (("all", " and "), ("any", " or ")):
        if group in rule and isinstance(rule[group], list):
            inner = word.join(describe_rule(child) for child in rule[group])
            return f"({inner})" if len(rule[group]) > 1 else inner
    value = rule.get("value")
    return (
        f"{rule.get('attribute')} {rule.get('op', '').replace('_', ' ')} {value!r}"
        if "value" in rule
        else (f"{rule.get('attribute')} {rule.get('op', '').replace('_', ' ')}")
    )
