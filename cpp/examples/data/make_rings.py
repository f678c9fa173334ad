"""Writes rings.csv: two noisy concentric rings, labels 0 (radius 1.0) and 1 (radius 0.5)."""

import math
import pathlib
import random

random.seed(3)
lines = ["x1,x2,label"]
for i in range(400):
    label = i % 2
    radius = (0.5 if label else 1.0) + random.gauss(0, 0.08)
    angle = random.uniform(0, 2 * math.pi)
    lines.append(f"{radius * math.cos(angle):.5f},{radius * math.sin(angle):.5f},{label}")
pathlib.Path(__file__).with_name("rings.csv").write_text("\n".join(lines) + "\n")
