"""Definition validation: every refusal, with its message naming the step."""

import pytest
from django.core.exceptions import ValidationError

from connectors import services as connector_services
from journeys.definition import describe_step, ordered_keys, validate_definition, validate_steps
from tests.factories import AudienceFactory, PartnerConfigFactory
from tests.journeys.factories import activate, entry_audience, entry_event, exit_step, wait, webhook_config

pytestmark = pytest.mark.django_db


def problems(definition, *, graph=True) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        (validate_definition if graph else validate_steps)(definition)
    return exc.value.message_dict["definition"]


@pytest.fixture
def config():
    return webhook_config()


@pytest.fixture
def audience():
    return AudienceFactory()


def test_a_valid_definition_passes(config, audience):
    definition = {
        "steps": [
            entry_audience(audience.pk, "pause"),
            wait("pause", "vip?", hours=2, days=1),
            {
                "key": "vip?",
                "type": "condition",
                "rule": {"all": [{"attribute": "tier", "op": "equals", "value": "gold"}]},
                "next_true": "send",
                "next_false": "done",
                "label": "Gold?",
            },
            activate(config.pk, profile_variables=["first_name"], partner_audience_id="seg-9", action="update"),
            exit_step(),
        ]
    }
    assert validate_definition(definition) is definition
    assert ordered_keys(definition) == ["start", "pause", "vip?", "send", "done"]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("nope", 'A definition is an object: {"steps": [...]}.'),
        ({"steps": {}}, "steps: expected a list of steps."),
        ({"steps": [], "name": "x"}, "unknown key(s) name: a definition holds only steps"),
        ({"steps": ["x"]}, "steps[0]: expected an object"),
        ({"steps": [{"type": "exit"}]}, "steps[0]: key is required"),
        ({"steps": [{"key": "a", "type": "exit"}, {"key": "a", "type": "exit"}]}, 'the key "a" is used by more'),
        ({"steps": [{"key": "a", "type": "jump"}]}, 'step "a": type must be one of entry, wait, condition'),
        ({"steps": [{"key": "a", "type": "exit", "next": "b"}]}, 'step "a": unknown key(s) next for a exit step'),
        ({"steps": [{"key": "a", "type": "exit", "label": 5}]}, 'step "a": label is text of at most 200'),
        ({"steps": [{"key": "a", "type": "wait", "duration": {"minutes": 1}}]}, 'step "a": next is required'),
        ({"steps": [{"key": "a", "type": "wait", "next": "b"}]}, 'step "a": duration is required'),
        ({"steps": [wait("a", "b", weeks=1)]}, 'step "a": unknown duration unit(s) weeks'),
        ({"steps": [wait("a", "b", minutes=-1)]}, 'step "a": duration amounts are whole numbers'),
        ({"steps": [wait("a", "b", minutes=0)]}, 'step "a": a wait lasts at least one second'),
        ({"steps": [wait("a", "b", days=400)]}, 'step "a": a wait lasts at most 366 days'),
        ({"steps": [{"key": "s", "type": "entry", "next": "b"}]}, 'step "s": an entry has either audience_id'),
        (
            {"steps": [{"key": "s", "type": "entry", "event": "x", "audience_id": 1, "next": "b"}]},
            'step "s": an entry has either audience_id',
        ),
        ({"steps": [{"key": "s", "type": "entry", "event": "no spaces", "next": "b"}]}, 'step "s": event is an event'),
        ({"steps": [{"key": "s", "type": "entry", "audience_id": "1", "next": "b"}]}, 'step "s": audience_id is the'),
        ({"steps": [{"key": "s", "type": "entry", "audience_id": 999999, "next": "b"}]}, "audience 999999 does not"),
        ({"steps": [{"key": "c", "type": "condition", "next_true": "a", "next_false": "b"}]}, 'step "c": rule is'),
        (
            {
                "steps": [
                    {
                        "key": "c",
                        "type": "condition",
                        "rule": {"all": [{"attribute": "x", "op": "nope"}]},
                        "next_true": "a",
                        "next_false": "b",
                    }
                ]
            },  # fmt: skip
            'step "c": all[0].op: one of',
        ),
        (
            {
                "steps": [
                    {
                        "key": "c",
                        "type": "condition",
                        "rule": {"all": [{"attribute": "x", "op": "exists"}]},
                        "next_true": "a",
                    }
                ]
            },  # fmt: skip
            'step "c": next_false is required',
        ),
        ({"steps": [{"key": "a", "type": "activate", "next": "b"}]}, 'step "a": partner_config_id is required'),
        ({"steps": [activate(999999, key="a")]}, 'step "a": partner configuration 999999 does not exist'),
        ({"steps": [{"key": "w", "type": "wait", "duration": {"seconds": 5}, "next": 3}]}, 'step "w": next is the key'),
    ],
)
def test_step_refusals(definition, message):
    found = problems(definition, graph=False)
    assert any(message in p for p in found), found


