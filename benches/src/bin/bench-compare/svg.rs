//! A tiny SVG line-chart writer.
