"""Demo models: training data, training and export of the example mnist and tabular models (not shipped)."""
