"""Beam search with the semantics of fairseq-generate (``fairseq.sequence_generator.
SequenceGenerator`` with ``fairseq.search.BeamSearch``), in numpy over the exported graphs.

Per step, for every live hypothesis: log-probabilities of the next token (NaN -> -inf, pad
never chosen, ``unk_penalty`` subtracted from unk, only eos allowed once the step reaches
``max_len``, eos forbidden before ``min_len``; the graph applies these and returns each
row's best ``K`` tokens); cumulative scores; the best ``2 * beam``
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


def _top_candidates(scores: np.ndarray, flat_index: np.ndarray, k: int):
    """Per row, the ``k`` largest ``scores`` descending, equal scores by lower ``flat_index``
    first (``torch.topk`` over fairseq's ``beam x V`` scores, whose index is ``flat_index``).
    Rows hold only the graph's ``beam x K`` candidates, so this sort is small."""
    order = np.lexsort((flat_index, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(flat_index, order, axis=1)


def beam_search(model, src_tokens: np.ndarray, src_lengths: np.ndarray, vocab, opts: SearchOptions,
                max_positions: int) -> List[List[Hypothesis]]:
    """Translate a batch: ``src_tokens`` ``B x S`` (right-padded, eos-terminated),
    ``src_lengths`` ``B``. Returns, per sentence, its ``beam`` hypotheses best first.

    ``model`` is an :class:`~un_translate.onnx_model.OnnxModel`; ``vocab`` the target
    vocabulary (special indices, size); ``max_positions`` the decoder's. The graph returns
    each row's best ``K >= 2 x beam`` tokens (or all ``V``); the best ``2 x beam`` of a
    sentence's ``beam x V`` scores are among its rows' best ``2 x beam``, so merging the
    ``beam x K`` candidates here selects what fairseq's ``topk`` over ``beam x V`` selects.
    """
    V = len(vocab)
    pad, unk, eos = vocab.pad, vocab.unk, vocab.eos
    beam = min(opts.beam, V - 1)  # pad is never chosen
    if 2 * beam > model.candidates and model.candidates < V:
        raise ValueError(f"beam={opts.beam}: this export keeps {model.candidates} candidates per row, enough "
                         f"for a beam of {model.candidates // 2}; re-export with un-export --max-beam {opts.beam}")
    n_sent = src_tokens.shape[0]
    max_len = np.minimum((opts.max_len_a * src_lengths + opts.max_len_b).astype(np.int64), max_positions - 1)
    if (opts.min_len > max_len).any():
        raise ValueError(f"min_len={opts.min_len} is larger than the maximum length {int(max_len.min())}: "
                         f"lower --min-len or raise --max-len-a/--max-len-b")

    padding_mask, cross = model.encode(src_tokens, src_lengths)  # one row per sentence, never per beam
    state = model.start(padding_mask, cross, 1, max_width=beam)  # one row per sentence at the first step
    bias = np.zeros(V, dtype=np.float32)  # fairseq-generate's adjustments of the log-probabilities
    bias[pad] = NEG_INF
    bias[unk] = -np.float32(opts.unk_penalty)
    eos_bias = bias[eos]

    live = np.arange(n_sent)  # original index of each live sentence
    bsz = n_sent
    tokens = np.full((bsz * beam, int(max_len.max()) + 2), pad, dtype=np.int64)
    tokens[:, 0] = eos
    scores = np.zeros((bsz * beam, int(max_len.max()) + 1), dtype=np.float32)
    cands_to_ignore = np.zeros((bsz, beam), dtype=bool)
    finalized: List[List[Hypothesis]] = [[] for _ in range(n_sent)]
    finished = np.zeros(n_sent, dtype=bool)

    for step in range(int(max_len.max()) + 1):
        width = 1 if step == 0 else beam  # decoder rows per sentence: every beam is the same at step 0
        bias[eos] = NEG_INF if step < opts.min_len else eos_bias
        row_tokens = tokens[::beam, step] if width == 1 else tokens[:, step]
        cand_lp, cand_tok, eos_lp = model.step(state, row_tokens, step, bias)
        at_max = np.repeat(step >= max_len[live], width)
        nan = np.isnan(cand_lp)
        if nan.any() or at_max.any():
            cand_lp, cand_tok = cand_lp.copy(), cand_tok.copy()
            cand_lp[nan] = NEG_INF  # fairseq: NaN -> -inf
            eos_lp = np.where(np.isnan(eos_lp), NEG_INF, eos_lp)
        if at_max.any():  # only eos is allowed
            cand_lp[at_max] = NEG_INF
            cand_lp[at_max, 0] = eos_lp[at_max]
            cand_tok[at_max, 0] = eos

        # fairseq.search.BeamSearch.step, over the graph's candidates
        k = cand_lp.shape[1]
        lp = cand_lp.reshape(bsz, width, k)
        if step > 0:
            lp = lp + scores.reshape(bsz, beam, -1)[:, :, step - 1][:, :, None]
        flat_index = (np.arange(width)[None, :, None] * V + cand_tok.reshape(bsz, width, k)).reshape(bsz, -1)
        cand_scores, cand_flat = _top_candidates(lp.reshape(bsz, -1), flat_index, min(2 * beam, width * V - 1))
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

        keep = None
        if done_local:  # drop the sentences that are done
            keep = np.setdiff1d(np.arange(bsz), done_local)
            eos_mask, cand_beams = eos_mask[keep], cand_beams[keep]
            cand_scores, cand_indices = cand_scores[keep], cand_indices[keep]
            cands_to_ignore = cands_to_ignore[keep]
            kept_rows = (keep[:, None] * beam + np.arange(beam)).reshape(-1)
            scores, tokens = scores[kept_rows], tokens[kept_rows]
            live, bsz = live[keep], len(keep)
            bbsz_offsets = (np.arange(bsz) * beam)[:, None]

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
        state.reorder(step, chosen_beams, keep)

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
