r"""The evaluation protocol: from per-α curves to the paper's table numbers (pure numpy/pandas).

Input ("per-alpha" frame): one row per (method, concept, α), α signed (its sign is the direction;
the α = 0 row, the unsteered clips, belongs to both directions), with columns

* ``method``, ``concept``, ``alpha``;
* ``preservation``: d(α), the mean preservation distance (LPAPS to the α = 0 clip; d(0) = 0);
* ``align_<scorer>``: s(α), the mean alignment score of each scorer (at least one);
* optional ``quality_<axis>``: q(α), the mean quality score of each axis (CE, CU, PC, PQ ...).

Notation: for a direction D ∈ {pos, neg} with sign σ_D = +1 / −1, the points of D are the α = 0 row
and the rows with sign(α) = σ_D, ordered by |α| (:func:`directions`).

* δ(α) = σ_D · (s(α) − s(0))                                                     (:func:`delta`)
* cutoff c(concept, D) = min over the methods M of ``cutoff_from`` (default: every method whose
  name starts with "pci") of  max_{α: sign(α) = σ_D} d_M(α). The α = 0 row is not counted as a
  point of a method here (every method has it); a method without a point in D is skipped, and
  the cutoff is NaN when none has one.                                            (:func:`cutoffs`)
* AUC (:func:`auc`), the points of D in |α| order (points with non-finite d or δ dropped):
  K = {points with d ≤ c}. With j the first point with d > c and j − 1 the point just before
  it (inside by construction), the point (c, δ_c),
  δ_c = δ_{j−1} + (c − d_{j−1}) / (d_j − d_{j−1}) · (δ_j − δ_{j−1}),
  is added to K between j − 1 and j (it is left out when d_{j−1} = c, or when j is the first
  point). Points after j that fall back inside (d ≤ c) stay in K, after the added point, as the
  literal "keep points with d ≤ c, order by |α|" says. AUC = trapezoid ∫ δ dd over K in that order
  (negative δ is not clipped); NaN when K has fewer than 2 points (the added point counts) or c
  is not finite.
* Smoothness (:func:`smoothness`): K' = {points with d ≤ c} (no added point), in |α| order;
  p = max(max_K' δ, 0); NaN when p ≤ 1e-9 or |K'| < 2; else std (ddof = 0) of the consecutive
  differences of δ/p. With 2 points there is one difference and the value is 0 (numpy's std of
  one value). Lower is smoother.
* Quality (:func:`quality`): points sorted by d; q interpolated linearly at the n = 15 values
  linspace(0, c, 15), keeping the values inside [min d, max d]; their mean (NaN if none).
* Per (method, concept) (:func:`per_concept`): ``auc_<scorer>_pos``, ``..._neg`` and
  ``auc_<scorer>`` = their mean; ``smooth_<scorer>`` likewise; ``quality_<axis>_pos/_neg``,
  ``quality_<axis>`` = their mean and ``quality`` = the mean of the axes. Every mean here is NaN
  when one of its terms is NaN (printed "-").
* Over concepts (:func:`average_over_concepts`): mean and standard error SE = std(ddof=1)/√n of
  the n finite per-concept values (NaN skipped; SE is NaN for n < 2).
* Relative gain (:func:`relative_gain`, table 2) of the localized variant L over the global G:
  100 · (m_L − m_G) / |m_G|, m = the concept average; with the SE of the per-concept difference
  L − G over the concepts where both are finite (also as a percentage of |m_G|).
* Multi-concept (:func:`combination_auc`, table 3): see that function.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

#: direction name -> sign of its α
DIRECTIONS: dict[str, int] = {"pos": 1, "neg": -1}
#: a smoothness peak at or below this is "no positive peak"
PEAK_EPS = 1e-9
#: quality is read at this many evenly spaced distances in [0, cutoff]
QUALITY_POINTS = 15
#: columns every per-alpha frame needs (plus at least one ``align_<scorer>``)
REQUIRED_COLUMNS = ("method", "concept", "alpha", "preservation")

Cutoffs = pd.DataFrame | Mapping[tuple[str, str], float]


# ----- column helpers -----------------------------------------------------------------------------

def scorer_names(frame: pd.DataFrame) -> list[str]:
    """Scorers of a per-alpha frame: ``align_<name>`` columns (without a ``__<concept>`` part)."""
    return [c[len("align_"):] for c in frame.columns if c.startswith("align_") and "__" not in c]


def quality_axes(frame: pd.DataFrame) -> list[str]:
    """Quality axes of a per-alpha frame: its ``quality_<axis>`` columns."""
    return [c[len("quality_"):] for c in frame.columns if c.startswith("quality_")]


def reported_columns(per_concept_frame: pd.DataFrame, prefix: str) -> list[str]:
    """The direction-averaged metric columns starting with `prefix` (``auc_``, ``smooth_``,
    ``quality_``): those that have ``_pos`` and ``_neg`` companions."""
    cols = set(per_concept_frame.columns)
    return [c for c in per_concept_frame.columns
            if c.startswith(prefix) and f"{c}_pos" in cols and f"{c}_neg" in cols]


def _mean_strict(values: Iterable[float]) -> float:
    """Mean that is NaN as soon as one value is NaN (or there is none)."""
    arr = np.asarray(list(values), dtype=float)
    return float(arr.mean()) if arr.size and np.all(np.isfinite(arr)) else float("nan")


# ----- one curve ------------------------------------------------------------------------------------

def directions(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split one (method, concept) curve into ``{"pos": α ≥ 0, "neg": α ≤ 0}``, each ordered by
    |α| (stable, so ties keep their row order); the α = 0 row is in both."""
    alpha = frame["alpha"].to_numpy(dtype=float)
    out = {}
    for name, sign in DIRECTIONS.items():
        side = frame[(alpha == 0) | (np.sign(alpha) == sign)]
        order = np.argsort(np.abs(side["alpha"].to_numpy(dtype=float)), kind="stable")
        out[name] = side.iloc[order]
    return out


