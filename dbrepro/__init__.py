"""dbrepro: reproduce Range Loss (ICCV 2017) and Domain Balancing (CVPR 2020) on long-tailed faces."""

__version__ = "0.1.0"
