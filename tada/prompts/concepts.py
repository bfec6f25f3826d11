"""Typed view of ``data/concepts.yaml``: steering axes, localization concepts, combinations.

``load_concepts(path)`` reads and validates the file and returns a :class:`ConceptTable`.
Every validation error is a :class:`ConceptFileError` whose message names the file and the
offending key, e.g. ``data/concepts.yaml: steering[2].negative_template: missing field``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

PLACEHOLDER = "{base}"
DEFAULT_CONCEPTS_PATH = Path(__file__).resolve().parents[2] / "data" / "concepts.yaml"

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS = ("version", "steering", "localization", "combinations")
_SUPPORTED_VERSIONS = (1,)


class ConceptFileError(ValueError):
    """A problem in a concepts file; ``path`` and ``key`` say where."""

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.path}: {key}: {problem}")


class UnknownConceptError(KeyError):
    """Lookup of an id that the table does not define."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def fill_template(template: str, base: str) -> str:
    """Insert ``base`` at the ``{base}`` placeholder of a prompt template."""
    return template.replace(PLACEHOLDER, base)


@dataclass(frozen=True)
class SteeringConcept:
    """One steering axis; "+" is the direction that alpha > 0 adds.

    ``localization`` / ``localization_negative`` name the localization concept (if any) that
    corresponds to the "+" / "−" side of the axis.
    """

    id: str
    name: str
    positive_template: str
    negative_template: str
    positive_label: str
    negative_label: str
    alignment_text: str
    concept_token: str
    localization: str | None = None
    localization_negative: str | None = None

    def positive(self, base: str) -> str:
        return fill_template(self.positive_template, base)

    def negative(self, base: str) -> str:
        return fill_template(self.negative_template, base)

    def triple(self, base: str) -> tuple[str, str, str]:
        """(neutral, positive, negative) prompts of one evaluation prompt: the prompt itself and
        the two directional rewrites. Every method that needs prompts (PCI, the text baselines)
        takes them from here."""
        return base, self.positive(base), self.negative(base)


@dataclass(frozen=True)
class LocalizationConcept:
    """A concept for activation patching, with its caption filter and rewrite lexicon.

    A caption qualifies when it contains one of ``keywords`` and none of ``exclude_keywords``
    (whole words, case-insensitive). ``replacements`` maps lowercase words to their rewrite.
    ``counterpart`` is the localization concept whose keywords are excluded, or None when the
    rewrite target is not itself a localization concept.
    """

    id: str
    name: str
    keywords: tuple[str, ...]
    exclude_keywords: tuple[str, ...]
    counterpart: str | None
    replacements: dict[str, str] = field(hash=False)
    alignment_text: str


@dataclass(frozen=True)
class CombinationTerm:
    """One signed steering axis of a combination (sign is +1 or -1)."""

    concept: str
    sign: int


@dataclass(frozen=True)
class Combination:
    """A multi-concept steering target: the signed sum of its terms' steering vectors."""

    id: str
    label: str
    terms: tuple[CombinationTerm, ...]

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(term.concept for term in self.terms)


Kind = Literal["steering", "localization", "combination"]


