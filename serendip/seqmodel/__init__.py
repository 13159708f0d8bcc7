"""Transformer sequence recommender (SASRec): user embedding = encode(history), score = dot product."""

from serendip.seqmodel.encode import encode_users, histories_to_tokens, load_model, save_model
from serendip.seqmodel.evaluate import evaluate_model, evaluate_popularity, time_split
from serendip.seqmodel.model import PAD, SASRec
from serendip.seqmodel.train import train_sasrec

__all__ = [
    "PAD",
    "SASRec",
    "encode_users",
    "evaluate_model",
    "evaluate_popularity",
    "histories_to_tokens",
    "load_model",
    "save_model",
    "time_split",
    "train_sasrec",
]
