import json

import numpy as np

from facemark.results import SCHEMA, Face, document, validate


def make_doc(n_faces=1):
    rng = np.random.default_rng(0)
    faces = [Face(np.array([1.0, 2, 30, 40]), 0.9, rng.uniform(0, 50, (98, 2)), rng.uniform(0, 50, (68, 2))) for _ in range(n_faces)]
    return json.loads(json.dumps(document("a.jpg", 64, 48, "hourglass", faces)))


def test_valid_documents_pass():
    for n in (0, 1, 3):
        doc = make_doc(n)
        assert doc["schema"] == SCHEMA
        assert validate(doc) == []


def test_invalid_documents_are_named():
    doc = make_doc()
    bad = {**doc, "schema": "other"}
    assert any("schema" in e for e in validate(bad))
    bad = {k: v for k, v in doc.items() if k != "width"}
    assert validate(bad) == ["missing 'width'"]
    bad = json.loads(json.dumps(doc))
    bad["faces"][0]["landmarks"] = bad["faces"][0]["landmarks"][:97]
    assert any("landmarks must be a list of 98" in e for e in validate(bad))
    bad = json.loads(json.dumps(doc))
    bad["faces"][0]["box"] = [10, 10, 5, 5]
    assert any("x2 < x1" in e for e in validate(bad))
    bad = json.loads(json.dumps(doc))
    bad["faces"][0]["score"] = True
    assert any("score" in e for e in validate(bad))
    bad = json.loads(json.dumps(doc))
    bad["faces"][0]["extra"] = 1
    assert validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["faces"][0]["landmarks68"][3] = [1.0, float("nan")]
    assert validate(bad)
    assert validate([]) == ["document must be an object"]