@dataclass(frozen=True)
class ConceptTable:
    """All concepts of one file, in file order."""

    steering_concepts: tuple[SteeringConcept, ...]
    localization_concepts: tuple[LocalizationConcept, ...]
    combinations: tuple[Combination, ...]
    source: Path | None = None

    def steering(self, concept_id: str) -> SteeringConcept:
        return _lookup(self.steering_concepts, concept_id, "steering concept")

    def localization(self, concept_id: str) -> LocalizationConcept:
        return _lookup(self.localization_concepts, concept_id, "localization concept")

    def combination(self, combination_id: str) -> Combination:
        return _lookup(self.combinations, combination_id, "combination")

    def ids(self, kind: Kind = "steering") -> list[str]:
        """Ids of one section, in file order."""
        items = {
            "steering": self.steering_concepts,
            "localization": self.localization_concepts,
            "combination": self.combinations,
        }
        if kind not in items:
            raise ValueError(f"unknown kind '{kind}': choose one of {sorted(items)}")
        return [item.id for item in items[kind]]

    def steering_ids(self) -> list[str]:
        return self.ids("steering")

    def localization_ids(self) -> list[str]:
        return self.ids("localization")

    def combination_ids(self) -> list[str]:
        return self.ids("combination")

    def localization_for(self, steering_id: str, sign: int = 1) -> LocalizationConcept | None:
        """The localization concept of a steering axis' "+" (sign > 0) or "−" side, if any."""
        concept = self.steering(steering_id)
        target = concept.localization if sign > 0 else concept.localization_negative
        return None if target is None else self.localization(target)


