"""Settings of predictive maintenance: ``[predict]`` in telcolake.toml."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

from pipelines.core.config import Settings


@dataclass(frozen=True)
class PredictSettings:
    """``[predict]``: features, labels, training and the ``predicted_degradation`` alert.

    Attributes:
        enabled: score closed KPI windows in the KPI flow (when a model has been trained).
        horizon_hours: the label: an incident starts within this many hours of the window.
        threshold: probability at which a window counts as at risk; 0 takes the model's own,
            chosen in training on out-of-fold scores (best F1 of warnings against incident onsets).
        validation_days: length of the training blocks scored out of fold to choose the threshold.
        raise_after_windows: scored windows at risk in a row that raise the alert.
        clear_after_windows: scored windows not at risk in a row that clear it.
        update_every_windows: an open alert sends an ``updated`` event every this many windows.
        cooldown_minutes: after an incident's alert or critical alarm ends, the cell is not scored this long.
        min_history_minutes: a cell (or a cell back after a gap) is scored once it has this much history.
        max_gap_minutes: KPI windows further apart than this start a new history (a gap).
        site_wait_minutes: a site's windows are scored once all its cells closed them, except cells this far behind.
        test_days: training holds out the last this many days of KPI history for evaluation.
        negative_share: share of the windows without an incident ahead kept for training (weighted back).
        max_iter: boosting iterations of the model.
        top_features: contributing features named on each alert.
    """

    enabled: bool = True
    horizon_hours: float = 2.0
    threshold: float = 0.0
    validation_days: int = 7
    raise_after_windows: int = 2
    clear_after_windows: int = 3
    update_every_windows: int = 6
    cooldown_minutes: float = 180.0
    min_history_minutes: float = 120.0
    max_gap_minutes: float = 30.0
    site_wait_minutes: float = 360.0
    test_days: int = 7
    negative_share: float = 0.3
    max_iter: int = 60
    top_features: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictSettings:
        """The checked ``[predict]`` values (defaults for anything missing).

        Raises:
            ConfigError: one line naming the bad key and what is allowed.
        """
        values = settings.values("predict")
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    @property
    def horizon(self) -> timedelta:
        return timedelta(hours=self.horizon_hours)

    @property
    def horizon_minutes(self) -> int:
        return int(round(self.horizon_hours * 60))
