"""Spatial cores in micrometres, one image or one table at a time: the tumour region and its compartments
(``geometry``, ``compartments``, ``spots``), where the effector cells sit (``measures``) and the inflamed / excluded /
desert rule with its thresholds (``rules``)."""
