#!/usr/bin/env bash
# Creates .venv-bench: the project's test venv plus what Airflow's own S3 path needs (ObjectStoragePath on s3://,
# FileTransferOperator): apache-airflow-providers-amazon[s3fs] and apache-airflow-providers-common-io.
# s3fs's aiobotocore pins botocore below the boto3/botocore of constraints.txt, so it cannot live in .venv; here
# the pins of constraints.txt apply except those overlaid by benchmarks/s3fs-constraints.txt.
#
#   bash benchmarks/s3fs-venv.sh
#   .venv-bench/bin/python benchmarks/transfer.py --size-mib 1024 \
#       --approaches s3_streaming,s3_upload_fileobj,s3_osp_copy,s3_file_transfer
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip uv
overlay=benchmarks/s3fs-constraints.txt
names=$(grep -oE '^[A-Za-z0-9_.-]+==' "$overlay" | sed 's/==$//' | paste -sd'|')
{ grep -vE "^($names)==" constraints.txt; grep -E '^[A-Za-z]' "$overlay"; } > "$VENV/constraints.txt"
VIRTUAL_ENV=$PWD/$VENV "$VENV/bin/uv" pip install -q -c "$VENV/constraints.txt" -e ".[test,test-stores]" \
  "apache-airflow-providers-amazon[s3fs]" apache-airflow-providers-common-io psutil
echo "ready: $VENV/bin/python benchmarks/transfer.py ..."
