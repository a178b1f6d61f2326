"""Rich tables shared by commands."""

from __future__ import annotations

from rich.table import Table

_STAT_LABELS = {
    "AP": "AP @[.50:.95]", "AP50": "AP @.50", "AP75": "AP @.75", "APs": "AP small", "APm": "AP medium",
    "APl": "AP large", "AR1": "AR max 1", "AR10": "AR max 10", "AR100": "AR max 100", "ARs": "AR small",
    "ARm": "AR medium", "ARl": "AR large",
}


def metrics_table(stats: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in _STAT_LABELS.items():
        if key in stats:
            table.add_row(label, f"{stats[key]:.3f}")
    return table


def per_class_table(per_class_ap: dict[str, float], per_class_ap50: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("class")
    table.add_column("AP", justify="right")
    table.add_column("AP50", justify="right")
    for name, ap in sorted(per_class_ap.items(), key=lambda item: -item[1]):
        table.add_row(name, f"{ap:.3f}", f"{per_class_ap50.get(name, float('nan')):.3f}")
    return table


def detections_table(title: str, detections, class_names: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (("#", "right"), ("class", "left"), ("score", "right"), ("x1", "right"), ("y1", "right"), ("x2", "right"), ("y2", "right")):
        table.add_column(column, justify=justify)
    for index, (box, score, label) in enumerate(zip(detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist())):
        table.add_row(str(index + 1), class_names[label], f"{score:.3f}", *(f"{v:.1f}" for v in box))
    return table


def proposal_run_line(run) -> str:
    """One line on a selective search pass (``engine.proposals.ProposalRun``)."""
    line = f"selective search: {run.num_images} images, {run.num_images - run.num_computed} from the cache"
    if run.num_computed:
        line += (
            f", {run.num_computed} computed in {run.wall_seconds:.1f} s on all cores "
            f"({1000 * run.seconds_per_computed_image:.0f} ms per image on one core)"
        )
    return line + f"; {run.proposals_per_image:.0f} proposals per image"
