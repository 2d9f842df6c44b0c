"""Tools around the training engine: dataset conversion, demo data, model summaries."""
