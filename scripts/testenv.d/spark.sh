# shellcheck shell=bash
# Spark: pyspark 4.x from the shared venv, run as `spark-submit --master local[2]` on the machine's
# Java 17; and pyspark 3.5 from a venv of its own (requirements-spark35.txt), the line Dataproc 2.2 images run, for
# the parity test to run transform.py on both (CILVEST_SPARK35_* variables). There is no server: start writes the Spark config and checks once that spark-submit runs;
# the tests call $CILVEST_SPARK_SUBMIT themselves after `eval "$(scripts/testenv env)"`.
# spark-submit needs PYSPARK_PYTHON (or SPARK_HOME) to find the pip-installed Spark: without it,
# it asks the python3 on PATH, which has no pyspark. spark_env exports both.
# Sourced by scripts/testenv; uses the shared venv from common.sh.

spark_dir() { echo "$CILVEST_RUN/spark"; }
spark_conf_dir() { echo "$CILVEST_RUN/spark/conf"; }

spark_home() {
  local home
  for home in "$(py_venv)"/lib/python3*/site-packages/pyspark; do
    echo "$home"; return 0
  done
}

# spark_vars: the environment spark-submit needs, one NAME=VALUE a line.
spark_vars() {
  local venv
  venv=$(py_venv)
  echo "PYSPARK_PYTHON=$venv/bin/python"
  echo "PYSPARK_DRIVER_PYTHON=$venv/bin/python"
  echo "SPARK_HOME=$(spark_home)"
  echo "SPARK_CONF_DIR=$(spark_conf_dir)"
  echo "SPARK_LOCAL_IP=127.0.0.1"
  echo "SPARK_LOCAL_DIRS=$(spark_dir)/tmp"
}

SPARK35_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-spark35.txt"
spark35_venv() { echo "$CILVEST_CACHE/spark35-venv-$(sha256sum <"$SPARK35_REQUIREMENTS" | cut -c1-16)"; }
spark35_home() {
  local home
  for home in "$(spark35_venv)"/lib/python3*/site-packages/pyspark; do
    echo "$home"; return 0
  done
}

# The pyspark 3.5 venv, once (pip downloads about 320 MB); older spark35-venv-* directories are removed after.
spark35_install() {
  local venv start=$SECONDS old
  venv=$(spark35_venv)
  [[ -f $venv/.complete ]] && return 0
  (
    flock 9
    [[ -f $venv/.complete ]] && exit 0
    log "building the pyspark 3.5 venv $venv (pip install -r $SPARK35_REQUIREMENTS)"
    rm -rf "$venv"
    "${CILVEST_PYTHON3:-python3}" -m venv "$venv" || die "python3 -m venv failed"
    "$venv/bin/python" -m pip install --quiet --require-virtualenv -r "$SPARK35_REQUIREMENTS" \
      >"$CILVEST_RUN/logs/pip-spark35.log" 2>&1 || { tail -n 30 "$CILVEST_RUN/logs/pip-spark35.log" >&2; die "pip install pyspark 3.5 failed"; }
    touch "$venv/.complete"
    for old in "$CILVEST_CACHE"/spark35-venv-*; do
      if [[ $old != "$venv" && -d $old ]]; then rm -rf "$old"; fi
    done
    log "pyspark 3.5 venv ready in $((SECONDS - start))s"
  ) 9>"$CILVEST_CACHE/spark35-venv.lock"
}

spark_install() {
  py_venv_install || return 1
  spark35_install || return 1
  command -v java >/dev/null || die "spark needs Java 17+ on PATH (Debian: openjdk-17-jre-headless)"
}

# Start: write spark-defaults.conf, run `spark-submit --version` once (seconds: it starts a JVM) and
# record the venv it ran from; spark_healthy only checks that record, so `status` stays fast.
spark_start() {
  local dir conf venv out vars
  dir=$(spark_dir); conf=$(spark_conf_dir); venv=$(py_venv)
  mkdir -p "$dir/tmp" "$dir/warehouse" "$conf"
  rm -f "$dir/ready"
  # Defaults for every spark-submit of the tests: local, loopback only, no UI, few shuffle partitions.
  cat >"$conf/spark-defaults.conf" <<EOF
spark.master                      local[2]
spark.driver.host                 127.0.0.1
spark.driver.bindAddress          127.0.0.1
spark.ui.enabled                  false
spark.sql.shuffle.partitions      2
spark.sql.session.timeZone        UTC
spark.sql.warehouse.dir           $dir/warehouse
EOF
  mapfile -t vars < <(spark_vars)
  if ! out=$(cd "$dir" && env "${vars[@]}" "$venv/bin/spark-submit" --version 2>&1); then
    printf '%s\n' "$out" >>"$CILVEST_RUN/logs/spark.log"
    tail -n 20 "$CILVEST_RUN/logs/spark.log" >&2
    die "spark-submit --version failed"
  fi
  printf '%s\n' "$out" >>"$CILVEST_RUN/logs/spark.log"
  echo "$venv" >"$dir/ready"
}

spark_stop() {
  rm -rf "$(spark_dir)"
}

spark_healthy() {
  local venv dir
  venv=$(py_venv); dir=$(spark_dir)
  [[ -x $venv/bin/spark-submit && -f $venv/.complete && -f $dir/ready && -f $(spark_conf_dir)/spark-defaults.conf ]] \
    && [[ $(cat "$dir/ready") == "$venv" && -f $(spark35_venv)/.complete ]]
}

spark_env() {
  local venv kv
  venv=$(py_venv)
  printf 'export CILVEST_SPARK_SUBMIT=%q\n' "$venv/bin/spark-submit"
  printf 'export CILVEST_PYTHON=%q\n' "$venv/bin/python"
  spark_vars | while IFS= read -r kv; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
  printf 'export CILVEST_SPARK35_SUBMIT=%q\n' "$(spark35_venv)/bin/spark-submit"
  printf 'export CILVEST_SPARK35_PYTHON=%q\n' "$(spark35_venv)/bin/python"
  printf 'export CILVEST_SPARK35_HOME=%q\n' "$(spark35_home)"
}