def delta(s: Sequence[float] | np.ndarray, s0: float, sign: int) -> np.ndarray:
    """δ(α) = sign · (s(α) − s(0))."""
    return float(sign) * (np.asarray(s, dtype=float) - float(s0))


def _finite(*arrays: np.ndarray) -> np.ndarray:
    mask = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        mask &= np.isfinite(a)
    return mask


def auc(d: Sequence[float] | np.ndarray, delta: Sequence[float] | np.ndarray, cutoff: float) -> float:
    """Area under δ(d) up to the cutoff (module docstring). `d` and `delta` are one direction's
    points in order of |α| (α = 0 first); non-finite points are dropped."""
    d = np.asarray(d, dtype=float)
    y = np.asarray(delta, dtype=float)
    if d.shape != y.shape:
        raise ValueError(f"auc: d and delta differ in length ({d.size} vs {y.size})")
    if not np.isfinite(cutoff):
        return float("nan")
    keep = _finite(d, y)
    d, y = d[keep], y[keep]
    inside = d <= cutoff
    xs, ys = list(d[inside]), list(y[inside])
    outside = np.flatnonzero(~inside)
    if outside.size and outside[0] > 0:
        j = int(outside[0])           # first point past the cutoff; j - 1 is inside
        d_in, d_out, y_in, y_out = d[j - 1], d[j], y[j - 1], y[j]
        if d_in < cutoff:
            y_c = y_in + (cutoff - d_in) / (d_out - d_in) * (y_out - y_in)
            xs.insert(j, float(cutoff))  # the first j points are all inside: K[:j] = points[:j]
            ys.insert(j, float(y_c))
    if len(xs) < 2:
        return float("nan")
    return float(np.trapezoid(np.asarray(ys), np.asarray(xs)))


