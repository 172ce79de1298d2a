"""Measuring weights: NME/FR/AUC on labelled faces (``facemark eval``) and speed (``facemark bench``)."""
