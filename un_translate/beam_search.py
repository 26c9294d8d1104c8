"""Beam search with the semantics of fairseq-generate (``fairseq.sequence_generator.
SequenceGenerator`` with ``fairseq.search.BeamSearch``), in numpy over the exported graphs.

Per step, for every live hypothesis: log-probabilities of the next token (NaN -> -inf, pad
never chosen, ``unk_penalty`` subtracted from unk, only eos allowed once the step reaches
``max_len``, eos forbidden before ``min_len``); cumulative scores; the best ``2 * beam``
(token, hypothesis) candidates per sentence; those of the first ``beam`` candidates that end
in eos are finalised with score ``cumulative / (step + 1) ** len_penalty``; the first
``beam`` candidates that do not end in eos continue. A sentence is done when it has ``beam``
finalised hypotheses or reaches its ``max_len``; its hypotheses are then sorted by score.

One difference, on purpose: ``max_len = min(max_len_a * x + max_len_b, max_positions - 1)``
takes ``x`` = each sentence's own length (tokens + eos). fairseq-generate takes the padded
length of the batch the sentence happens to be in, so the two agree whenever
``max_len_a == 0`` (the default) or fairseq-generate runs with ``--batch-size 1``.
"""

import math
from dataclasses import dataclass, field
from typing import List

import numpy as np

NEG_INF = np.float32(-np.inf)


@dataclass
class SearchOptions:
    """fairseq-generate's flags of the same names, and its defaults."""

    beam: int = 5
    len_penalty: float = 1.0
    unk_penalty: float = 0.0
    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1

    def check(self) -> None:
        for name, value, ok in (("beam", self.beam, self.beam >= 1),
                                ("min_len", self.min_len, self.min_len >= 0),
                                ("max_len_b", self.max_len_b, self.max_len_b >= 0),
                                ("max_len_a", self.max_len_a, self.max_len_a >= 0)):
            if not ok:
                raise ValueError(f"{name}={value} is not allowed: give a number >= {1 if name == 'beam' else 0}")


@dataclass
class Hypothesis:
    """A finished translation: target ``tokens`` ending in eos, ``score`` (natural log,
    normalised by length as fairseq does), ``positional_scores`` per token."""

    tokens: np.ndarray
    score: float
    positional_scores: np.ndarray = field(repr=False)


