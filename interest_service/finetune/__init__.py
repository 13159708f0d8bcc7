"""Fine-tuning the interest model on real novel-interest transitions.

``data.py`` curates chat examples from the history period (``serendip sft-data``), ``train.py``
trains a LoRA adapter on them (``serendip finetune``), ``adapter.py`` merges an adapter into the
local backend's model, ``check.py`` measures how often the constrained answer's first cluster is
the user's real next new cluster.
"""
