"""Pure scoring functions: efficacy, generality, locality (+ TD/EM/SS/TS), fluency, Average,
AKD, retrieval diagnostics, perplexity, bootstrap intervals.

Functions here take numbers, tokens or texts and return numbers. Must not know which editor
produced an edit, and must not load models.
"""

from metrics.average import average_score
from metrics.correlation import RankCorrelation, spearman_correlation
from metrics.efficacy import efficacy_score, token_accuracy
from metrics.fluency import fluency, ngram_entropy, text_fluency, word_tokenize
from metrics.keys import average_key_distance, average_key_distance_per_layer
from metrics.locality import locality_agreement, locality_by_group, mean_locality
from metrics.perplexity import perplexity, perplexity_change_interval
from metrics.uncertainty import Interval, bootstrap_interval, mean_interval
from metrics.retrieval import RetrievalRates, high_similarity_share, retrieval_rates, similarity_ratio

__all__ = [
    "Interval",
    "RankCorrelation",
    "RetrievalRates",
    "average_key_distance",
    "average_key_distance_per_layer",
    "average_score",
    "bootstrap_interval",
    "efficacy_score",
    "fluency",
    "high_similarity_share",
    "locality_agreement",
    "locality_by_group",
    "mean_interval",
    "mean_locality",
    "ngram_entropy",
    "perplexity",
    "perplexity_change_interval",
    "retrieval_rates",
    "similarity_ratio",
    "spearman_correlation",
    "text_fluency",
    "token_accuracy",
    "word_tokenize",
]