def test_activation_step_refusals(config):
    assert 'step "send": action is one of add, update, remove' in problems(
        {"steps": [activate(config.pk, action="delete")]}, graph=False
    )
    assert any(
        "partner_audience_id is text" in p
        for p in problems({"steps": [activate(config.pk, partner_audience_id=5)]}, graph=False)
    )
    assert any(
        "profile_variables holds attribute names" in p
        for p in problems({"steps": [activate(config.pk, profile_variables=["a b"])]}, graph=False)
    )
    assert any(
        "names an attribute twice" in p
        for p in problems({"steps": [activate(config.pk, profile_variables=["a", "a"])]}, graph=False)
    )


def test_partner_rules_for_activation_steps():
    meta = PartnerConfigFactory(connector__partner_key="meta_custom_audiences", connector__name="Meta")
    cm360 = PartnerConfigFactory(connector__partner_key="google_cm360", connector__name="CM360")
    found = problems({"steps": [activate(meta.pk, key="a", profile_variables=["x"])]}, graph=False)
    assert 'step "a": Meta Custom Audiences does not take profile variables' in found
    found = problems({"steps": [activate(meta.pk, key="m", partner_audience_id="not digits")]}, graph=False)
    assert 'step "m": partner_audience_id: Enter the custom audience ID (digits only).' in found
    validate_steps({"steps": [activate(meta.pk, key="m", partner_audience_id="23850001")]})
    found = problems({"steps": [activate(cm360.pk, key="b", action="remove")]}, graph=False)
    assert any(p.startswith('step "b": Google Campaign Manager 360') and "does not sync remove" in p for p in found)


def test_partner_not_usable_in_journeys(config):
    from connectors.partners import registry

    partner = registry.REGISTRY["webhook"]
    original = partner.usable_in
    object.__setattr__(partner, "usable_in", ("audiences",))
    try:
        found = problems({"steps": [activate(config.pk, key="a")]}, graph=False)
    finally:
        object.__setattr__(partner, "usable_in", original)
    assert any(p.startswith('step "a":') and "cannot be used in journeys" in p for p in found)


def test_deactivated_connectors_are_allowed(config, audience):
    connector_services.connector_deactivate(connector=config.connector)
    validate_definition({"steps": [entry_audience(audience.pk), activate(config.pk), exit_step()]})


def test_graph_refusals(config, audience):
    assert problems({"steps": []}) == ["A journey needs steps: an entry, what follows, and an exit."]
    assert "the journey has no entry step (type entry: an audience or an event)" in problems(
        {"steps": [activate(config.pk, key="send"), exit_step()]}
    )
    two = {
        "steps": [entry_audience(audience.pk), {**entry_event("x"), "key": "again"}, activate(config.pk), exit_step()]
    }
    assert "the journey has more than one entry step: start, again; keep exactly one" in problems(two)
    assert 'step "start": the next step "nowhere" does not exist' in problems(
        {"steps": [entry_audience(audience.pk, "nowhere"), exit_step()]}
    )
    assert "the journey has no exit step (type exit)" in problems(
        {"steps": [entry_audience(audience.pk), activate(config.pk, next_key="start")]}
    )
    assert 'step "send": cannot lead back to the entry step "start"' in problems(
        {"steps": [entry_audience(audience.pk), activate(config.pk, next_key="start"), exit_step()]}
    )


def test_cycles_unreachable_steps_and_dead_ends(config, audience):
    cycle = {
        "steps": [
            entry_audience(audience.pk, "a"),
            wait("a", "b"),
            wait("b", "a"),
            exit_step(),
        ]
    }
    assert "the steps form a cycle: a → b → a" in problems(cycle)
    orphan = {"steps": [entry_audience(audience.pk), activate(config.pk), exit_step(), exit_step("lonely")]}
    assert 'step "lonely" cannot be reached from the entry "start"' in problems(orphan)


def test_describe_step(config, audience):
    assert describe_step(wait(days=1, hours=2)) == "Wait 1 day, 2 hours"
    assert describe_step(entry_event("signed_up")) == 'Profiles posting the event "signed_up"'
    assert describe_step(entry_audience(audience.pk), audiences={audience.pk: "VIP"}) == (
        'Profiles entering the audience "VIP"'
    )
    rule = {"any": [{"attribute": "a", "op": "equals", "value": 1}, {"attribute": "b", "op": "exists", "value": True}]}
    text = describe_step({"key": "c", "type": "condition", "rule": rule, "next_true": "x", "next_false": "y"})
    assert text == "If (a equals 1 or b exists True): go to x, else y"
    assert describe_step(activate(config.pk, action="remove"), configs={config.pk: "Hook / Default"}) == (
        "Remove at Hook / Default"
    )


def test_exit_reachability_is_checked_per_step():
    from journeys.definition import _can_reach_exit

    steps = {
        "start": {"key": "start", "type": "entry", "event": "x", "next": "a"},
        "a": {"key": "a", "type": "wait", "duration": {"minutes": 1}},  # no next: a dead end
        "done": {"key": "done", "type": "exit"},
    }
    assert _can_reach_exit(steps) == {"done"}
