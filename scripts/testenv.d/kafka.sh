# shellcheck shell=bash
# Kafka: one Apache Kafka 4.x node in KRaft mode (combined broker + controller) on the machine's Java 17.
# The jars come from Maven Central: scripts/testenv.d/kafka/pom.xml names the broker (kafka_2.13), the CLI tools
# (kafka-tools) and a log4j2 backend; `mvn dependency:copy-dependencies` copies them and their runtime
# dependencies into $CILVEST_CACHE/kafka-<version>/libs, once per version (and pom change).
#
#   PLAINTEXT 127.0.0.1:19092 (clients), CONTROLLER 127.0.0.1:19093 (KRaft quorum),
#   POD <node IP>:19094 (plaintext, advertised as itself: for pods on the real node, see node.sh),
#   SCRAM 127.0.0.1:19095 (SASL_SSL, SCRAM-SHA-512), MTLS 127.0.0.1:19096 (SSL, client certificate required):
#   the two kinds of Strimzi listener with authentication. Their broker certificate and a test CA are made with the
#   openssl CLI into $CILVEST_RUN/kafka/tls (ca.crt, ca.key: tests sign client certificates with them).
#   ACLs are enforced (StandardAuthorizer); the anonymous principal of the plaintext listeners is a super user, so
#   only the SCRAM and MTLS users are held to their ACLs, which tests grant as Strimzi's User Operator would.
#   $CILVEST_RUN/kafka (= CILVEST_KAFKA_HOME): libs -> the cached jars, config/, data/ (the log dir), bin/
#
# Besides the five service functions:
#   kafka_restart [--kill]    stop the broker (gracefully, or SIGKILL with --kill), start it again on the same data,
#                             wait until healthy; for fault tests, also `bash scripts/testenv.d/kafka.sh restart [--kill]`
#   kafka_run_class CLASS...  run a Kafka CLI class (e.g. org.apache.kafka.tools.TopicCommand) on the cached jars;
#                             $CILVEST_KAFKA_HOME/bin/kafka-run-class does the same from anywhere

KAFKA_VERSION=4.4.0
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
KAFKA_POD_PORT=19094
KAFKA_SCRAM_PORT=19095
KAFKA_MTLS_PORT=19096
KAFKA_HEAP=${CILVEST_KAFKA_HEAP:-768m}
KAFKA_JVM_OPTS=${CILVEST_KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20}
KAFKA_POM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka/pom.xml"

kafka_cache_dir() { echo "$CILVEST_CACHE/kafka-$KAFKA_VERSION"; }
kafka_home() { echo "$CILVEST_RUN/kafka"; }
kafka_java() { echo "${JAVA_HOME:+$JAVA_HOME/bin/}java"; }

# What the cache was built from: the version and the pom's content.
kafka_install_stamp() { { echo "$KAFKA_VERSION"; cat "$KAFKA_POM"; } | sha256sum | cut -c1-16; }

