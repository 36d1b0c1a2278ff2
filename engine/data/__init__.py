"""Datasets: image decoding (optical and SAR), ImageFolder scanning, splits, tiling, synthetic scenes."""
