"""hf_lnl's model-card templates, installed as the package `hf_lnl.templates` (see pyproject.toml)."""