kafka_install() {
  local dir stamp
  dir=$(kafka_cache_dir)
  stamp=$(kafka_install_stamp)
  [[ -f $dir/.installed && $(<"$dir/.installed") == "$stamp" ]] && return 0
  command -v mvn >/dev/null || die "kafka: mvn not found (apt-get install maven)"
  command -v "$(kafka_java)" >/dev/null || die "kafka: java not found"
  (
    exec 9>"$CILVEST_CACHE/kafka-install.lock"
    flock 9
    [[ -f $dir/.installed && $(<"$dir/.installed") == "$stamp" ]] && exit 0
    log "kafka: resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $dir"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" -Dmaven.repo.local="$CILVEST_CACHE/m2" \
      -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir.tmp/libs" >"$CILVEST_RUN/logs/kafka-install.log" 2>&1; then
      tail -n 30 "$CILVEST_RUN/logs/kafka-install.log" >&2
      die "kafka: mvn dependency:copy-dependencies failed (log: $CILVEST_RUN/logs/kafka-install.log)"
    fi
    [[ -f $dir.tmp/libs/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
    echo "$stamp" >"$dir.tmp/.installed"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    log "kafka: $(find "$dir/libs" -name '*.jar' | wc -l) jars cached"
  ) || exit 1
}

# A test CA and the broker's certificate (SAN 127.0.0.1 and localhost), once per home: PEM files Kafka reads as its
# keystore (unencrypted PKCS#8 key + certificate) and truststore (the CA).
kafka_write_tls() {
  local tls=$1
  [[ -f $tls/broker.pem ]] && return 0
  command -v openssl >/dev/null || die "kafka: openssl not found (apt-get install openssl)"
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=cilvest-testenv-ca" \
      -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout broker.key -out broker.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
    openssl x509 -req -sha256 -days 3650 -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile broker.ext -out broker.crt
    cat broker.key broker.crt >broker.pem
    chmod 600 ca.key broker.key broker.pem
  ) >>"$CILVEST_RUN/logs/kafka.log" 2>&1 || die "kafka: making the test certificates failed (log: $CILVEST_RUN/logs/kafka.log)"
}

# Writes the runtime home: libs link, server and log4j2 configs, the run-class wrapper. Data is left alone.
kafka_write_home() {
  local home libs
  home=$(kafka_home)
  libs="$(kafka_cache_dir)/libs"
  mkdir -p "$home/config" "$home/data" "$home/bin"
  ln -sfn "$libs" "$home/libs"
  kafka_write_tls "$home/tls"
  cat >"$home/config/server.properties" <<EOF
# Written by scripts/testenv.d/kafka.sh: single-node KRaft, broker and controller in one process.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,POD://$(node_ip):$KAFKA_POD_PORT,SCRAM://127.0.0.1:$KAFKA_SCRAM_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,POD://$(node_ip):$KAFKA_POD_PORT,SCRAM://127.0.0.1:$KAFKA_SCRAM_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,POD:PLAINTEXT,SCRAM:SASL_SSL,MTLS:SSL
ssl.keystore.type=PEM
ssl.keystore.location=$home/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$home/tls/ca.crt
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.scram.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.mtls.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
log.dirs=$home/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted broker must wait out its old session before it can register again.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=500
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
  cat >"$home/config/log4j2.properties" <<'EOF'
# Broker logging: everything to stdout, which testenv sends to $CILVEST_RUN/logs/kafka.log.
name=cilvest-kafka
appender.out.type=Console
appender.out.name=STDOUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=STDOUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.statechange.name=state.change.logger
logger.statechange.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=INFO
EOF
  cat >"$home/config/tools-log4j2.properties" <<'EOF'
# CLI tools: warnings and errors only, to stderr.
name=cilvest-kafka-tools
appender.err.type=Console
appender.err.name=STDERR
appender.err.target=SYSTEM_ERR
appender.err.layout.type=PatternLayout
appender.err.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.err.ref=STDERR
EOF
  cat >"$home/bin/kafka-run-class" <<EOF
#!/usr/bin/env bash
# kafka-run-class CLASS ARGS...: run a Kafka CLI class on the cached jars, e.g.
#   kafka-run-class org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$KAFKA_PORT --list
exec $(kafka_java) -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \\
  -Dlog4j2.configurationFile="$home/config/tools-log4j2.properties" -cp "$home/libs/*" "\$@"
EOF
  chmod +x "$home/bin/kafka-run-class"
}

kafka_run_class() { "$(kafka_home)/bin/kafka-run-class" "$@"; }

# A real round-trip on the client listener: a Metadata request (v4, all topics) must come back naming this broker
# (listed only once it is registered and unfenced) and an active controller.
kafka_metadata_ok() {
  python3 - "$KAFKA_PORT" <<'EOF'
import socket, struct, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=3)
s.settimeout(3)
client = b"cilvest-testenv"
body = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", -1, 0)
s.sendall(struct.pack(">i", len(body)) + body)
def read(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf
data = read(struct.unpack(">i", read(4))[0])
corr, _throttle, nbrokers = struct.unpack_from(">iii", data, 0)
off, ports = 12, []
for _ in range(nbrokers):
    _node, hlen = struct.unpack_from(">ih", data, off); off += 6 + hlen
    bport, rlen = struct.unpack_from(">ih", data, off); off += 6 + max(rlen, 0)
    ports.append(bport)
clen = struct.unpack_from(">h", data, off)[0]; off += 2 + max(clen, 0)
controller = struct.unpack_from(">i", data, off)[0]
sys.exit(0 if corr == 7 and port in ports and controller >= 0 else 1)
EOF
}

# Without python3, the Kafka CLI does a round-trip instead (a JVM start, ~2 s).
kafka_healthy() {
  port_open "$KAFKA_PORT" || return 1
  if command -v python3 >/dev/null; then
    kafka_metadata_ok >/dev/null 2>&1
  else
    kafka_run_class org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1
  fi
}

kafka_start() {
  local home
  home=$(kafka_home)
  if ! is_running kafka && port_open "$KAFKA_PORT"; then
    die "kafka: 127.0.0.1:$KAFKA_PORT is taken by a process testenv did not start"
  fi
  kafka_write_home
  if [[ ! -f $home/data/meta.properties ]]; then
    local cluster_id
    # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding.
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    log "kafka: formatting $home/data (cluster $cluster_id)"
    "$(kafka_java)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$home/config/tools-log4j2.properties" -cp "$home/libs/*" \
      kafka.tools.StorageTool format --standalone --cluster-id "$cluster_id" \
      --config "$home/config/server.properties" >>"$CILVEST_RUN/logs/kafka.log" 2>&1 ||
      { tail -n 20 "$CILVEST_RUN/logs/kafka.log" >&2; die "kafka: storage format failed"; }
  fi
  # shellcheck disable=SC2086 # KAFKA_JVM_OPTS is a list of options
  start_bg kafka "$(kafka_java)" -Xms256m "-Xmx$KAFKA_HEAP" $KAFKA_JVM_OPTS \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$home/config/log4j2.properties" \
    -cp "$home/libs/*" kafka.Kafka "$home/config/server.properties"
  wait_for kafka 120 kafka_healthy || die "kafka did not become healthy"
}

# Stop the broker process only; its data stays.
kafka_stop_process() { stop_bg kafka; }

kafka_stop() {
  kafka_stop_process
  rm -rf "$(kafka_home)"
}

# kafka_restart [--kill]: stop (gracefully, or SIGKILL the JVM with --kill), start on the same data, wait healthy.
kafka_restart() {
  if [[ ${1:-} == --kill && -f $CILVEST_RUN/pids/kafka ]]; then
    kill -KILL -- "-$(cat "$CILVEST_RUN/pids/kafka")" 2>/dev/null || true
  fi
  kafka_stop_process
  wait_for kafka 30 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT) 2>/dev/null" ||
    die "kafka: port $KAFKA_PORT still open after stop"
  kafka_start
}

kafka_env() {
  echo "export CILVEST_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  echo "export CILVEST_KAFKA_POD_BOOTSTRAP=$(node_ip):$KAFKA_POD_PORT"
  echo "export CILVEST_KAFKA_HOME=$(kafka_home)"
  echo "export CILVEST_KAFKA_SCRAM_BOOTSTRAP=127.0.0.1:$KAFKA_SCRAM_PORT"
  echo "export CILVEST_KAFKA_MTLS_BOOTSTRAP=127.0.0.1:$KAFKA_MTLS_PORT"
  echo "export CILVEST_KAFKA_TLS_DIR=$(kafka_home)/tls"
}

# Run as a command (fault tests): bash scripts/testenv.d/kafka.sh restart [--kill]
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=common.sh
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  case ${1:-} in
    restart) shift; kafka_restart "$@" ;;
    *) die "usage: $0 restart [--kill]" ;;
  esac
fi