def smoothness(d: Sequence[float] | np.ndarray, delta: Sequence[float] | np.ndarray,
               cutoff: float) -> float:
    """Population std of the consecutive differences of the peak-normalised δ over the points
    with d ≤ cutoff (module docstring); `d`, `delta` in order of |α|. Lower is smoother."""
    d = np.asarray(d, dtype=float)
    y = np.asarray(delta, dtype=float)
    if d.shape != y.shape:
        raise ValueError(f"smoothness: d and delta differ in length ({d.size} vs {y.size})")
    if not np.isfinite(cutoff):
        return float("nan")
    keep = _finite(d, y) & (d <= cutoff)
    y = y[keep]
    if y.size < 2:
        return float("nan")
    peak = max(float(y.max()), 0.0)
    if peak <= PEAK_EPS:
        return float("nan")
    return float(np.std(np.diff(y / peak), ddof=0))


def quality(d: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray, cutoff: float,
            n: int = QUALITY_POINTS) -> float:
    """Mean of q interpolated linearly (points sorted by d) at `n` evenly spaced values of
    [0, cutoff], keeping those inside the measured range [min d, max d]; NaN if none."""
    d = np.asarray(d, dtype=float)
    q = np.asarray(q, dtype=float)
    if d.shape != q.shape:
        raise ValueError(f"quality: d and q differ in length ({d.size} vs {q.size})")
    if not np.isfinite(cutoff):
        return float("nan")
    keep = _finite(d, q)
    d, q = d[keep], q[keep]
    if d.size == 0:
        return float("nan")
    order = np.argsort(d, kind="stable")
    d, q = d[order], q[order]
    grid = np.linspace(0.0, float(cutoff), int(n))
    grid = grid[(grid >= d[0]) & (grid <= d[-1])]
    if grid.size == 0:
        return float("nan")
    return float(np.interp(grid, d, q).mean())


# ----- cutoffs --------------------------------------------------------------------------------------

def default_cutoff_methods(frame: pd.DataFrame) -> list[str]:
    """Every method of `frame` whose name starts with "pci", in order of appearance."""
    return [m for m in dict.fromkeys(frame["method"]) if str(m).startswith("pci")]


def cutoffs(frame: pd.DataFrame, cutoff_from: Sequence[str] | None = None) -> pd.DataFrame:
    """Cutoff per (concept, direction): the smallest over the `cutoff_from` methods of their
    largest preservation distance at α of that direction's sign (α = 0 not counted).

    Returns columns concept, direction, cutoff, set_by (the method giving the minimum, "" when
    the cutoff is NaN). A named method absent from `frame` is a ValueError.
    """
    present = list(dict.fromkeys(frame["method"]))
    names = list(cutoff_from) if cutoff_from is not None else default_cutoff_methods(frame)
    if not names:
        raise ValueError("no method to take the cutoff from: no method name starts with 'pci' "
                         f"(methods present: {', '.join(map(str, present))}); pass cutoff_from")
    missing = [m for m in names if m not in present]
    if missing:
        raise ValueError(f"cutoff method(s) {', '.join(missing)} not in the per-alpha data "
                         f"(methods present: {', '.join(map(str, present))})")
    rows = []
    alpha = frame["alpha"].to_numpy(dtype=float)
    for concept in dict.fromkeys(frame["concept"]):
        for direction, sign in DIRECTIONS.items():
            best, by = float("nan"), ""
            for m in names:
                sel = (frame["method"] == m).to_numpy() & (frame["concept"] == concept).to_numpy() \
                    & (np.sign(alpha) == sign)
                d = frame.loc[sel, "preservation"].to_numpy(dtype=float)
                d = d[np.isfinite(d)]
                if d.size and not (d.max() >= best):  # also true while best is NaN
                    best, by = float(d.max()), str(m)
            rows.append({"concept": concept, "direction": direction, "cutoff": best, "set_by": by})
    return pd.DataFrame(rows, columns=["concept", "direction", "cutoff", "set_by"])


