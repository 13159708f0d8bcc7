import json

import pytest

from interest_service.answer import (
    AnswerError,
    max_tokens_for,
    parse_proposal,
    proposal_schema,
    validate_picks,
)
from interest_service.config import PromptConfig


def test_schema_enum_is_the_allowed_labels_and_sizes_are_bounded():
    schema = proposal_schema(["A", "B", "C"], PromptConfig(n_interests=2))
    item = schema["properties"]["interests"]
    assert item["items"]["properties"]["cluster"]["enum"] == ["A", "B", "C"]
    assert item["minItems"] == item["maxItems"] == 2
    assert list(schema["properties"]) == ["summary", "interests"]  # summary first: chain of thought
    assert max_tokens_for(schema) > 2 * 32
    inline = proposal_schema(["A"], PromptConfig(), n_inline_items=4)
    assert next(iter(inline["properties"])) == "items" and inline["properties"]["items"]["minItems"] == 4
    with pytest.raises(ValueError):
        proposal_schema([], PromptConfig())


def test_validation_drops_history_unknown_and_duplicates():
    answer = parse_proposal(
        json.dumps(
            {
                "summary": "likes drama",
                "interests": [
                    {"cluster": "Horror", "reason": "in history"},
                    {"cluster": "Nope", "reason": "unknown"},
                    {"cluster": "Sci-Fi", "reason": "new"},
                    {"cluster": "Sci-Fi", "reason": "again"},
                    {"cluster": " Western ", "reason": "new\ttoo"},
                ],
            }
        )
    )
    picks, dropped = validate_picks(answer, {"Horror": 0, "Sci-Fi": 1, "Western": 2}, {0}, limit=3)
    assert [(p.cluster_id, p.reason) for p in picks] == [(1, "new"), (2, "new too")]
    assert dropped == {"in_history": 1, "unknown": 1, "duplicate": 1}


@pytest.mark.parametrize(
    "text", ["", "not json", '{"summary": "x"}', '{"summary": 1, "interests": []}', "[1]"]
)
def test_malformed_answers_are_errors(text):
    with pytest.raises(AnswerError):
        parse_proposal(text)
