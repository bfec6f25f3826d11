"""Tests for tada.prompts: concepts file, prompt lists, contrastive prompts, caption pairs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tada.prompts import (
    BASE_PROMPTS_PATH,
    DEFAULT_CONCEPTS_PATH,
    DROP_REASONS,
    EVAL_PROMPTS_PATH,
    PAIR_COLUMNS,
    ConceptFileError,
    PromptFileError,
    UnknownConceptError,
    build_pairs,
    common_text_length,
    contrastive_prompts,
    find_keywords,
    load_concepts,
    load_prompt_list,
    parse_concepts,
    read_captions,
    read_pairs,
    rewrite_caption,
    write_pairs,
)

FIXTURE = Path(__file__).parent / "data" / "musiccaps_sample.csv"

STEERING_IDS = [
    "piano",
    "violin",
    "guitar_type",
    "mood",
    "tempo",
    "vocal_gender",
    "vocal_style",
    "classical_genre",
    "jazz_genre",
]
LOCALIZATION_IDS = [
    "female_vocal",
    "male_vocal",
    "slow_tempo",
    "fast_tempo",
    "happy_mood",
    "sad_mood",
    "drums",
    "flute",
    "maracas",
    "trumpet",
    "violin",
    "jazz",
    "reggae",
]


@pytest.fixture(scope="module")
def table():
    return load_concepts(DEFAULT_CONCEPTS_PATH)


@pytest.fixture(scope="module")
def captions():
    return read_captions(FIXTURE)


@pytest.fixture()
def raw_doc():
    return yaml.safe_load(DEFAULT_CONCEPTS_PATH.read_text(encoding="utf-8"))


def _write_yaml(tmp_path: Path, doc) -> Path:
    path = tmp_path / "concepts.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- concepts file


def test_concept_ids_and_counts(table):
    assert table.ids() == STEERING_IDS
    assert table.localization_ids() == LOCALIZATION_IDS
    assert len(table.combination_ids()) == 9


def test_steering_fields_match_reference(table):
    tempo = table.steering("tempo")
    assert tempo.positive("a melody") == "fast song, a melody"
    assert tempo.negative("a melody") == "slow song, a melody"
    assert tempo.alignment_text == "a fast track"
    assert tempo.concept_token == "song"
    piano = table.steering("piano")
    assert (piano.positive("a song"), piano.negative("a song")) == ("a song, with piano", "a song")
    assert piano.concept_token == "instrument"
    assert table.steering("vocal_gender").concept_token == "vocal"
    assert table.steering("vocal_gender").alignment_text == (
        "This is a music of a female vocal singing"
    )
    assert table.steering("guitar_type").negative("a tune") == "a tune, with electric guitar"
    assert table.steering("jazz_genre").negative("a tune") == "rock song, a tune"


def test_steering_to_localization_mapping(table):
    assert table.localization_for("vocal_gender", +1).id == "female_vocal"
    assert table.localization_for("vocal_gender", -1).id == "male_vocal"
    assert table.localization_for("tempo", -1).id == "slow_tempo"
    assert table.localization_for("mood", +1).id == "happy_mood"
    assert table.localization_for("jazz_genre").id == "jazz"
    assert table.localization_for("piano") is None


def test_localization_fields(table):
    female = table.localization("female_vocal")
    assert female.keywords == ("female", "woman", "girlish")
    assert female.exclude_keywords == ("male", "man")
    assert female.counterpart == "male_vocal"
    assert female.replacements == {"female": "male", "woman": "man", "girlish": "boyish"}
    drums = table.localization("drums")
    assert drums.counterpart is None
    assert "saxophone" in drums.exclude_keywords
    assert "percussion" not in drums.replacements


def test_combinations(table):
    combo = table.combination("jazz_slow_tempo")
    assert [(t.concept, t.sign) for t in combo.terms] == [("jazz_genre", 1), ("tempo", -1)]
    sizes = sorted(len(c.terms) for c in table.combinations)
    assert sizes == [2, 2, 2, 2, 2, 3, 3, 3, 3]
    for c in table.combinations:
        assert set(c.concepts) <= set(STEERING_IDS)


def test_unknown_lookup_names_the_id(table):
    with pytest.raises(UnknownConceptError, match="unknown steering concept 'cowbell'"):
        table.steering("cowbell")
    with pytest.raises(ValueError, match="unknown kind"):
        table.ids("nope")


def test_loader_error_unknown_key(tmp_path, raw_doc):
    raw_doc["steering"][1]["colour"] = "blue"
    path = _write_yaml(tmp_path, raw_doc)
    with pytest.raises(ConceptFileError) as err:
        load_concepts(path)
    assert str(path) in str(err.value)
    assert "steering[1].colour: unknown key" in str(err.value)


def test_loader_error_missing_field(tmp_path, raw_doc):
    del raw_doc["localization"][3]["replacements"]
    path = _write_yaml(tmp_path, raw_doc)
    with pytest.raises(ConceptFileError, match=r"localization\[3\]\.replacements: missing field"):
        load_concepts(path)


def test_loader_error_duplicate_id(tmp_path, raw_doc):
    raw_doc["steering"][2]["id"] = "piano"
    path = _write_yaml(tmp_path, raw_doc)
    with pytest.raises(ConceptFileError, match=r"steering\[2\]\.id: duplicate id 'piano'"):
        load_concepts(path)


def test_loader_error_combination_unknown_concept(tmp_path, raw_doc):
    raw_doc["combinations"][0]["terms"][1]["concept"] = "cowbell"
    path = _write_yaml(tmp_path, raw_doc)
    with pytest.raises(ConceptFileError) as err:
        load_concepts(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert "combinations[0].terms[1].concept" in message and "'cowbell'" in message


def test_loader_error_bad_sign_and_template(raw_doc):
    doc = json.loads(json.dumps(raw_doc))
    doc["combinations"][2]["terms"][0]["sign"] = 2
    with pytest.raises(ConceptFileError, match=r"combinations\[2\]\.terms\[0\]\.sign"):
        parse_concepts(doc, "x.yaml")
    doc = json.loads(json.dumps(raw_doc))
    doc["steering"][0]["positive_template"] = "with piano"
    with pytest.raises(ConceptFileError, match=r"x\.yaml: steering\[0\]\.positive_template"):
        parse_concepts(doc, "x.yaml")


def test_loader_error_counterpart_and_references(raw_doc):
    doc = json.loads(json.dumps(raw_doc))
    doc["localization"][0]["exclude_keywords"] = ["male"]
    with pytest.raises(ConceptFileError, match=r"localization\[0\]\.exclude_keywords.*'man'"):
        parse_concepts(doc, "x.yaml")
    doc = json.loads(json.dumps(raw_doc))
    doc["steering"][4]["localization"] = "warp_speed"
    with pytest.raises(ConceptFileError, match=r"steering\[4\]\.localization: unknown"):
        parse_concepts(doc, "x.yaml")


def test_loader_error_duplicate_yaml_key(tmp_path):
    text = DEFAULT_CONCEPTS_PATH.read_text(encoding="utf-8").replace(
        "replacements: {female: male,", "replacements: {female: male, female: boy,"
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConceptFileError, match="duplicate key 'female'"):
        load_concepts(path)


# ---------------------------------------------------------------- prompt lists


def test_prompt_files_sizes_unique_disjoint():
    bases = load_prompt_list(BASE_PROMPTS_PATH)
    evals = load_prompt_list(EVAL_PROMPTS_PATH)
    assert len(bases) == 50 and len(set(bases)) == 50
    assert len(evals) == 100 and len(set(evals)) == 100
    assert not {b.casefold() for b in bases} & {e.casefold() for e in evals}
    assert bases[:6] == ["a song", "a melody", "a pop song", "ambient music", "a love song",
                         "calm music"]
    assert "Melancholic jazz ballad with smooth saxophone, walking bassline" in evals
    assert min(len(e.split()) for e in evals) > max(len(b.split()) for b in bases)


def test_base_prompts_are_neutral():
    words = ["piano", "violin", "guitar", "acoustic", "electric", "happy", "sad", "fast", "slow",
             "female", "male", "vocal", "rap", "classical", "electronic", "jazz", "rock"]
    pattern = re.compile(r"\b(" + "|".join(words) + r")\b", re.IGNORECASE)
    assert [b for b in load_prompt_list(BASE_PROMPTS_PATH) if pattern.search(b)] == []


def test_load_prompt_list_comments_blanks_duplicates(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# header\n\n  a song  \nA melody\n\n# note\n", encoding="utf-8")
    assert load_prompt_list(path) == ["a song", "A melody"]
    path.write_text("a song\na melody\n\nA  Song\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match=rf"{re.escape(str(path))}:4: duplicate .*line 1"):
        load_prompt_list(path)


def test_contrastive_prompts(table):
    df = contrastive_prompts(table.steering("tempo"), ["a melody", "a pop song"])
    assert list(df.columns) == ["concept", "base", "positive", "negative"]
    assert df.iloc[0].tolist() == [
        "tempo",
        "a melody",
        "fast song, a melody",
        "slow song, a melody",
    ]
    assert df.iloc[1]["positive"] == "fast song, a pop song"
    gender = contrastive_prompts(table.steering("vocal_gender"), ["a song"]).iloc[0]
    assert (gender.positive, gender.negative) == (
        "a song, with female vocal",
        "a song, with male vocal",
    )
    with pytest.raises(TypeError):
        contrastive_prompts(table.steering("tempo"), "a melody")


# ---------------------------------------------------------------- rewriting


def test_rewrite_keeps_case_and_whole_words(table):
    male = table.localization("male_vocal").replacements
    assert rewrite_caption("The man sings his song himself.", male) == (
        "The woman sings her song herself.",
        3,
    )
    assert rewrite_caption("A manly MAN and a Man; the woman, the chairman.", male) == (
        "A manly WOMAN and a Woman; the woman, the chairman.",
        2,
    )
    violin = table.localization("violin").replacements
    assert rewrite_caption("Violin, VIOLIN and violin.", violin) == (
        "Trumpet, TRUMPET and trumpet.",
        3,
    )
    assert rewrite_caption("The Violinist tunes the violins; the violin's tone.", violin) == (
        "The Violinist tunes the violins; the violin's tone.",
        0,
    )
    assert rewrite_caption("a 'violin' on a string", violin) == ("a 'trumpet' on a brass", 2)


def test_rewrite_single_pass_and_longest_first(table):
    female = table.localization("female_vocal").replacements
    assert rewrite_caption("female and woman", female) == ("male and man", 2)
    slow = table.localization("slow_tempo").replacements
    assert rewrite_caption("Slow-paced and slow", slow) == ("Fast-paced and fast", 2)
    flute = table.localization("flute").replacements
    assert rewrite_caption("Flutist plays", flute) == ("Maracas player plays", 1)


def test_find_keywords(table):
    assert find_keywords("A FEMALE singer, not a male one", ("male", "man")) == ["male"]
    assert find_keywords("a fast-paced beat", table.localization("fast_tempo").keywords) == ["fast"]
    assert find_keywords("percussionist", ("percussion",)) == []
    assert find_keywords("", ("x",)) == []


# ---------------------------------------------------------------- pairs


def test_read_captions_keeps_ytid_strings(captions):
    assert len(captions) == 44
    assert captions.loc[0, "ytid"] == "-fx8-vB1q4a"
    assert captions.loc[6, "ytid"] == "00000000007"
    assert captions.loc[40, "caption"] == ""


def test_read_captions_missing_column(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text("ytid,start_s,text\nabc,0,a song\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: missing column 'caption'"):
        read_captions(path)
    with pytest.raises(ValueError, match="captions_df: missing column 'ytid'"):
        build_pairs(pd.DataFrame({"caption": ["a"]}), load_concepts().localization("drums"))


EXPECTED_REPORTS = {
    "female_vocal": (4, {"no_keyword": 39, "has_excluded_keyword": 1}),
    "male_vocal": (4, {"no_keyword": 39, "has_excluded_keyword": 1}),
    "slow_tempo": (2, {"no_keyword": 39, "has_excluded_keyword": 1, "keyword_not_rewritten": 2}),
    "fast_tempo": (2, {"no_keyword": 39, "has_excluded_keyword": 1, "identical_rewrite": 2}),
    "happy_mood": (
        1,
        {"no_keyword": 40, "has_excluded_keyword": 1, "identical_rewrite": 1,
         "keyword_not_rewritten": 1},
    ),
    "sad_mood": (2, {"no_keyword": 40, "has_excluded_keyword": 1, "identical_rewrite": 1}),
    "drums": (
        3,
        {"no_keyword": 37, "has_excluded_keyword": 1, "identical_rewrite": 2,
         "keyword_not_rewritten": 1},
    ),
    "flute": (2, {"no_keyword": 41, "has_excluded_keyword": 1}),
    "maracas": (1, {"no_keyword": 42, "has_excluded_keyword": 1}),
    "trumpet": (2, {"no_keyword": 41, "has_excluded_keyword": 1}),
    "violin": (2, {"no_keyword": 39, "has_excluded_keyword": 1, "identical_rewrite": 2}),
    "jazz": (2, {"no_keyword": 41, "identical_rewrite": 1}),
    "reggae": (1, {"no_keyword": 41, "has_excluded_keyword": 1, "identical_rewrite": 1}),
}


@pytest.mark.parametrize("concept_id", LOCALIZATION_IDS)
def test_drop_reasons_on_fixture(table, captions, concept_id):
    pairs, report = build_pairs(captions, table.localization(concept_id), max_pairs=256, seed=0)
    kept, nonzero = EXPECTED_REPORTS[concept_id]
    expected_dropped = {reason: nonzero.get(reason, 0) for reason in DROP_REASONS}
    assert report["total"] == 44
    assert report["kept"] == kept == len(pairs)
    assert report["dropped"] == expected_dropped
    assert report["total"] == report["kept"] + sum(report["dropped"].values())
    assert list(pairs.columns) == list(PAIR_COLUMNS)


def test_pairs_content_male_vocal(table, captions):
    pairs, _ = build_pairs(captions, table.localization("male_vocal"), max_pairs=None, seed=0)
    assert pairs["pair_id"].tolist() == [f"male_vocal_{k:04d}" for k in range(4)]
    assert pairs["ytid"].tolist() == ["fix00000006", "00000000007", "fix00000010", "fix00000011"]
    assert pairs["source"].tolist() == [
        "A female singer performs a rock song with distorted electric guitar and drums.",
        "The woman sings about her hometown and repeats the chorus herself.",
        "The Woman sings in a deep baritone.",
        "Rap vocals by a woman over a boom bap drum beat with heavy percussion.",
    ]
    assert pairs["target"].iloc[1] == (
        "The man sings about his hometown and repeats the chorus himself."
    )
    assert pairs["n_replacements"].tolist() == [1, 3, 1, 1]
    assert (pairs["concept"] == "male_vocal").all()


def test_pairs_content_drums_and_violin(table, captions):
    drums, _ = build_pairs(captions, table.localization("drums"), max_pairs=None, seed=0)
    assert drums["source"].tolist()[2] == (
        "A skilled saxophonist plays congas while the SAXOPHONE keep time."
    )
    violin, _ = build_pairs(captions, table.localization("violin"), max_pairs=None, seed=0)
    assert violin["source"].tolist() == [
        "A trumpet plays a sad melody over a brass quartet.",
        "A synth patch imitating a 'trumpet' plays the hook.",
    ]


def test_max_pairs_subsampling_is_deterministic(table, captions):
    concept = table.localization("male_vocal")
    a, report = build_pairs(captions, concept, max_pairs=2, seed=7)
    b, _ = build_pairs(captions, concept, max_pairs=2, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert report["kept"] == 2 and report["dropped"]["over_max"] == 2
    assert report["total"] == report["kept"] + sum(report["dropped"].values())
    assert a["pair_id"].tolist() == ["male_vocal_0000", "male_vocal_0001"]
    # independent of row order, nested in max_pairs, and the seed matters
    shuffled = captions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    c, _ = build_pairs(shuffled, concept, max_pairs=2, seed=7)
    assert set(c["ytid"]) == set(a["ytid"])
    three, _ = build_pairs(captions, concept, max_pairs=3, seed=7)
    assert set(a["ytid"]) <= set(three["ytid"])
    choices = {
        tuple(build_pairs(captions, concept, max_pairs=2, seed=s)[0]["ytid"]) for s in range(8)
    }
    assert len(choices) > 1
    zero, report0 = build_pairs(captions, concept, max_pairs=0, seed=7)
    assert len(zero) == 0 and report0["dropped"]["over_max"] == 4


def test_build_pairs_argument_errors(table, captions):
    with pytest.raises(ValueError, match="max_pairs"):
        build_pairs(captions, table.localization("drums"), max_pairs=-1)
    with pytest.raises(TypeError):
        build_pairs(captions, "drums")


def test_write_pairs_atomic_roundtrip(tmp_path, table, captions):
    pairs, report = build_pairs(captions, table.localization("drums"), max_pairs=256, seed=0)
    out_csv = tmp_path / "drums" / "pairs.csv"
    out_json = tmp_path / "drums" / "report.json"
    write_pairs(out_csv, out_json, pairs, report)
    assert sorted(os.listdir(out_csv.parent)) == ["pairs.csv", "report.json"]
    pd.testing.assert_frame_equal(read_pairs(out_csv), pairs)
    assert json.loads(out_json.read_text(encoding="utf-8")) == report
    with pytest.raises(ValueError, match="pairs_df: missing column"):
        write_pairs(out_csv, out_json, pairs.drop(columns=["source"]), report)
    assert pd.read_csv(out_csv).shape == (3, 6)


def test_common_text_length():
    count = lambda text: len(text.split())  # noqa: E731
    assert common_text_length(count, "fast song, a melody", "a melody") == 4
    assert common_text_length(lambda t: np.int64(len(t)), "ab", "abc") == 3
    with pytest.raises(ValueError):
        common_text_length(lambda t: -1, "a", "b")