def cutoff_lookup(cut: Cutoffs) -> dict[tuple[str, str], float]:
    """{(concept, direction): cutoff} from a :func:`cutoffs` frame (or such a mapping)."""
    if isinstance(cut, pd.DataFrame):
        return {(r.concept, r.direction): float(r.cutoff) for r in cut.itertuples(index=False)}
    return {tuple(k): float(v) for k, v in cut.items()}


# ----- per (method, concept) ------------------------------------------------------------------------

def _baseline_row(curve: pd.DataFrame, what: str) -> pd.Series:
    zero = curve[curve["alpha"].to_numpy(dtype=float) == 0]
    if zero.empty:
        raise ValueError(f"{what}: no alpha = 0 row (the unsteered baseline s(0) is needed)")
    if len(zero) > 1:
        raise ValueError(f"{what}: {len(zero)} rows with alpha = 0, expected one")
    return zero.iloc[0]


def curve_metrics(curve: pd.DataFrame, cutoff: Mapping[str, float], scorers: Sequence[str],
                  axes: Sequence[str] = (), what: str = "curve") -> dict[str, float]:
    """Every metric of one (method, concept) curve; `cutoff` maps "pos"/"neg" to its cutoff."""
    base = _baseline_row(curve, what)
    sides = directions(curve)
    out: dict[str, float] = {f"cutoff_{k}": float(cutoff.get(k, np.nan)) for k in DIRECTIONS}
    for s in scorers:
        for kind, fn in (("auc", auc), ("smooth", smoothness)):
            for name, sign in DIRECTIONS.items():
                side = sides[name]
                dl = delta(side[f"align_{s}"], base[f"align_{s}"], sign)
                out[f"{kind}_{s}_{name}"] = fn(side["preservation"], dl, out[f"cutoff_{name}"])
            out[f"{kind}_{s}"] = _mean_strict(out[f"{kind}_{s}_{n}"] for n in DIRECTIONS)
    for a in axes:
        for name in DIRECTIONS:
            side = sides[name]
            out[f"quality_{a}_{name}"] = quality(side["preservation"], side[f"quality_{a}"],
                                                 out[f"cutoff_{name}"])
        out[f"quality_{a}"] = _mean_strict(out[f"quality_{a}_{n}"] for n in DIRECTIONS)
    if axes:
        out["quality"] = _mean_strict(out[f"quality_{a}"] for a in axes)
    return out


def per_concept(frame: pd.DataFrame, cut: Cutoffs) -> pd.DataFrame:
    """One row per (method, concept), in order of appearance: cutoff_pos/neg, then
    ``auc_<s>[_pos|_neg]``, ``smooth_<s>[_pos|_neg]`` per scorer, ``quality_<axis>[_pos|_neg]``
    and ``quality`` when the frame has quality columns. A cutoff missing from `cut` is NaN."""
    lookup = cutoff_lookup(cut)
    scorers, axes = scorer_names(frame), quality_axes(frame)
    if not scorers:
        raise ValueError("the per-alpha data has no align_<scorer> column")
    rows = []
    for (method, concept), curve in frame.groupby(["method", "concept"], sort=False):
        c = {k: lookup.get((concept, k), float("nan")) for k in DIRECTIONS}
        rows.append({"method": method, "concept": concept,
                     **curve_metrics(curve, c, scorers, axes, what=f"method {method}, concept {concept}")})
    return pd.DataFrame(rows)


# ----- over concepts --------------------------------------------------------------------------------