def _lookup(items: tuple[Any, ...], item_id: str, what: str) -> Any:
    for item in items:
        if item.id == item_id:
            return item
    known = ", ".join(item.id for item in items)
    raise UnknownConceptError(f"unknown {what} '{item_id}'; known: {known}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


class _Checker:
    """Validation helpers that raise ConceptFileError naming the file and key."""

    def __init__(self, path: str | Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConceptFileError:
        return ConceptFileError(self.path, key, problem)

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def list_of_mappings(self, value: Any, key: str) -> list[dict]:
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return [self.mapping(item, f"{key}[{i}]") for i, item in enumerate(value)]

    def fields(
        self, entry: dict, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> None:
        for name in entry:
            if name not in required and name not in optional:
                allowed = ", ".join(required + optional)
                raise self.fail(f"{key}.{name}", f"unknown key (allowed: {allowed})")
        for name in required:
            if name not in entry:
                raise self.fail(f"{key}.{name}", "missing field")

    def text(self, value: Any, key: str, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value.strip()

    def identifier(self, value: Any, key: str) -> str:
        text = self.text(value, key)
        if not _ID_RE.match(text):
            raise self.fail(key, f"id '{text}' must be snake_case (a-z, 0-9, _)")
        return text

    def template(self, value: Any, key: str) -> str:
        text = self.text(value, key)
        if text.count(PLACEHOLDER) != 1:
            raise self.fail(key, f"template '{text}' must contain {PLACEHOLDER} exactly once")
        rest = text.replace(PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise self.fail(key, f"template '{text}' has braces other than {PLACEHOLDER}")
        return text

    def words(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list of words")
        out: list[str] = []
        for i, item in enumerate(value):
            word = self.text(item, f"{key}[{i}]").lower()
            if word in out:
                raise self.fail(f"{key}[{i}]", f"duplicate word '{word}'")
            out.append(word)
        return tuple(out)

    def unique_ids(self, ids: list[str], section: str) -> None:
        seen: dict[str, int] = {}
        for i, item_id in enumerate(ids):
            if item_id in seen:
                first = f"{section}[{seen[item_id]}]"
                raise self.fail(f"{section}[{i}].id", f"duplicate id '{item_id}' (also {first})")
            seen[item_id] = i


_STEERING_REQUIRED = (
    "id",
    "name",
    "positive_template",
    "negative_template",
    "positive_label",
    "negative_label",
    "alignment_text",
    "concept_token",
)
_STEERING_OPTIONAL = ("localization", "localization_negative")
_LOCALIZATION_REQUIRED = (
    "id",
    "name",
    "keywords",
    "exclude_keywords",
    "counterpart",
    "replacements",
    "alignment_text",
)


def _parse_steering(check: _Checker, entry: dict, key: str) -> SteeringConcept:
    check.fields(entry, key, _STEERING_REQUIRED, _STEERING_OPTIONAL)
    positive = check.template(entry["positive_template"], f"{key}.positive_template")
    negative = check.template(entry["negative_template"], f"{key}.negative_template")
    if positive == negative:
        raise check.fail(f"{key}.negative_template", "identical to positive_template")
    token = check.text(entry["concept_token"], f"{key}.concept_token")
    if len(token.split()) != 1:
        raise check.fail(f"{key}.concept_token", f"'{token}' must be a single word")
    return SteeringConcept(
        id=check.identifier(entry["id"], f"{key}.id"),
        name=check.text(entry["name"], f"{key}.name"),
        positive_template=positive,
        negative_template=negative,
        positive_label=check.text(entry["positive_label"], f"{key}.positive_label"),
        negative_label=check.text(entry["negative_label"], f"{key}.negative_label"),
        alignment_text=check.text(entry["alignment_text"], f"{key}.alignment_text"),
        concept_token=token,
        localization=check.text(entry.get("localization"), f"{key}.localization", nullable=True),
        localization_negative=check.text(
            entry.get("localization_negative"), f"{key}.localization_negative", nullable=True
        ),
    )


def _parse_replacements(check: _Checker, value: Any, key: str) -> dict[str, str]:
    mapping = check.mapping(value, key)
    if not mapping:
        raise check.fail(key, "expected at least one replacement")
    out: dict[str, str] = {}
    for source, target in mapping.items():
        source_text = check.text(source, f"{key}.{source}").lower()
        target_text = check.text(target, f"{key}.{source}")
        if source_text in out:
            raise check.fail(f"{key}.{source}", f"duplicate replacement for '{source_text}'")
        if source_text == target_text.lower():
            raise check.fail(f"{key}.{source}", "replacement is identical to the word")
        out[source_text] = target_text
    return out


def _parse_localization(check: _Checker, entry: dict, key: str) -> LocalizationConcept:
    check.fields(entry, key, _LOCALIZATION_REQUIRED)
    keywords = check.words(entry["keywords"], f"{key}.keywords")
    exclude = check.words(entry["exclude_keywords"], f"{key}.exclude_keywords")
    overlap = sorted(set(keywords) & set(exclude))
    if overlap:
        raise check.fail(f"{key}.exclude_keywords", f"also listed as keywords: {overlap}")
    return LocalizationConcept(
        id=check.identifier(entry["id"], f"{key}.id"),
        name=check.text(entry["name"], f"{key}.name"),
        keywords=keywords,
        exclude_keywords=exclude,
        counterpart=check.text(entry["counterpart"], f"{key}.counterpart", nullable=True),
        replacements=_parse_replacements(check, entry["replacements"], f"{key}.replacements"),
        alignment_text=check.text(entry["alignment_text"], f"{key}.alignment_text"),
    )


def _parse_sign(check: _Checker, value: Any, key: str) -> int:
    if isinstance(value, str) and value.strip() in ("+", "-"):
        return 1 if value.strip() == "+" else -1
    if isinstance(value, int) and not isinstance(value, bool) and value in (1, -1):
        return value
    raise check.fail(key, f"sign must be +1 or -1 (or '+' / '-'), got {value!r}")


def _parse_combination(check: _Checker, entry: dict, key: str) -> Combination:
    check.fields(entry, key, ("id", "terms"), ("label",))
    combo_id = check.identifier(entry["id"], f"{key}.id")
    raw_terms = check.list_of_mappings(entry["terms"], f"{key}.terms")
    if len(raw_terms) < 2:
        raise check.fail(f"{key}.terms", "a combination needs at least two terms")
    terms: list[CombinationTerm] = []
    for i, raw in enumerate(raw_terms):
        term_key = f"{key}.terms[{i}]"
        check.fields(raw, term_key, ("concept", "sign"))
        concept = check.text(raw["concept"], f"{term_key}.concept")
        if concept in (t.concept for t in terms):
            raise check.fail(f"{term_key}.concept", f"concept '{concept}' appears twice")
        terms.append(CombinationTerm(concept, _parse_sign(check, raw["sign"], f"{term_key}.sign")))
    label = check.text(entry.get("label", combo_id), f"{key}.label")
    return Combination(id=combo_id, label=label, terms=tuple(terms))


def _check_references(check: _Checker, table: ConceptTable) -> None:
    loc_ids = set(table.localization_ids())
    steer_ids = set(table.steering_ids())
    for i, concept in enumerate(table.steering_concepts):
        for attr in ("localization", "localization_negative"):
            target = getattr(concept, attr)
            if target is not None and target not in loc_ids:
                raise check.fail(
                    f"steering[{i}].{attr}", f"unknown localization concept '{target}'"
                )
    for i, concept in enumerate(table.localization_concepts):
        if concept.counterpart is None:
            continue
        key = f"localization[{i}].counterpart"
        if concept.counterpart == concept.id:
            raise check.fail(key, "a concept cannot be its own counterpart")
        if concept.counterpart not in loc_ids:
            raise check.fail(key, f"unknown localization concept '{concept.counterpart}'")
        missing = [
            w for w in table.localization(concept.counterpart).keywords
            if w not in concept.exclude_keywords
        ]
        if missing:
            raise check.fail(
                f"localization[{i}].exclude_keywords",
                f"must include the keywords of counterpart '{concept.counterpart}': "
                f"missing {missing}",
            )
    seen_terms: dict[frozenset, str] = {}
    for i, combo in enumerate(table.combinations):
        for j, term in enumerate(combo.terms):
            if term.concept not in steer_ids:
                raise check.fail(
                    f"combinations[{i}].terms[{j}].concept",
                    f"unknown steering concept '{term.concept}'",
                )
        signature = frozenset((t.concept, t.sign) for t in combo.terms)
        if signature in seen_terms:
            raise check.fail(
                f"combinations[{i}].terms", f"same terms as combination '{seen_terms[signature]}'"
            )
        seen_terms[signature] = combo.id


def parse_concepts(data: Any, path: str | Path = "<concepts>") -> ConceptTable:
    """Validate an already-parsed concepts document; ``path`` is only used in messages."""
    check = _Checker(path)
    doc = check.mapping(data, "<top level>")
    for name in doc:
        if name not in _TOP_KEYS:
            raise check.fail(str(name), f"unknown key (allowed: {', '.join(_TOP_KEYS)})")
    for name in _TOP_KEYS:
        if name not in doc:
            raise check.fail(name, "missing field")
    if doc["version"] not in _SUPPORTED_VERSIONS:
        raise check.fail("version", f"unsupported version {doc['version']!r}")

    steering = tuple(
        _parse_steering(check, e, f"steering[{i}]")
        for i, e in enumerate(check.list_of_mappings(doc["steering"], "steering"))
    )
    localization = tuple(
        _parse_localization(check, e, f"localization[{i}]")
        for i, e in enumerate(check.list_of_mappings(doc["localization"], "localization"))
    )
    combinations = tuple(
        _parse_combination(check, e, f"combinations[{i}]")
        for i, e in enumerate(check.list_of_mappings(doc["combinations"], "combinations"))
    )
    check.unique_ids([c.id for c in steering], "steering")
    check.unique_ids([c.id for c in localization], "localization")
    check.unique_ids([c.id for c in combinations], "combinations")
    if not steering:
        raise check.fail("steering", "expected at least one steering concept")

    table = ConceptTable(steering, localization, combinations, Path(path))
    _check_references(check, table)
    return table


def load_concepts(path: str | Path = DEFAULT_CONCEPTS_PATH) -> ConceptTable:
    """Read and validate a concepts YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"concepts file not found: {path}")
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConceptFileError(path, "<yaml>", str(exc).replace("\n", " ")) from exc
    return parse_concepts(data, path)


def as_mapping(
    concept: SteeringConcept | LocalizationConcept | Combination,
) -> Mapping[str, Any]:
    """A plain-dict view of a concept (for JSON metadata)."""
    return asdict(concept)
