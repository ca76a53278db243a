"""results.json and results.md of an evaluation: the rows, the config, and the headline comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .protocol import LooReport

TABLE_METRICS = ("HR@5", "HR@10", "HR@20", "MRR@5", "MRR@10", "MRR@20", "NDCG@5", "NDCG@10", "NDCG@20")


def as_json(report: LooReport) -> dict[str, Any]:
    return {"config": report.config, "results": [row.as_json() for row in report.rows], "summary": report.summary,
            "ablation": report.ablation}


def variant_of(params: dict[str, Any]) -> str:
    keys = ("profile", "encoder", "persona_vector")
    return "/".join(str(params[k]) for k in keys) if all(k in params for k in keys) else ""


def ablation_table(report: LooReport, split: str = "test") -> str:
    """Every variant on the strongest generator's candidates and the full catalog: which part helps."""
    metrics = ("HR@10", "NDCG@10", "MRR@10")
    lines = ["| candidates | reranker | profile | encoder | persona vector | " + " | ".join(metrics) + " | N | gamma | w |",
             "|---|---|---|---|---|" + "---:|" * (len(metrics) + 3)]
    for row in report.ablation:
        if row["split"] != split:
            continue
        p = row["params"]
        values = " | ".join(f"{row[m]:.4f}" for m in metrics)
        lines.append(f"| {row['candidates']} | {row['reranker']} | {row['profile']} | {row['encoder']} | "
                     f"{row['persona_vector']} | {values} | {p['N']} | {p['gamma']} | {p.get('weight', '')} |"
                     + (f" h={p['half']}" if "half" in p else ""))
    return "\n".join(lines)


def table(report: LooReport, split: str = "test") -> str:
    metrics = [m for m in TABLE_METRICS if m in report.rows[0].metrics]
    lines = ["| candidates | reranker | " + " | ".join(metrics) + " | variant |", "|---|---|" + "---:|" * len(metrics) + "---|"]
    for row in report.rows:
        if row.split == split:
            values = " | ".join(f"{row.metrics[m]:.4f}" for m in metrics)
            lines.append(f"| {row.candidates} | {row.reranker} | {values} | {variant_of(row.params)} |")
    return "\n".join(lines)


def describe_comparison(title: str, comparison: dict[str, dict[str, float | None]]) -> str:
    parts = []
    for metric, c in comparison.items():
        relative = f" ({c['relative']:+.1%})" if c["relative"] is not None else ""
        parts.append(f"{metric} {c['base']:.4f} → {c['other']:.4f}{relative}")
    return f"- {title}: " + "; ".join(parts)


def markdown(report: LooReport) -> str:
    s = report.summary
    counts = report.config["counts"]
    head = [
        "# Leave-one-out evaluation",
        "",
        (f"{counts['users_evaluated']} users, {counts['items_with_training_reviews']} items, "
        f"{counts['personas']} personas ({report.config['persona_generator'].get('name', '?')}); "
        f"tuned on {report.config['tune_metric']}."),
        "",
        "## Headline (test)",
        "",
        describe_comparison(f"best persona reranker ({s['best_persona_reranker']} over "
                            f"{s.get('best_persona_candidates', s['strongest_generator'])}) over the strongest "
                            f"generator's own ranking ({s['strongest_generator']})", s["persona_lift_over_generator"]),
        describe_comparison(f"persona max-sim over single-vector, on {s['strongest_generator']} candidates",
                            s["persona_vs_single_vector"]),
        describe_comparison("persona max-sim over single-vector, full catalog",
                            s["full_catalog_persona_vs_single_vector"]),
        *describe_interval(s),
        f"- chosen on validation: {s['best_persona_reranker']} with {json.dumps(s['start_with'])}",
        "- run time: " + ", ".join(f"{phase} {secs:.0f} s" for phase, secs in report.config["seconds"].items()),
    ]
    parts = [*head, *levers_section(s), "", "## Test", "", table(report, "test"), "", "## Validation (at the chosen settings)", "",
             table(report, "validation"), ""]
    if report.ablation:
        parts += ["## Ablation (test; each variant tuned on validation)", "",
                  "Variant = profile source / encoder / persona vector kind.", "", ablation_table(report), ""]
    return "\n".join(parts)


def levers_section(summary: dict[str, Any]) -> list[str]:
    """Every persona lever against the strongest generator (test, with its interval), then the chosen one's
    segments."""
    if "levers" not in summary:
        return []
    lines = ["", "## Each lever over the strongest generator (test NDCG@10, chosen on validation)", "",
             "| candidates/reranker | validation | test | lift | 95 % interval |", "|---|---:|---:|---:|---|"]
    for lever, found in summary["levers"].items():
        ci = found["lift_ci95"]
        low, high = ci["relative_ci95"]
        base = found["test"] - ci["difference"]
        lift = f"{ci['difference'] / base:+.1%}" if base else ""
        interval = f"{low:+.1%} to {high:+.1%}" if low is not None else ""
        lines.append(f"| {lever} | {found['validation']:.4f} | {found['test']:.4f} | {lift} | {interval} |")
    chosen = f"{summary.get('best_persona_candidates', summary['strongest_generator'])}/{summary['best_persona_reranker']}"
    rows = summary.get("segments", {}).get(chosen, [])
    if rows:
        lines += ["", f"Segments of the chosen reranker ({chosen}) against {summary['strongest_generator']} (test NDCG@10):",
                  "", "| segment | cases | generator | reranker | lift | 95 % interval |", "|---|---:|---:|---:|---:|---|"]
        for r in rows:
            if r["cases"]:
                low, high = r["ci95"]
                lift = f"{r['relative']:+.1%}" if r["relative"] is not None else ""
                interval = f"{low:+.1%} to {high:+.1%}" if low is not None else ""
                lines.append(f"| {r['segment']} | {r['cases']} | {r['generator']:.4f} | {r['reranker']:.4f} | "
                             f"{lift} | {interval} |")
    return lines


def describe_interval(summary: dict[str, Any]) -> list[str]:
    lines = []
    for key, what in (("persona_lift_ci95", "the lift over the generator"),
                      ("persona_vs_single_vector_ci95", "persona max-sim over single-vector")):
        for metric, found in summary.get(key, {}).items():
            low, high = found["relative_ci95"]
            if low is not None:
                lines.append(f"- bootstrap 95 % interval of {what} ({metric}, {found['resamples']} resamples of "
                             f"{found['cases']} users): {low:+.1%} to {high:+.1%}")
    return lines


def write_report(report: LooReport, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(as_json(report), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path