def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """(mean, standard error = std(ddof=1)/√n, n) of the finite values; NaN where undefined."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    se = float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return mean, se, n


def metric_columns(table: pd.DataFrame, unit: str = "concept") -> list[str]:
    """The numeric metric columns of a per-concept (or per-combination) table: everything but
    the keys and the cutoffs."""
    skip = {"method", unit, "combination", "concept"}
    return [c for c in table.columns if c not in skip and not c.startswith("cutoff")
            and pd.api.types.is_numeric_dtype(table[c])]


def average_over_concepts(per_concept_frame: pd.DataFrame, unit: str = "concept") -> pd.DataFrame:
    """Per method: for every metric m, ``m`` (mean over the `unit` rows, NaN skipped), ``m_se``
    (standard error) and ``m_n`` (finite values used); ``n_<unit>s`` = rows of the method.
    `unit` = "combination" averages a :func:`combination_auc` table the same way."""
    metrics = metric_columns(per_concept_frame, unit)
    rows = []
    for method, g in per_concept_frame.groupby("method", sort=False):
        row: dict[str, object] = {"method": method, f"n_{unit}s": int(len(g))}
        for m in metrics:
            row[m], row[f"{m}_se"], row[f"{m}_n"] = mean_se(g[m].to_numpy(dtype=float))
        rows.append(row)
    return pd.DataFrame(rows)


def localized_pairs(methods: Iterable[str]) -> list[tuple[str, str]]:
    """(X, X_localized) for every X such that both names are present, in order of appearance."""
    names = list(dict.fromkeys(methods))
    return [(m, f"{m}_localized") for m in names if f"{m}_localized" in names]


def relative_gain(per_concept_frame: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None,
                  metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 2: per (global, localized) pair and metric (default: every ``auc_<scorer>``):
    mean_global, mean_localized (concept averages, NaN skipped), gain_pct =
    100·(mean_localized − mean_global)/|mean_global|, diff_mean / diff_se / n_pairs = mean, SE and
    count of the per-concept difference localized − global over concepts where both are finite,
    gain_se_pct = 100·diff_se/|mean_global|; n_global / n_localized = concepts in each mean (the
    two means may cover different concepts when one variant is NaN somewhere: the gain follows
    the concept-averaged tables, the SE the paired concepts). A pair with a method not in the
    table is a ValueError."""
    present = list(dict.fromkeys(per_concept_frame["method"]))
    pairs = localized_pairs(present) if pairs is None else [tuple(p) for p in pairs]
    for p in pairs:
        for m in p:
            if m not in present:
                raise ValueError(f"relative gain: method '{m}' not in the table "
                                 f"(methods present: {', '.join(map(str, present))})")
    metrics = list(metrics) if metrics is not None else reported_columns(per_concept_frame, "auc_")
    cols = ["family", "global", "localized", "metric", "mean_global", "mean_localized", "gain_pct",
            "diff_mean", "diff_se", "gain_se_pct", "n_pairs", "n_global", "n_localized"]
    rows = []
    for glob, loc in pairs:
        a = per_concept_frame[per_concept_frame["method"] == glob].set_index("concept")
        b = per_concept_frame[per_concept_frame["method"] == loc].set_index("concept")
        for m in metrics:
            mg, _, ng = mean_se(a[m].to_numpy(dtype=float))
            ml, _, nl = mean_se(b[m].to_numpy(dtype=float))
            both = pd.concat({"g": a[m], "l": b[m]}, axis=1, join="inner")
            diff = (both["l"] - both["g"]).to_numpy(dtype=float)
            dm, dse, dn = mean_se(diff)
            scale = abs(mg) if np.isfinite(mg) and abs(mg) > 0 else float("nan")
            rows.append({"family": glob, "global": glob, "localized": loc, "metric": m,
                         "mean_global": mg, "mean_localized": ml, "gain_pct": 100 * (ml - mg) / scale,
                         "diff_mean": dm, "diff_se": dse, "gain_se_pct": 100 * dse / scale, "n_pairs": dn,
                         "n_global": ng, "n_localized": nl})
    return pd.DataFrame(rows, columns=cols)


# ----- multi-concept (table 3) ----------------------------------------------------------------------

Terms = Sequence[tuple[str, int]]


