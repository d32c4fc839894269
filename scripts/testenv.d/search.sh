# shellcheck shell=bash
# search: OpenSearch $SEARCH_VERSION, a real Lucene-based engine, single node, security off (no security plugin at
# all), on http://127.0.0.1:9200 and on the node IP for pods. The server and module jars come from Maven Central
# (`mvn dependency:copy-dependencies`, as for Kafka), laid out once into $CILVEST_CACHE/opensearch-<version>-<stamp>:
#
#   lib/                     org.opensearch:opensearch and its runtime jars, log4j-core, the plugin class loader
#   modules/transport-netty4 HTTP and transport (org.opensearch.plugin:transport-netty4-client)
#   modules/reindex          _delete_by_query, which the daily job uses (reindex-client)
#   modules/analysis-common  the common analyzers and token filters
#
# Maven Central ships each module as a plain jar: the plugin descriptor and the security policy that the
# distribution's zip carries are written here (the policy grants netty its sockets). lang-painless is left out: its
# class generation needs a wider policy, and nothing of ours runs scripts.
# OpenSearch refuses to run as root, so it runs as the system user cilvest-search (scripts/bootstrap creates it);
# data and logs live under $CILVEST_RUN/search and `down` wipes them. The Elasticsearch client we use (crate
# `elasticsearch` 9.1.0-alpha.1) sends plain `application/json`, which OpenSearch takes; no compatibility headers.

SEARCH_VERSION=2.19.6     # the newest 2.x on Maven Central that runs on Java 17 (3.x needs Java 21)
SEARCH_PORT=9200
SEARCH_TRANSPORT_PORT=9300
SEARCH_USER=cilvest-search
SEARCH_HEAP=${CILVEST_SEARCH_HEAP:-512m}
# module directory : Maven artifact of org.opensearch.plugin : plugin class
SEARCH_MODULES=(
  "transport-netty4:transport-netty4-client:org.opensearch.transport.Netty4Plugin"
  "reindex:reindex-client:org.opensearch.index.reindex.ReindexPlugin"
  "analysis-common:analysis-common:org.opensearch.analysis.common.CommonAnalysisPlugin"
)

search_stamp() { { echo "$SEARCH_VERSION"; printf '%s\n' "${SEARCH_MODULES[@]}"; } | sha256sum | cut -c1-12; }
search_cache_dir() { echo "$CILVEST_CACHE/opensearch-$SEARCH_VERSION-$(search_stamp)"; }
search_home() { echo "$CILVEST_RUN/search"; }

# search_mvn_copy DEPENDENCY... OUT: copy the runtime jars of the given artifacts (group:artifact:version) to OUT.
search_mvn_copy() {
  local out=${*: -1} work deps="" dep
  work=$(mktemp -d)
  for dep in "${@:1:$#-1}"; do
    IFS=: read -r group artifact version <<<"$dep"
    deps+="<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency>"
  done
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>dev.cilvest.testenv</groupId><artifactId>opensearch-runtime</artifactId><version>1</version>
  <packaging>pom</packaging><dependencies>$deps</dependencies></project>
EOF
  mvn -B -q -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$CILVEST_CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out" >>"$CILVEST_RUN/logs/search-install.log" 2>&1
  local rc=$?
  rm -rf "$work"
  return $rc
}

