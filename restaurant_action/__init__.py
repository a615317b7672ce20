"""restaurant_action: spatiotemporal action localization in video."""

__version__ = "0.1.0"