def combination_cutoff(terms: Terms, cut: Cutoffs) -> float:
    """The cutoff of a combination: the smallest of its constituents' cutoffs, each taken in the
    direction its term steers (positive direction for a +1 term, negative for a −1 term). NaN
    constituent cutoffs are skipped (NaN when all are); a constituent absent from `cut` is an
    error."""
    lookup = cutoff_lookup(cut)
    values = []
    for concept, sign in terms:
        key = (concept, "pos" if sign > 0 else "neg")
        if key not in lookup:
            known = sorted({c for c, _ in lookup})
            raise ValueError(f"no cutoff for constituent '{concept}' ({key[1]}); "
                             f"cutoffs known for: {', '.join(map(str, known))}")
        values.append(lookup[key])
    v = np.asarray(values, dtype=float)
    return float(np.nanmin(v)) if np.isfinite(v).any() else float("nan")


def combination_auc(frame: pd.DataFrame, terms: Terms | Mapping[str, Terms], cut: Cutoffs) -> pd.DataFrame:
    """Table 3: the AUC of multi-concept steering.

    Input `frame` (tidy, one row per (method, combination, α)): columns ``method``,
    ``combination`` (a name, e.g. "piano+violin"), ``alpha`` (α ≥ 0 only: a combination is swept
    in one direction, linearly, its terms carrying their own signs), ``preservation`` (d(α),
    d(0) = 0) and, per constituent concept c and scorer s, ``align_<s>__<c>`` (mean alignment
    to c's text). Every (method, combination) needs its α = 0 row. `terms` is the list of
    (concept, sign ±1) of the combination, or a mapping combination -> terms when `frame` holds
    several. `cut` are the single-concept cutoffs (:func:`cutoffs`).

    Per constituent: δ_c(α) = sign_c · (s_c(α) − s_c(0)) and AUC_c with the combination's cutoff
    (:func:`combination_cutoff`: the smallest constituent cutoff, each in its term's direction);
    reported ``auc_<s>`` = mean over constituents (NaN if one is NaN), with the per-constituent
    ``auc_<s>__<c>`` beside it. One output row per (method, combination).
    """
    for col in ("method", "combination", "alpha", "preservation"):
        if col not in frame.columns:
            raise ValueError(f"combination data: missing column '{col}'")
    combos = list(dict.fromkeys(frame["combination"]))
    if isinstance(terms, Mapping):
        term_map = {k: list(v) for k, v in terms.items()}
    else:
        if len(combos) > 1:
            raise ValueError(f"combination data holds {len(combos)} combinations "
                             f"({', '.join(map(str, combos))}); pass terms as a mapping combination -> terms")
        term_map = {c: list(terms) for c in combos}
    if (frame["alpha"].to_numpy(dtype=float) < 0).any():
        raise ValueError("combination data: alpha must be >= 0 (the terms carry the signs)")
    rows = []
    for (method, combo), curve in frame.groupby(["method", "combination"], sort=False):
        if combo not in term_map:
            raise ValueError(f"no terms given for combination '{combo}'")
        t = term_map[combo]
        if not t or any(s not in (1, -1) for _, s in t):
            raise ValueError(f"combination '{combo}': terms must be (concept, +1 or -1) pairs, got {t}")
        what = f"method {method}, combination {combo}"
        base = _baseline_row(curve, what)
        c = combination_cutoff(t, cut)
        scorers = list(dict.fromkeys(col[len("align_"):].split("__")[0] for col in curve.columns
                                     if col.startswith("align_") and "__" in col))
        if not scorers:
            raise ValueError(f"{what}: no align_<scorer>__<concept> column")
        curve = curve.iloc[np.argsort(curve["alpha"].to_numpy(dtype=float), kind="stable")]
        row: dict[str, object] = {"method": method, "combination": combo, "cutoff": c}
        for s in scorers:
            parts = []
            for concept, sign in t:
                col = f"align_{s}__{concept}"
                if col not in curve.columns:
                    raise ValueError(f"{what}: missing column '{col}'")
                value = auc(curve["preservation"], delta(curve[col], base[col], sign), c)
                row[f"auc_{s}__{concept}"] = value
                parts.append(value)
            row[f"auc_{s}"] = _mean_strict(parts)
        rows.append(row)
    return pd.DataFrame(rows)
