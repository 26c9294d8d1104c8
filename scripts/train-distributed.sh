#!/usr/bin/env bash
# Multi-process fairseq training on this machine's CPUs: one fairseq-train per rank (gloo),
# one log per rank; if a rank fails, every rank is stopped. Usage: --help. GPUs: docs/distributed.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"  # ROOT and PYTHON (PYTHON, else .venv, else python3)

usage() {
  cat <<'EOF'
Usage: scripts/train-distributed.sh [options] -- DATA-BIN [fairseq-train arguments...]

Starts N local CPU processes of fairseq-train, ranks 0..N-1, each with fairseq's explicit
distributed flags (fairseq's own spawning assumes CUDA):

  --cpu --distributed-world-size N --distributed-rank R --distributed-backend gloo
  --distributed-init-method tcp://127.0.0.1:PORT --distributed-no-spawn --ddp-backend legacy_ddp
  --load-checkpoint-on-all-dp-ranks

Your arguments come after --; they may set another --ddp-backend, nothing else of the above.
(--load-checkpoint-on-all-dp-ranks makes every rank read the checkpoint it resumes from:
fairseq's default, rank 0 reading it and broadcasting it, fails under torch >= 2.6 because
the receiving ranks unpickle the broadcast with weights_only=True.)
Each rank writes its output to LOG-DIR/train-rank-R.log (fairseq logs progress on rank 0
only). The batches of one update are split over the ranks, so an update sees N times the
--max-tokens of one process. Add --sync-norm-stats to share the normalizers' batch
statistics across the ranks (README, "Multi-process training").

Options:
  --nproc N       number of processes (ranks), a whole number >= 1 (default: 2)
  --log-dir DIR   where the per-rank logs go (default: the --save-dir of your arguments,
                  else ./checkpoints, fairseq's default)
  --port PORT     rendezvous port on 127.0.0.1 (default: a free one, chosen automatically)
  --threads T     OMP_NUM_THREADS / MKL_NUM_THREADS of each process (default: the current
                  OMP_NUM_THREADS, else 1)
  --command CMD   the training command, split on spaces (default: fairseq-train run by the
                  scripts' interpreter: $PYTHON, else .venv/bin/python, else python3)
  -h, --help      show this help

Exit status: 0 when every rank finished; otherwise the failed rank's exit status, after
stopping the other ranks, with the rank and its log named on stderr.

Example (2 processes):
  scripts/train-distributed.sh --nproc 2 -- data-bin/multi30k --user-dir un_fairseq \
      --arch transformer_un_iwslt_de_en --norm-type un --sync-norm-stats \
      --optimizer adam --lr 5e-4 --max-tokens 4096 --save-dir checkpoints/un-2proc
EOF
}

die() { echo "train-distributed: $*" >&2; exit 2; }

nproc=2 log_dir="" port="" threads="${OMP_NUM_THREADS:-1}" command=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --nproc) [[ $# -ge 2 ]] || die "--nproc needs a value"; nproc="$2"; shift 2 ;;
    --log-dir) [[ $# -ge 2 ]] || die "--log-dir needs a value"; log_dir="$2"; shift 2 ;;
    --port) [[ $# -ge 2 ]] || die "--port needs a value"; port="$2"; shift 2 ;;
    --threads) [[ $# -ge 2 ]] || die "--threads needs a value"; threads="$2"; shift 2 ;;
    --command) [[ $# -ge 2 ]] || die "--command needs a value"; command="$2"; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the launcher's options come before --, fairseq-train's after it; see --help)" ;;
  esac
done
[[ "$nproc" =~ ^[0-9]+$ && "$nproc" -ge 1 ]] || die "--nproc='$nproc' is not allowed: give a whole number >= 1"
[[ "$threads" =~ ^[0-9]+$ && "$threads" -ge 1 ]] || die "--threads='$threads' is not allowed: give a whole number >= 1"
[[ -z "$port" || ( "$port" =~ ^[0-9]+$ && "$port" -ge 1 && "$port" -le 65535 ) ]] \
  || die "--port='$port' is not allowed: give a port number in 1..65535"
[[ $# -gt 0 ]] || die "no fairseq-train arguments: give them after -- (see --help)"
train_args=("$@")
for arg in "${train_args[@]}"; do
  case "$arg" in
    --distributed-world-size|--distributed-rank|--distributed-init-method|--distributed-no-spawn|--distributed-backend|--distributed-port|--device-id)
      die "'$arg' is set by the launcher: remove it from the fairseq-train arguments" ;;
  esac
done

if [[ -z "$command" ]]; then
  command="$PYTHON -m fairseq_cli.train"
fi
read -r -a cmd <<< "$command"

if [[ -z "$log_dir" ]]; then
  log_dir=checkpoints
  for ((i = 0; i < ${#train_args[@]} - 1; i++)); do
    [[ "${train_args[i]}" == --save-dir ]] && log_dir="${train_args[i + 1]}"
  done
fi
mkdir -p "$log_dir"

if [[ -z "$port" ]]; then
  port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

# Each rank in its own process group (job control), so that stopping a rank stops its
# data-loader workers too, and Ctrl-C reaches the launcher, which stops every rank.
set -m
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap 'echo "train-distributed: interrupted, stopping every rank" >&2; stop_all; exit 130' INT TERM

echo "train-distributed: $nproc ranks on 127.0.0.1:$port, logs in $log_dir/train-rank-{0..$((nproc - 1))}.log"
for ((rank = 0; rank < nproc; rank++)); do
  OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "${cmd[@]}" --ddp-backend legacy_ddp \
    --load-checkpoint-on-all-dp-ranks "${train_args[@]}" \
    --cpu --distributed-world-size "$nproc" --distributed-rank "$rank" --distributed-backend gloo \
    --distributed-init-method "tcp://127.0.0.1:$port" --distributed-no-spawn \
    > "$log_dir/train-rank-$rank.log" 2>&1 &
  pids+=("$!")
done

# Poll (portable to any bash): the first rank to fail stops the others.
remaining=$nproc
declare -A done_rank=()
while [[ $remaining -gt 0 ]]; do
  for ((rank = 0; rank < nproc; rank++)); do
    [[ -n "${done_rank[$rank]:-}" ]] && continue
    pid="${pids[rank]}"
    kill -0 "$pid" 2>/dev/null && continue
    status=0
    wait "$pid" || status=$?
    done_rank[$rank]=1
    remaining=$((remaining - 1))
    if [[ $status -ne 0 ]]; then
      log="$log_dir/train-rank-$rank.log"
      stop_all
      {
        echo "train-distributed: rank $rank failed with exit status $status; stopped the other ranks."
        echo "train-distributed: its log: $log (last lines below)"
        tail -n 15 "$log" | sed 's/^/  | /'
      } >&2
      exit "$status"
    fi
  done
  [[ $remaining -gt 0 ]] && sleep 0.5
done
echo "train-distributed: all $nproc ranks finished"
