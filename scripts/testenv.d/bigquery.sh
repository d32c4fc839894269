# shellcheck shell=bash
# BigQuery: bqemulator (PyPI; DuckDB + SQLGlot) serving the BigQuery REST API v2 on
# http://127.0.0.1:9050/bigquery/v2 (every address: pods reach it on the node IP; gRPC Storage Read/Write API on
# 127.0.0.1:9060), project cilvest-test.
# Data lives in a DuckDB file under $CILVEST_RUN/bigquery/data (persists across an emulator restart,
# wiped by `down`). Load jobs resolve gs://BUCKET/PATH to $CILVEST_BQ_GCS_LOCAL_ROOT/BUCKET/PATH, where the GCS
# emulator mirrors its objects (gcs.sh).
# Sourced by scripts/testenv; uses the shared venv from common.sh.

BQ_REST_PORT=9050
BQ_GRPC_PORT=9060
BQ_PROJECT=cilvest-test

bq_dir() { echo "$CILVEST_RUN/bigquery"; }

# bqemulator runs `INSTALL spatial` (mandatory) and `INSTALL avro` at start. Offline those succeed only
# when the extension files are already in DuckDB's extension directory, so copy them there from the
# duckdb-extension-* wheels: $HOME/.duckdb/extensions/v<duckdb version>/<platform>/. Idempotent.
bq_install_duckdb_extensions() {
  "$(py_venv)/bin/python" - <<'PY' || die "could not place the DuckDB extensions"
import filecmp, os, pathlib, shutil, sys
import duckdb, duckdb_extension_avro, duckdb_extension_spatial

version = "v" + duckdb.__version__
platform = duckdb.sql("PRAGMA platform").fetchone()[0]
dest = pathlib.Path(os.path.expanduser("~")) / ".duckdb" / "extensions" / version / platform
dest.mkdir(parents=True, exist_ok=True)
for pkg in (duckdb_extension_spatial, duckdb_extension_avro):
    files = list((pathlib.Path(pkg.__file__).parent / "extensions" / version).glob("*.duckdb_extension"))
    if not files:
        sys.exit(f"{pkg.__name__} has no extension for duckdb {version}")
    for src in files:
        target = dest / src.name
        if not (target.exists() and filecmp.cmp(src, target, shallow=True)):
            tmp = target.with_name(target.name + ".tmp")
            shutil.copy2(src, tmp)  # keeps mtime: the next check is a stat
            os.replace(tmp, target)
            print(f"[testenv] copied {src.name} to {dest}", file=sys.stderr)
PY
}

bigquery_install() {
  py_venv_install || return 1
  bq_install_duckdb_extensions
}

bigquery_start() {
  local dir venv
  dir=$(bq_dir); venv=$(py_venv)
  if ! is_running bigquery && { port_open "$BQ_REST_PORT" || port_open "$BQ_GRPC_PORT"; }; then
    die "bigquery: port $BQ_REST_PORT or $BQ_GRPC_PORT is taken by another process"
  fi
  mkdir -p "$dir/data" "$(bq_gcs_root)" "$dir/uploads"
  # Run from $dir so that no stray .bqemu.toml in the caller's directory is picked up.
  start_bg bigquery env -C "$dir" \
    BQEMU_GCS_LOCAL_ROOT="$(bq_gcs_root)" BQEMU_UPLOAD_STAGING_DIR="$dir/uploads" \
    "$venv/bin/bqemulator" start \
    --rest-host 0.0.0.0 --rest-port "$BQ_REST_PORT" \
    --grpc-host 127.0.0.1 --grpc-port "$BQ_GRPC_PORT" \
    --project "$BQ_PROJECT" --persistent --data-dir "$dir/data" \
    --log-format console --log-level info
  wait_for bigquery 60 bigquery_healthy
}

bigquery_stop() {
  stop_bg bigquery
  rm -rf "$(bq_dir)" "$(bq_gcs_root)"
}

# Healthy: /readyz answers 200 (DuckDB answers SELECT 1 and the catalog lists datasets).
bigquery_healthy() {
  curl -sf --max-time 3 "http://127.0.0.1:$BQ_REST_PORT/readyz" >/dev/null 2>&1
}

bigquery_env() {
  echo "export CILVEST_BQ_URL=http://127.0.0.1:$BQ_REST_PORT"
  echo "export CILVEST_BQ_PROJECT=$BQ_PROJECT"
  printf 'export CILVEST_BQ_GCS_LOCAL_ROOT=%q\n' "$(bq_gcs_root)"
  echo "export CILVEST_BQ_POD_URL=http://$(node_ip):$BQ_REST_PORT"
}
