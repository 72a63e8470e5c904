#!/usr/bin/env bash
# Multi-node training with Composer's launcher: run this same command on every node, changing NODE_RANK.
#
#   # node 0 (its address must be reachable from the others):
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=10.0.0.1 scripts/launch/multinode.sh yamls/pretrain/replit-3b.yaml
#   # nodes 1..3:
#   NNODES=4 NODE_RANK=1 MASTER_ADDR=10.0.0.1 scripts/launch/multinode.sh yamls/pretrain/replit-3b.yaml
#
# Any further arguments are key=value overrides for the YAML. Every node needs the same code, environment
# and config, and the data either on shared storage or behind the same `remote` (streaming caches it
# locally per node). Checkpoints should go to shared storage or an object store (save_folder=s3://...).
# If a node is lost, the others exit with status 3 ("lost contact with another process") within seconds, or
# after dist_timeout=SECONDS (default 600) if it is unreachable; rerun this command on every node to resume.
#
#   NNODES        number of nodes (default 1)
#   NODE_RANK     this node's index, 0..NNODES-1 (default 0)
#   GPUS_PER_NODE processes per node (default: the number of visible GPUs)
#   MASTER_ADDR   node 0's address (default 127.0.0.1)      MASTER_PORT   a free port on node 0 (default 29500)
#   PYTHON        the environment's interpreter (default: python on PATH)
set -euo pipefail

CONFIG=${1:?usage: scripts/launch/multinode.sh CONFIG.yaml [key=value ...]}
shift
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

echo "node $NODE_RANK of $NNODES: $GPUS_PER_NODE processes, world size $((NNODES * GPUS_PER_NODE)), master $MASTER_ADDR:$MASTER_PORT"
# `python -m composer.cli.launcher` is the `composer` command without depending on its script's shebang.
exec "${PYTHON:-python}" -m composer.cli.launcher \
  --world_size "$((NNODES * GPUS_PER_NODE))" \
  --node_rank "$NODE_RANK" \
  --nproc "$GPUS_PER_NODE" \
  --master_addr "$MASTER_ADDR" \
  --master_port "$MASTER_PORT" \
  "$REPO/train/train.py" "$CONFIG" "$@"
