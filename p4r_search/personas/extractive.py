"""The extractive persona generator: the default, LLM-free way to turn an item's reviews into personas.

For one item (its reviews sorted by review_id first, so input order never matters):

1. Embed every review text, in one batch call to the encoder (unit vectors).
2. Choose K. Below `min_reviews` reviews, K=1. Otherwise KMeans (`random_state=seed`, `n_init=10`) is fitted
   for every K from 2 to min(max_personas, n // 3, distinct vectors). The criterion: the highest mean
   silhouette score under cosine distance; scores within 1e-6 tie, and ties go to the smaller K. A K that
   leaves a cluster under 3 reviews is not admissible; if none is, K=1.
3. Keep critical views. Reviews rated <= `critical_rating` are critical (unrated ones never are). If there are
   at least 2 and they are not already the majority of some cluster, they are carved out into a cluster of
   their own. Then, while there are more than `max_personas` clusters or one under 3 reviews, the smallest is
   merged into the cluster with the nearest centroid; mostly-critical clusters are never merged away (unless
   only they are left and there are too many).
4. Name. Keyphrases are unigrams and bigrams (not crossing punctuation; English stop words and review filler
   removed) found in at least 2 (and 1%) of the cluster's reviews, ranked by c-TF-IDF against the item's
   other clusters times the log of their over-representation in the cluster (relative frequency there over
   that in the other clusters; 0 if not over-represented), or by plain TF when K=1. Terms made only of the
   item's category or title words are dropped when they occur in every cluster. The name is the top
   keyphrase (a unigram widened to the bigram it mostly occurs in, if any) plus a role noun: "Critics" (over
   half critical), "Skeptics" (a quarter or more), "Fans" (otherwise), "Shoppers" (no ratings); names stay
   distinct within the item by falling back to the next keyphrase, then to "Reviewer Group N".
5. Describe. The description says who the reviewers are (from the keyphrases) and quotes 2 sentences of the
   cluster's 8 most representative reviews: those mentioning 2+ of its top 5 keyphrases first, then 1, then
   none, and within each group those of the reviews closest to the centroid first (no further encoder call).
   The rationale gives measurable facts: size, share, average rating, distinctive terms.

Evidence review ids are all of a cluster's reviews, closest to its centroid first. Personas are ordered by
support, descending (ties: smallest review id). The output is deterministic for a given seed and input.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from ..encoder import TextEncoder
from ..models import EvidenceSnippet, GeneratorInfo, Item, Persona, Review
from .base import Generated, snippet

ALGORITHM_VERSION = "1.1"  # 1.1: quotes chosen without embedding every sentence
PROMPT_VERSION = "extractive-v1"
N_INIT = 10
MIN_CLUSTER_SIZE = 3
TIE_TOLERANCE = 1e-6
SILHOUETTE_SAMPLE = 2000
N_TERMS = 10  # kept per cluster, for naming; 5 are shown in the rationale and 3 in the description
MIN_TERM_SHARE = 0.01
COLLOCATION_SHARE = 0.4
N_SNIPPETS = 3
N_SENTENCE_SOURCES = 8
MAX_SENTENCES = 24
DESCRIPTION_CHARS = 400
SENTENCE_CHARS = 160
_FILLER = {"just", "really", "bit", "got", "im", "ive", "ve", "ll", "don", "doesn", "didn", "isn", "wasn", "aren",
           "wouldn", "couldn", "love", "loved", "like", "liked", "great", "good", "nice", "definitely", "absolutely",
           "want", "wanted", "way", "sure", "unfortunately", "tried", "thought", "think", "does", "did", "based",
           "review", "reviews", "little", "lot", "bought", "buy", "purchase", "purchased", "item", "retailer"}
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS | _FILLER)
_TOKEN = r"(?u)\b[^\W\d_]{2,}\b"
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\"\n]+|\s-+\s")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class _Cluster:
    members: list[int]  # indices into the sorted reviews, most representative first
    centroid: np.ndarray
    terms: list[str]
    name_phrases: list[str]
    critical_share: float
    mean_rating: float | None


class ExtractiveGenerator:
    """Clusters an item's review embeddings and describes each cluster from its own reviews."""

    def __init__(self, encoder: TextEncoder, *, seed: int = 0, min_reviews: int = 8, max_personas: int = 7,
                 critical_rating: float = 2.0):
        if not 1 <= max_personas <= 7:
            raise ValueError(f"max_personas must be between 1 and 7, got {max_personas}")
        if min_reviews < 1:
            raise ValueError(f"min_reviews must be at least 1, got {min_reviews}")
        self.encoder = encoder
        self.seed = seed
        self.min_reviews = min_reviews
        self.max_personas = max_personas
        self.critical_rating = critical_rating

    @property
    def info(self) -> GeneratorInfo:
        params = {"seed": self.seed, "min_reviews": self.min_reviews, "max_personas": self.max_personas,
                  "critical_rating": self.critical_rating}
        return GeneratorInfo(name="extractive", version=ALGORITHM_VERSION, model=self.encoder.model_name,
                             prompt_version=PROMPT_VERSION, params=params)

    def generate(self, item: Item, reviews: Sequence[Review]) -> Generated:
        if not reviews:
            raise ValueError(f"item {item.item_id} has no reviews to build personas from")
        ordered = sorted(reviews, key=lambda r: r.review_id)
        vectors = self.encoder.encode([r.text for r in ordered]).astype(np.float64)
        critical = np.array([r.rating is not None and r.rating <= self.critical_rating for r in ordered])
        labels = self._cluster(vectors, critical)
        clusters = self._describe_clusters(item, ordered, vectors, labels, critical)
        clusters.sort(key=lambda c: (-len(c.members), min(ordered[i].review_id for i in c.members)))
        sentences = self._representative_sentences(ordered, clusters)
        names = _distinct_names(clusters)
        personas = [self._persona(item, i, ordered, c, names[i], sentences[i]) for i, c in enumerate(clusters)]
        return Generated(personas, used_review_ids=[r.review_id for r in ordered])

    def _cluster(self, vectors: np.ndarray, critical: np.ndarray) -> np.ndarray:
        if len(vectors) < self.min_reviews:
            return np.zeros(len(vectors), dtype=int)
        distinct = len(np.unique(vectors, axis=0))
        labels = _best_kmeans(vectors, self.seed, min(self.max_personas, len(vectors) // MIN_CLUSTER_SIZE, distinct))
        labels = _carve_out_critical(labels, critical)
        return _merge_clusters(labels, vectors, critical, self.max_personas)

    def _describe_clusters(self, item: Item, reviews: list[Review], vectors: np.ndarray, labels: np.ndarray,
                           critical: np.ndarray) -> list[_Cluster]:
        groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
        keyphrases = _keyphrases([[reviews[i].text for i in g] for g in groups], _category_words(item))
        clusters = []
        for group, (terms, name_phrases) in zip(groups, keyphrases):
            centroid = _unit(vectors[group].mean(axis=0))
            closeness = vectors[group] @ centroid
            members = [int(group[j]) for j in sorted(range(len(group)), key=lambda j: (-closeness[j], group[j]))]
            ratings = [reviews[i].rating for i in group if reviews[i].rating is not None]
            mean_rating = float(np.mean(ratings)) if ratings else None
            share = float(critical[group].mean())
            clusters.append(_Cluster(members, centroid, terms, name_phrases, share, mean_rating))
        return clusters

    @staticmethod
    def _representative_sentences(reviews: list[Review], clusters: list[_Cluster]) -> list[list[str]]:
        """Per cluster, 2 sentences of its most representative reviews: those mentioning 2+ of its top terms
        first, then 1, then none; within each group, from the review closest to the centroid first. (Version
        1.0 embedded every candidate sentence to rank them by closeness: three times as many encoder inputs
        as the reviews themselves, for the same kind of quote.)"""
        chosen = []
        for cluster in clusters:
            pairs = _sentences([reviews[i].text for i in cluster.members[:N_SENTENCE_SOURCES]], cluster.terms[:5])
            best = sorted(range(len(pairs)), key=lambda j: (-pairs[j][0], j))[:2]
            chosen.append([pairs[j][1] for j in best])
        return chosen

    def _persona(self, item: Item, index: int, reviews: list[Review], cluster: _Cluster, name: str,
                 sentences: list[str]) -> Persona:
        size, total = len(cluster.members), len(reviews)
        rating = f"{cluster.mean_rating:.1f}" if cluster.mean_rating is not None else "n/a"
        shown_terms = ", ".join(cluster.terms[:5]) or "none"
        rationale = f"{size} of {total} reviews ({100 * size / total:.0f}%), average rating {rating}; " \
                    f"distinctive terms: {shown_terms}"
        snippets = [EvidenceSnippet(review_id=reviews[i].review_id, text=snippet(reviews[i].text))
                    for i in cluster.members[:N_SNIPPETS]]
        return Persona(persona_id=f"{item.item_id}-p{index}", name=name,
                       description=_description(cluster, sentences), rationale=rationale,
                       evidence_review_ids=[reviews[i].review_id for i in cluster.members],
                       support=size / total, evidence_snippets=snippets)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse]


def _best_kmeans(vectors: np.ndarray, seed: int, max_k: int) -> np.ndarray:
    """The admissible KMeans clustering (K >= 2) with the best cosine silhouette; ties go to the smaller K.
    Runs on one thread: the same labels, and on a busy machine many times faster than KMeans' OpenMP threads."""
    sample = SILHOUETTE_SAMPLE if len(vectors) > SILHOUETTE_SAMPLE else None
    with threadpool_limits(limits=1):
        return _relabel(_search_k(vectors, seed, max_k, sample))


def _search_k(vectors: np.ndarray, seed: int, max_k: int, sample: int | None) -> np.ndarray:
    best_labels, best_score = np.zeros(len(vectors), dtype=int), -np.inf
    for k in range(2, max_k + 1):
        labels = KMeans(n_clusters=k, random_state=seed, n_init=N_INIT).fit_predict(vectors)
        sizes = np.bincount(labels, minlength=k)
        if sizes.min() < MIN_CLUSTER_SIZE:
            continue
        score = silhouette_score(vectors, labels, metric="cosine", sample_size=sample, random_state=seed)
        if score > best_score + TIE_TOLERANCE:
            best_labels, best_score = labels, float(score)
    return best_labels


def _mostly_critical(labels: np.ndarray, critical: np.ndarray, label: int) -> bool:
    return bool(critical[labels == label].mean() > 0.5)


def _carve_out_critical(labels: np.ndarray, critical: np.ndarray) -> np.ndarray:
    if critical.sum() < 2 or any(_mostly_critical(labels, critical, c) for c in np.unique(labels)):
        return labels
    carved = labels.copy()
    carved[critical] = labels.max() + 1
    return _relabel(carved)


def _merge_clusters(labels: np.ndarray, vectors: np.ndarray, critical: np.ndarray, max_k: int) -> np.ndarray:
    """Merges the smallest cluster into its nearest one while there are too many or one is too small."""
    labels = labels.copy()
    while True:
        present = [int(c) for c in np.unique(labels)]
        sizes = {c: int((labels == c).sum()) for c in present}
        open_ = [c for c in present if not _mostly_critical(labels, critical, c)]
        if len(present) > max_k:
            candidates = open_ or present
        else:
            candidates = [c for c in open_ if sizes[c] < MIN_CLUSTER_SIZE and len(present) > 1]
        if not candidates:
            return _relabel(labels)
        victim = min(candidates, key=lambda c: (sizes[c], c))
        targets = [c for c in open_ if c != victim] or [c for c in present if c != victim]
        centroid = _unit(vectors[labels == victim].mean(axis=0))
        target = max(targets, key=lambda c: (float(_unit(vectors[labels == c].mean(axis=0)) @ centroid), -c))
        labels[labels == victim] = target


def _category_words(item: Item) -> set[str]:
    words = set()
    for text in [item.title, *item.categories]:
        for word in re.findall(_TOKEN, text.lower()):
            words.update({word, word.removesuffix("s"), word.removesuffix("es")})
    return words


def _keyphrases(cluster_texts: list[list[str]], category_words: set[str]) -> list[tuple[list[str], list[str]]]:
    """Each cluster's top terms, and its name phrases. Terms are ranked by c-TF-IDF times the log of their
    over-representation in the cluster (relative frequency there over that in the item's other clusters);
    by plain TF for a single cluster."""
    vectorizer = CountVectorizer(analyzer=_analyze)
    try:
        counts = vectorizer.fit_transform([t for texts in cluster_texts for t in texts])
    except ValueError:  # no usable words at all
        return [([], []) for _ in cluster_texts]
    vocab = vectorizer.get_feature_names_out()
    bounds = np.cumsum([0] + [len(texts) for texts in cluster_texts])
    spans = list(itertools.pairwise(bounds))
    tf = np.vstack([np.asarray(counts[a:b].sum(axis=0)).ravel() for a, b in spans]).astype(np.float64)
    doc_freq = np.vstack([np.asarray((counts[a:b] > 0).sum(axis=0)).ravel() for a, b in spans])
    words = np.maximum(tf.sum(axis=1, keepdims=True), 1)
    scores = tf / words
    if len(cluster_texts) > 1:
        scores *= np.log(1 + words.mean() / np.maximum(tf.sum(axis=0), 1))  # c-TF-IDF
        rest, rest_words = tf.sum(axis=0) - tf, np.maximum(words.sum() - words, 1)
        scores *= np.maximum(np.log(((tf + 0.5) / words) / ((rest + 0.5) / rest_words)), 0)
    is_category = np.array([all(w in category_words for w in term.split()) for term in vocab])
    scores[:, (doc_freq > 0).all(axis=0) & is_category] = 0
    sizes = (bounds[1:] - bounds[:-1])[:, None]
    scores[doc_freq < np.minimum(np.maximum(2, MIN_TERM_SHARE * sizes), sizes)] = 0
    top = [_top_terms(vocab, row) for row in scores]
    return [(terms, _name_phrases(terms, vocab, row)) for terms, row in zip(top, tf)]


def _analyze(text: str) -> list[str]:
    """Unigrams and bigrams of a text without stop words; bigrams never cross punctuation."""
    terms: list[str] = []
    for clause in _CLAUSE_BREAK.split(text.lower()):
        words = [w for w in re.findall(_TOKEN, clause) if w not in STOP_WORDS]
        terms += words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    return terms


def _top_terms(vocab: np.ndarray, scores: np.ndarray) -> list[str]:
    terms: list[str] = []
    covered: set[str] = set()
    for j in sorted(np.flatnonzero(scores > 0), key=lambda j: (-scores[j], vocab[j])):
        words = set(vocab[j].split())
        if not words <= covered:
            terms.append(str(vocab[j]))
            covered |= words
        if len(terms) == N_TERMS:
            break
    return terms


def _role(cluster: _Cluster) -> tuple[str, str]:
    """The role noun of the name and the subject of the description."""
    if cluster.critical_share > 0.5:
        return "Critics", "Dissatisfied reviewers"
    if cluster.critical_share >= 0.25:
        return "Skeptics", "Reviewers with mixed feelings"
    if cluster.mean_rating is None:
        return "Shoppers", "Reviewers"
    return "Fans", "Mostly satisfied reviewers"


def _name_phrases(terms: list[str], vocab: np.ndarray, tf: np.ndarray) -> list[str]:
    """The terms in rank order, each unigram widened to the most frequent bigram containing it when that
    bigram has at least COLLOCATION_SHARE of the unigram's uses in the cluster ("usual" -> "usual size")."""
    index = {str(term): j for j, term in enumerate(vocab)}
    phrases = []
    for term in terms:
        if " " not in term:
            frequent = np.flatnonzero(tf >= max(2.0, COLLOCATION_SHARE * tf[index[term]]))
            wider = [j for j in frequent if " " in vocab[j] and term in vocab[j].split()]
            term = str(vocab[max(wider, key=lambda j: (tf[j], -j))]) if wider else term
        phrases.append(term)
    return list(dict.fromkeys(phrases))


def _distinct_names(clusters: list[_Cluster]) -> list[str]:
    names: list[str] = []
    for index, cluster in enumerate(clusters):
        role = _role(cluster)[0]
        options = [f"{p.title()} {role}" for p in cluster.name_phrases if role.lower() not in p.split()]
        fresh = [name for name in options if name not in names]
        names.append(fresh[0] if fresh else f"Reviewer Group {index + 1}")
    return names


def _sentences(texts: list[str], terms: list[str]) -> list[tuple[int, str]]:
    """Candidate quotes: (how many terms it mentions, up to 2; sentence) for the texts' distinct sentences of
    4+ words, only those mentioning a term when there are 2 or more such, at most MAX_SENTENCES."""
    parts = [p.strip() for text in texts for p in _SENTENCE_BREAK.split(text) if p.strip()]
    sentences = list(dict.fromkeys([p for p in parts if len(p.split()) >= 4] or parts))
    pairs = [(min(2, sum(_mentions(s, t) for t in terms)), s) for s in sentences]
    mentioning = [pair for pair in pairs if pair[0] > 0]
    return (mentioning if len(mentioning) >= 2 else pairs)[:MAX_SENTENCES]


def _mentions(sentence: str, term: str) -> bool:
    return set(term.split()) <= set(re.findall(_TOKEN, sentence.lower()))


def _description(cluster: _Cluster, sentences: list[str]) -> str:
    subject, terms = _role(cluster)[1], cluster.terms[:3]
    topics = ", ".join(terms[:-1]) + " and " + terms[-1] if len(terms) > 1 else "".join(terms)
    text = f"{subject} who talk about {topics}." if terms else f"{subject} of this item."
    for sentence in sentences:
        quote = f' "{snippet(sentence, SENTENCE_CHARS)}"'
        if len(text) + len(quote) <= DESCRIPTION_CHARS:
            text += quote
    return text
