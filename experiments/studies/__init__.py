"""Study declarations: one file per ablation study (experiments/framework/study.py)."""
