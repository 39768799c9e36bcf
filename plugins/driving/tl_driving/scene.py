"""The ground-plane geometry of a generated road scene (`demo`), shared with its painters."""

from __future__ import annotations

from dataclasses import dataclass

ROAD_HALF_WIDTH_M = 5.0


@dataclass
class Scene:
    width: int
    height: int
    horizon: float
    vanish_x: float
    half_bottom: float  # road half-width in pixels at the bottom row
    night: bool
    fog: float  # 0 = clear

    def depth(self, y: float) -> float:
        return (y - self.horizon) / (self.height - self.horizon)

    def row(self, d: float) -> float:
        return self.horizon + d * (self.height - self.horizon)

    def x_at(self, lateral: float, d: float) -> float:
        """Image x of a ground point ``lateral`` half-road-widths from the centre line."""
        return self.vanish_x + lateral * self.half_bottom * d

    def pixels_per_metre(self, d: float) -> float:
        return self.half_bottom * d / ROAD_HALF_WIDTH_M


@dataclass
class Placed:
    cls: str
    box: tuple[float, float, float, float]
    d: float
    lateral: float