def _top_candidates(scores: np.ndarray, k: int):
    """The ``k`` largest entries of each row, descending (ties: lower index first)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, idx, axis=1), idx


def beam_search(model, src_tokens: np.ndarray, src_lengths: np.ndarray, vocab, opts: SearchOptions,
                max_positions: int) -> List[List[Hypothesis]]:
    """Translate a batch: ``src_tokens`` ``B x S`` (right-padded, eos-terminated),
    ``src_lengths`` ``B``. Returns, per sentence, its ``beam`` hypotheses best first.

    ``model`` is an :class:`~un_translate.onnx_model.OnnxModel`; ``vocab`` the target
    vocabulary (special indices, size); ``max_positions`` the decoder's.
    """
    V = len(vocab)
    pad, unk, eos = vocab.pad, vocab.unk, vocab.eos
    beam = min(opts.beam, V - 1)  # pad is never chosen
    n_sent = src_tokens.shape[0]
    max_len = np.minimum((opts.max_len_a * src_lengths + opts.max_len_b).astype(np.int64), max_positions - 1)
    if (opts.min_len > max_len).any():
        raise ValueError(f"min_len={opts.min_len} is larger than the maximum length {int(max_len.min())}: "
                         f"lower --min-len or raise --max-len-a/--max-len-b")

    _, padding_mask, cross_k, cross_v = model.encode(src_tokens, src_lengths)
    rows = np.repeat(np.arange(n_sent), beam)  # every sentence's encoder state, beam times
    padding_mask, cross_k, cross_v = padding_mask[rows], cross_k[:, rows], cross_v[:, rows]
    cache_k = cache_v = model.empty_cache(n_sent * beam)

    live = np.arange(n_sent)  # original index of each live sentence
    bsz = n_sent
    tokens = np.full((bsz * beam, int(max_len.max()) + 2), pad, dtype=np.int64)
    tokens[:, 0] = eos
    scores = np.zeros((bsz * beam, int(max_len.max()) + 1), dtype=np.float32)
    cands_to_ignore = np.zeros((bsz, beam), dtype=bool)
    finalized: List[List[Hypothesis]] = [[] for _ in range(n_sent)]
    finished = np.zeros(n_sent, dtype=bool)

    for step in range(int(max_len.max()) + 1):
        lprobs, cache_k, cache_v = model.step(tokens[:, step], step, cache_k, cache_v,
                                              cross_k, cross_v, padding_mask)
        lprobs = np.array(lprobs, dtype=np.float32)
        lprobs[np.isnan(lprobs)] = NEG_INF
        lprobs[:, pad] = NEG_INF
        lprobs[:, unk] -= np.float32(opts.unk_penalty)
        at_max = np.repeat(step >= max_len[live], beam)
        lprobs[at_max, :eos] = NEG_INF
        lprobs[at_max, eos + 1:] = NEG_INF
        if step < opts.min_len:
            lprobs[:, eos] = NEG_INF

        # fairseq.search.BeamSearch.step
        lp = lprobs.reshape(bsz, beam, V)
        if step == 0:
            lp = lp[:, :1, :]  # every hypothesis is the same: use the first
        else:
            lp = lp + scores.reshape(bsz, beam, -1)[:, :, step - 1][:, :, None]
        flat = lp.reshape(bsz, -1)
        cand_scores, cand_flat = _top_candidates(flat, min(2 * beam, flat.shape[1] - 1))
        cand_beams, cand_indices = cand_flat // V, cand_flat % V
        bbsz_offsets = (np.arange(bsz) * beam)[:, None]
        cand_bbsz_idx = cand_beams + bbsz_offsets

        eos_mask = (cand_indices == eos) & (cand_scores != NEG_INF)
        eos_mask[:, :beam][cands_to_ignore] = False
        top = eos_mask[:, :beam]
        done_local: List[int] = []
        if top.any():
            done_local = _finalize(step, cand_bbsz_idx[:, :beam][top], cand_scores[:, :beam][top], tokens,
                                   scores, finalized, finished, live, beam, max_len, eos, opts.len_penalty)
        if finished.all():
            break

        if done_local:  # drop the sentences that are done
            keep = np.setdiff1d(np.arange(bsz), done_local)
            eos_mask, cand_beams = eos_mask[keep], cand_beams[keep]
            cand_scores, cand_indices = cand_scores[keep], cand_indices[keep]
            cands_to_ignore = cands_to_ignore[keep]
            kept_rows = (keep[:, None] * beam + np.arange(beam)).reshape(-1)
            scores, tokens = scores[kept_rows], tokens[kept_rows]
            padding_mask, cross_k, cross_v = padding_mask[kept_rows], cross_k[:, kept_rows], cross_v[:, kept_rows]
            old_offsets = (keep * beam)[:, None]  # the caches are still indexed as before
            live, bsz = live[keep], len(keep)
            bbsz_offsets = (np.arange(bsz) * beam)[:, None]
        else:
            old_offsets = bbsz_offsets

        # the first `beam` candidates that do not end in eos (nor are ignored) continue
        eos_mask[:, :beam] |= cands_to_ignore
        cand_size = 2 * beam
        active_mask = eos_mask.astype(np.int64) * cand_size + np.arange(eos_mask.shape[1])
        active_hypos = np.argsort(active_mask, axis=1, kind="stable")[:, :beam]
        cands_to_ignore = np.take_along_axis(active_mask, active_hypos, axis=1) >= cand_size
        chosen_beams = np.take_along_axis(cand_beams, active_hypos, axis=1)
        active_bbsz_idx = (chosen_beams + bbsz_offsets).reshape(-1)

        tokens[:, :step + 1] = tokens[active_bbsz_idx, :step + 1]
        tokens.reshape(bsz, beam, -1)[:, :, step + 1] = np.take_along_axis(cand_indices, active_hypos, axis=1)
        if step > 0:
            scores[:, :step] = scores[active_bbsz_idx, :step]
        scores.reshape(bsz, beam, -1)[:, :, step] = np.take_along_axis(cand_scores, active_hypos, axis=1)
        cache_rows = (chosen_beams + old_offsets).reshape(-1)
        cache_k, cache_v = cache_k[:, cache_rows], cache_v[:, cache_rows]

    for hyps in finalized:
        hyps.sort(key=lambda h: -h.score)  # stable: an equal score keeps the earlier one first
    return finalized


def _finalize(step, bbsz_idx, eos_scores, tokens, scores, finalized, finished, live, beam,
              max_len, eos, len_penalty) -> List[int]:
    """fairseq's ``finalize_hypos``: store the hypotheses ending in eos at ``step``; return
    the local indices of the sentences that are now done."""
    hyp_tokens = tokens[bbsz_idx, 1:step + 2].copy()
    hyp_tokens[:, step] = eos
    pos_scores = scores[bbsz_idx, :step + 1].copy()
    pos_scores[:, step] = eos_scores
    pos_scores[:, 1:] = pos_scores[:, 1:] - pos_scores[:, :-1]
    normalised = eos_scores / np.float32((step + 1) ** len_penalty)
    local = bbsz_idx // beam
    for i, sent_local in enumerate(local):
        sent = live[sent_local]
        if len(finalized[sent]) < beam:
            finalized[sent].append(Hypothesis(hyp_tokens[i], float(normalised[i]), pos_scores[i]))
    done = []
    for sent_local in np.unique(local):
        sent = live[sent_local]
        if not finished[sent] and (len(finalized[sent]) == beam or step == max_len[sent]):
            finished[sent] = True
            done.append(int(sent_local))
    return done


def base2(score: float) -> float:
    """A natural-log score in base 2, rounded as fairseq-generate prints it (float32)."""
    return float(np.float32(score) / np.float32(math.log(2)))