search_install() {
  local dir module name artifact class jar
  dir=$(search_cache_dir)
  id "$SEARCH_USER" >/dev/null 2>&1 || die "search: no user $SEARCH_USER (scripts/bootstrap creates it)"
  [[ -f $dir/.installed ]] && return 0
  command -v mvn >/dev/null || die "search: mvn not found"
  (
    exec 9>"$CILVEST_CACHE/search-install.lock"
    flock 9
    [[ -f $dir/.installed ]] && exit 0
    log "search: resolving OpenSearch $SEARCH_VERSION from Maven Central into $dir"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/modules"
    search_mvn_copy "org.opensearch:opensearch:$SEARCH_VERSION" "org.opensearch:opensearch-plugin-classloader:$SEARCH_VERSION" \
      "org.apache.logging.log4j:log4j-core:2.25.4" "$dir.tmp/lib" || die "search: resolving the server failed"
    for module in "${SEARCH_MODULES[@]}"; do
      IFS=: read -r name artifact class <<<"$module"
      search_mvn_copy "org.opensearch.plugin:$artifact:$SEARCH_VERSION" "$dir.tmp/modules/$name" \
        || die "search: resolving module $artifact failed"
      # A module carries only what the server lacks: the same jar twice is "jar hell" at start-up.
      for jar in "$dir.tmp/modules/$name"/*.jar; do
        [[ -f $dir.tmp/lib/$(basename "$jar") ]] && rm "$jar"
      done
      printf 'description=%s\nversion=%s\nname=%s\nclassname=%s\njava.version=17\nopensearch.version=%s\n' \
        "the $name module" "$SEARCH_VERSION" "$name" "$class" "$SEARCH_VERSION" \
        >"$dir.tmp/modules/$name/plugin-descriptor.properties"
    done
    cat >"$dir.tmp/modules/transport-netty4/plugin-security.policy" <<'EOF'
grant {
  // The HTTP and transport layers accept and make connections.
  permission java.net.SocketPermission "*", "accept,connect,resolve";
  // Netty reads the kernel's accept backlog and sets its threads' class loader.
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.lang.RuntimePermission "setContextClassLoader";
};
EOF
    [[ -f $dir.tmp/lib/opensearch-$SEARCH_VERSION.jar ]] || die "search: opensearch-$SEARCH_VERSION.jar missing after mvn"
    touch "$dir.tmp/.installed"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    log "search: $(find "$dir" -name '*.jar' | wc -l) jars cached"
  ) || exit 1
}

search_write_home() {
  local home ip
  home=$(search_home); ip=$(node_ip)
  rm -rf "$home" && mkdir -p "$home/config" "$home/plugins" "$home/data" "$home/logs" "$home/tmp"
  # The user cannot read the cache under root's home: hard links (or copies) of the read-only jars.
  cp -al "$(search_cache_dir)/lib" "$(search_cache_dir)/modules" "$home/" 2>/dev/null \
    || cp -a "$(search_cache_dir)/lib" "$(search_cache_dir)/modules" "$home/"
  cat >"$home/config/opensearch.yml" <<EOF
# Written by scripts/testenv.d/search.sh: one node, no security plugin, data thrown away by \`down\`.
cluster.name: cilvest-testenv
node.name: search-0
discovery.type: single-node
network.host: ["127.0.0.1", "$ip"]
http.port: $SEARCH_PORT
transport.port: $SEARCH_TRANSPORT_PORT
path.data: $home/data
path.logs: $home/logs
# A shared CI disk: don't turn indices read-only because other services fill it.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  cat >"$home/config/log4j2.properties" <<'EOF'
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
EOF
  chown -R "$SEARCH_USER:$SEARCH_USER" "$home"
}

search_start() {
  local home
  home=$(search_home)
  if ! is_running search && port_open "$SEARCH_PORT"; then
    die "search: port $SEARCH_PORT is taken by another process"
  fi
  search_write_home
  start_bg search setpriv --reuid="$SEARCH_USER" --regid="$SEARCH_USER" --clear-groups \
    java -Xms"$SEARCH_HEAP" -Xmx"$SEARCH_HEAP" -XX:+UseG1GC -Djava.security.manager=allow \
    -Dopensearch.path.home="$home" -Dopensearch.path.conf="$home/config" -Dopensearch.distribution.type=tar \
    -Djava.io.tmpdir="$home/tmp" -cp "$home/lib/*" org.opensearch.bootstrap.OpenSearch
  wait_for search 120 search_healthy || die "search (OpenSearch) did not become healthy"
}

search_stop() {
  stop_bg search
  rm -rf "$(search_home)"
}

# Healthy: the cluster answers and is at least yellow (one node: replicas stay unassigned).
search_healthy() {
  curl -sf --max-time 3 "http://127.0.0.1:$SEARCH_PORT/_cluster/health?wait_for_status=yellow&timeout=2s" >/dev/null 2>&1
}

search_env() {
  echo "export CILVEST_ES_URL=http://127.0.0.1:$SEARCH_PORT"
  echo "export CILVEST_ES_POD_URL=http://$(node_ip):$SEARCH_PORT"
}
