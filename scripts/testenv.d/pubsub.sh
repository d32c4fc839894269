# shellcheck shell=bash
# pubsub: Google's Pub/Sub emulator (a Java server from the Google Cloud SDK that the machine image ships) on
# 127.0.0.1:8085 (every address: pods reach it on the node IP), serving gRPC and the REST API (v1) that
# workers/src/bus/pubsub.rs speaks. Nothing is downloaded:
# the emulator comes with the image, and a machine without it fails here with the path it looked at.
# It ignores subscription filters and dead-letter policies, and keeps its state in memory (a restart starts
# empty). Exported: PUBSUB_EMULATOR_HOST, which the workers read as "this emulator, without OAuth".

PUBSUB_PORT=8085
PUBSUB_EMULATOR=${CILVEST_PUBSUB_EMULATOR:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}

pubsub_install() {
  [[ -x $PUBSUB_EMULATOR ]] || die "pubsub: the emulator $PUBSUB_EMULATOR is missing (install the Google Cloud SDK \
component pubsub-emulator, or set CILVEST_PUBSUB_EMULATOR to its cloud-pubsub-emulator script)"
  command -v java >/dev/null || die "pubsub: java not found (the emulator needs a JRE)"
}

# Health: the REST API answers a listing of an arbitrary project.
pubsub_healthy() {
  curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$PUBSUB_PORT/v1/projects/cilvest-health/topics"
}

pubsub_start() {
  if ! is_running pubsub && port_open "$PUBSUB_PORT"; then
    die "pubsub: 127.0.0.1:$PUBSUB_PORT is taken by a process testenv did not start"
  fi
  mkdir -p "$CILVEST_RUN/pubsub"
  # It keeps topics and messages in memory and takes no data directory; run it from its own directory anyway,
  # so whatever it writes to its working directory lands under $CILVEST_RUN.
  (cd "$CILVEST_RUN/pubsub" && start_bg pubsub "$PUBSUB_EMULATOR" --host=0.0.0.0 --port="$PUBSUB_PORT")
  wait_for pubsub 60 pubsub_healthy || die "pubsub did not become healthy"
}

pubsub_stop() {
  stop_bg pubsub
  rm -rf "$CILVEST_RUN/pubsub"
}

pubsub_env() {
  echo "export PUBSUB_EMULATOR_HOST=127.0.0.1:$PUBSUB_PORT"
  echo "export CILVEST_PUBSUB_POD_HOST=$(node_ip):$PUBSUB_PORT"
}
