"""The SAR LULC Processing provider and its algorithms."""
