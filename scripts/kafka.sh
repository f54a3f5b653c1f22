#!/usr/bin/env bash
# A throwaway single-node Kafka (KRaft, combined broker+controller) for tests
# and the demo, run straight from the Maven Central jars: no tarball, no
# system service.
#
#   scripts/kafka.sh fetch             resolve the jars into the cache (once)
#   scripts/kafka.sh start DIR         start a broker on a free 127.0.0.1 port;
#                                      writes DIR/bootstrap, DIR/kafka.pid
#   scripts/kafka.sh stop DIR          SIGTERM, then SIGKILL after a timeout
#   scripts/kafka.sh restart DIR [--kill]  stop (or SIGKILL) and start again
#                                      on the same ports with the same data
#   scripts/kafka.sh status DIR        exit 0 when it is running
#   scripts/kafka.sh tools-classpath   classpath for Kafka's CLI tools, e.g.
#       java -cp "$(scripts/kafka.sh tools-classpath)" \
#         org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --help
#   scripts/kafka.sh connect-classpath  classpath of Kafka Connect with
#       Debezium's JDBC sink connector (fetched once), for the ingest
#       benchmark's peer
#   scripts/kafka.sh tool CLASS ARGS...  run one of them with a small, fast
#       JVM, e.g. `tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
#       --bootstrap-server 127.0.0.1:PORT --list` (kafka-consumer-groups.sh)
#
# KJB_KAFKA_TLS_DIR=TLS, a directory holding ca.pem, server.pem (the
# certificate chain) and server.key (PKCS#8, unencrypted), gives the broker
# two more listeners on free 127.0.0.1 ports: SSL (server authentication)
# and SASL_SSL (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, one user). `start`
# then also writes DIR/bootstrap.ssl, DIR/bootstrap.sasl_ssl, DIR/sasl.user
# and DIR/sasl.password. Brokers and the controller keep talking PLAINTEXT.
#
# Environment: KJB_CACHE_DIR (default ~/.cache/kjb), KJB_KAFKA_HEAP (512m),
# KJB_KAFKA_PARTITIONS (partitions of auto-created topics, 1),
# KJB_KAFKA_START_TIMEOUT (240 s), KJB_KAFKA_STOP_TIMEOUT (30 s),
# KJB_KAFKA_CDS=0 (no class-data-sharing archive).
#
# KJB_KAFKA_OAUTH_JWKS_URL=URL gives the broker one more listener on a free
# 127.0.0.1 port, SASL_PLAINTEXT with OAUTHBEARER alone, whose tokens Kafka's
# own OAuthBearerValidatorCallbackHandler checks against the keys served at
# URL (the only URL the broker may fetch), with no clock skew allowed, and
# with KJB_KAFKA_OAUTH_ISSUER and KJB_KAFKA_OAUTH_AUDIENCE as the expected
# `iss` and `aud` when set. A client must re-authenticate with a fresh token
# before its token expires. `start` then also writes DIR/bootstrap.oauth.
set -euo pipefail

KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3
# The newest Debezium whose JDBC sink resolves from Maven Central with all
# its dependencies (3.6.x lacks some of them there).
DEBEZIUM_VERSION=3.5.0.Final
CACHE_DIR=${KJB_CACHE_DIR:-$HOME/.cache/kjb}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
CONNECT_HOME=$CACHE_DIR/kafka-connect-$KAFKA_VERSION

die() { echo "kafka.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
  exit "${1:-2}"
}

# A pom is generated rather than stored so that the cache holds everything
# a fetch needs; its hash goes into the stamp so that a change of version
# or dependency list re-fetches.
dependency() {
  printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' "$@"
}

# Kafka logs through slf4j 1.7 but the Maven artifacts carry no binding;
# the binary distribution ships log4j's.
broker_dependencies() {
  dependency org.apache.kafka kafka_2.13 "$KAFKA_VERSION"
  dependency org.apache.kafka kafka-tools "$KAFKA_VERSION"
  dependency org.apache.logging.log4j log4j-slf4j-impl "$LOG4J_VERSION"
}

# Kafka Connect with Debezium's JDBC sink, the peer of tests/bench/ingest.py.
connect_dependencies() {
  dependency org.apache.kafka connect-runtime "$KAFKA_VERSION"
  dependency io.debezium debezium-connector-jdbc "$DEBEZIUM_VERSION"
  dependency org.apache.logging.log4j log4j-slf4j-impl "$LOG4J_VERSION"
}

write_pom() {
  local name=$1 dependencies=$2
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kjb</groupId>
  <artifactId>kjb-$name</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$dependencies
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

# fetch_jars HOME NAME DEPENDENCIES JAR...: resolves DEPENDENCIES with their
# runtime dependencies into HOME/libs, once, and checks that each JAR is
# among them.
fetch_jars() {
  local home=$1 name=$2 dependencies=$3 pom stamp want tmp jar
  shift 3
  pom=$(write_pom "${home##*/}" "$dependencies")
  want=$(printf '%s' "$pom" | sha256sum | cut -d' ' -f1)
  stamp=$home/.fetched
  if [[ -f $stamp && $(cat "$stamp") == "$want" && -d $home/libs ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (run scripts/deps.sh)"
  mkdir -p "$home"
  # Several test sessions may start at once on a fresh machine.
  exec 9>"$home/.fetch.lock"
  flock 9
  if [[ -f $stamp && $(cat "$stamp") == "$want" && -d $home/libs ]]; then
    exec 9>&-
    return 0
  fi
  printf '%s\n' "$pom" >"$home/pom.xml"
  echo "kafka.sh: fetching the $name jars from Maven Central into $home/libs" >&2
  tmp=$home/libs.tmp.$$
  rm -rf "$tmp"
  if ! mvn -B -Dstyle.color=never -f "$home/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$home/fetch.log" 2>&1; then
    tail -n 40 "$home/fetch.log" >&2
    rm -rf "$tmp"
    die "could not resolve the $name jars with Maven (log: $home/fetch.log)"
  fi
  for jar in "$@"; do
    [[ -f $tmp/$jar ]] || die "Maven finished but $jar is missing from $tmp"
  done
  rm -rf "$home/libs" "$home"/cds-*.jsa
  mv "$tmp" "$home/libs"
  printf '%s\n' "$want" >"$stamp"
  exec 9>&-
}

cmd_fetch() {
  fetch_jars "$KAFKA_HOME" "Kafka $KAFKA_VERSION" "$(broker_dependencies)" \
    "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar"
}

cmd_fetch_connect() {
  fetch_jars "$CONNECT_HOME" "Kafka Connect $KAFKA_VERSION" "$(connect_dependencies)" \
    "connect-runtime-$KAFKA_VERSION.jar" "debezium-connector-jdbc-$DEBEZIUM_VERSION.jar"
}

PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3

# Prints two free 127.0.0.1 ports and a cluster id. The id follows
# org.apache.kafka.common.Uuid.randomUuid(): 16 random bytes, URL-safe
# base64 without padding, never starting with '-'. One Python start here is
# cheaper than another JVM (kafka-storage random-uuid).
ports_and_cluster_id() {
  "$PYTHON" -c '
import base64, socket, uuid
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        break
print(ports[0], ports[1], cid)'
}

is_kafka_pid() {
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'
}

running_pid() {
  local dir=$1 pid
  [[ -f $dir/kafka.pid ]] || return 1
  pid=$(cat "$dir/kafka.pid")
  is_kafka_pid "$pid" || return 1
  echo "$pid"
}

log_tail() {
  local dir=$1 f
  for f in "$dir/kafka.out" "$dir/kafka.log"; do
    [[ -s $f ]] || continue
    echo "---- last lines of $f ----" >&2
    tail -n 40 "$f" >&2
  done
}

java_opts() {
  local heap=${KJB_KAFKA_HEAP:-512m}
  # C1 only and the serial collector: starts faster and stays light on a
  # two-core machine; throughput is not what a test broker needs.
  echo "-Xms256m -Xmx$heap -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k \
-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Xlog:cds=off,cds+dynamic=off"
}

# A class-data-sharing archive of Kafka's classes roughly halves the JVM
# start. The first broker started records one (-XX:ArchiveClassesAtExit, so
# it is written when that broker exits); `stop` moves it into the cache
# and later starts map it. It is only valid for one JVM build, which names
# it; a stale or broken archive is ignored by the JVM.
cds_archive() {
  local jvm key
  jvm=$(dirname "$(readlink -f "$(command -v java)")")/../lib/server/libjvm.so
  key=$(stat -L -c '%s-%Y' "$jvm" 2>/dev/null || echo unknown)
  echo "$KAFKA_HOME/cds-$key.jsa"
}

cds_opts() {
  local dir=$1 archive
  [[ ${KJB_KAFKA_CDS:-1} == 1 ]] || return 0
  archive=$(cds_archive)
  if [[ -s $archive ]]; then
    echo "-XX:SharedArchiveFile=$archive"
  elif [[ -n $dir ]]; then
    echo "-XX:ArchiveClassesAtExit=$dir/kafka.jsa"
  fi
}

cds_save() {
  local dir=$1 archive
  [[ -s $dir/kafka.jsa ]] || return 0
  archive=$(cds_archive)
  if [[ ! -s $archive ]]; then
    cp "$dir/kafka.jsa" "$archive.tmp.$$" && mv "$archive.tmp.$$" "$archive" || rm -f "$archive.tmp.$$"
  fi
  rm -f "$dir/kafka.jsa"
}

write_config() {
  local dir=$1 port=$2 cport=$3
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh: single-node KRaft for tests and demos.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$cport
log.dirs=$dir/data

num.partitions=${KJB_KAFKA_PARTITIONS:-1}
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Rebalances without the usual 3 s wait, and short session timeouts allowed
# so that crash tests need not sit out the defaults.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500

# Two cores and little data: small thread pools and buffers.
num.network.threads=1
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
group.coordinator.threads=1
share.coordinator.threads=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF

  cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $dir/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
}

SASL_USER=kjb-test

# Two more free ports, other than those given, and a password.
tls_ports_and_password() {
  "$PYTHON" - "$@" <<'EOF'
import secrets, socket, sys
taken = {int(p) for p in sys.argv[1:]}
while True:
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    if not taken & set(ports):
        break
print(ports[0], ports[1], secrets.token_hex(16))
EOF
}

# Adds the client listeners of KJB_KAFKA_TLS_DIR to write_config's.
write_tls_config() {
  local dir=$1 tls=$2 sport=$3 saport=$4 password=$5 f
  for f in ca.pem server.pem server.key; do
    [[ -r $tls/$f ]] || die "KJB_KAFKA_TLS_DIR: cannot read $tls/$f"
  done
  # Kafka's PEM key store is one file: the key, then the chain.
  (umask 077 && cat "$tls/server.key" "$tls/server.pem" >"$dir/tls-keystore.pem")
  sed -i -e "/^listeners=/s|\$|,SSL://127.0.0.1:$sport,SASL_SSL://127.0.0.1:$saport|" \
    -e "/^advertised.listeners=/s|\$|,SSL://127.0.0.1:$sport,SASL_SSL://127.0.0.1:$saport|" \
    -e "/^listener.security.protocol.map=/s|\$|,SSL:SSL,SASL_SSL:SASL_SSL|" "$dir/server.properties"
  cat >>"$dir/server.properties" <<EOF

# TLS for clients (KJB_KAFKA_TLS_DIR=$tls).
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls-keystore.pem
ssl.client.auth=none
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
}

# The TLS listeners answer metadata requests: SSL, and SASL_SSL with PLAIN.
# Not SCRAM: kcat links the system's librdkafka (2.0.2 on Debian 12), whose
# SCRAM proof Kafka 4 rejects (librdkafka#4895, fixed in 2.6.1); kjb links
# its own, newer one (scripts/deps.sh) and the e2e tests log in with both
# SCRAM mechanisms.
tls_ready() {
  local tls=$1 sport=$2 saport=$3 password=$4
  command -v kcat >/dev/null || return 0
  kcat -L -b "127.0.0.1:$sport" -m 10 -X security.protocol=ssl -X "ssl.ca.location=$tls/ca.pem" \
    -X topic.metadata.refresh.interval.ms=-1 2>/dev/null | grep -q ' 1 brokers:' \
  && kcat -L -b "127.0.0.1:$saport" -m 10 -X security.protocol=sasl_ssl \
    -X "ssl.ca.location=$tls/ca.pem" -X sasl.mechanisms=PLAIN \
    -X "sasl.username=$SASL_USER" -X "sasl.password=$password" \
    -X topic.metadata.refresh.interval.ms=-1 2>/dev/null | grep -q ' 1 brokers:'
}

# One more free port, other than those given.
oauth_port() {
  "$PYTHON" - "$@" <<'EOF'
import socket, sys
taken = {int(p) for p in sys.argv[1:] if p}
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if port not in taken:
        break
print(port)
EOF
}

# Adds the OAUTHBEARER listener of KJB_KAFKA_OAUTH_JWKS_URL to the config.
# The sasl.oauthbearer.* settings are the broker-wide ones, but no other
# listener enables OAUTHBEARER. connections.max.reauth.ms makes the broker
# end a session when its token expires unless the client re-authenticated.
write_oauth_config() {
  local dir=$1 port=$2 url=$3
  sed -i -e "/^listeners=/s|\$|,OAUTH://127.0.0.1:$port|" \
    -e "/^advertised.listeners=/s|\$|,OAUTH://127.0.0.1:$port|" \
    -e "/^listener.security.protocol.map=/s|\$|,OAUTH:SASL_PLAINTEXT|" "$dir/server.properties"
  cat >>"$dir/server.properties" <<EOF

# OAUTHBEARER for clients (KJB_KAFKA_OAUTH_JWKS_URL).
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.oauth.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
listener.name.oauth.oauthbearer.connections.max.reauth.ms=3600000
sasl.oauthbearer.jwks.endpoint.url=$url
sasl.oauthbearer.clock.skew.seconds=0
EOF
  if [[ -n ${KJB_KAFKA_OAUTH_ISSUER:-} ]]; then
    echo "sasl.oauthbearer.expected.issuer=$KJB_KAFKA_OAUTH_ISSUER" >>"$dir/server.properties"
  fi
  if [[ -n ${KJB_KAFKA_OAUTH_AUDIENCE:-} ]]; then
    echo "sasl.oauthbearer.expected.audience=$KJB_KAFKA_OAUTH_AUDIENCE" >>"$dir/server.properties"
  fi
}

# Kafka 4 fetches no OAuth URL that a system property does not allow.
oauth_opts() {
  local url
  url=$(sed -n 's/^sasl\.oauthbearer\.jwks\.endpoint\.url=//p' "$1/server.properties")
  [[ -z $url ]] || echo "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=$url"
}

# The broker answers metadata requests and lists itself: only then can
# clients produce, and auto-created topics get a leader.
broker_ready() {
  local bootstrap=$1
  if command -v kcat >/dev/null; then
    kcat -L -b "$bootstrap" -m 2 -X topic.metadata.refresh.interval.ms=-1 2>/dev/null \
      | grep -q ' 1 brokers:'
  else
    "$PYTHON" - "$bootstrap" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
socket.create_connection((host, int(port)), timeout=1).close()
EOF
  fi
}

# Starts the JVM on DIR's server.properties and data; prints its pid.
launch() {
  local dir=$1
  # setsid: the broker must outlive the shell that started it (the demo
  # returns to the prompt) and not get the terminal's Ctrl-C.
  # shellcheck disable=SC2046
  setsid java $(java_opts) $(cds_opts "$dir") $(oauth_opts "$dir") -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -Dkafka.logs.dir="$dir" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/kafka.out" 2>&1 &
  echo "$!" >"$dir/kafka.pid"
  echo "$!"
}

wait_ready() {
  local dir=$1 pid=$2 bootstrap=$3 deadline=$4
  until broker_ready "$bootstrap"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail "$dir"
      rm -f "$dir/kafka.pid"
      die "the broker exited during startup (logs in $dir)"
    fi
    if (($(date +%s) >= deadline)); then
      log_tail "$dir"
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "the broker did not answer on $bootstrap before the start timeout (logs in $dir)"
    fi
    sleep 0.2
  done
}

cmd_start() {
  local dir=$1 port cport cid pid bootstrap deadline timeout t0
  timeout=${KJB_KAFKA_START_TIMEOUT:-240}
  command -v java >/dev/null || die "java not found (run scripts/deps.sh)"
  cmd_fetch
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid=$(running_pid "$dir"); then
    die "already running in $dir (pid $pid, $(cat "$dir/bootstrap" 2>/dev/null))"
  fi
  t0=$(date +%s%N)
  rm -rf "$dir/data" "$dir/kafka.log" "$dir/kafka.out" "$dir/kafka.pid" "$dir/bootstrap"
  read -r port cport cid < <(ports_and_cluster_id) || true
  [[ -n ${cid:-} ]] || die "could not pick free ports with $PYTHON"
  write_config "$dir" "$port" "$cport"
  local tls=${KJB_KAFKA_TLS_DIR:-} sport saport sasl_password scram=()
  rm -f "$dir/bootstrap.ssl" "$dir/bootstrap.sasl_ssl" "$dir/sasl.user" "$dir/sasl.password"
  if [[ -n $tls ]]; then
    tls=$(cd "$tls" && pwd) || die "KJB_KAFKA_TLS_DIR: no directory $KJB_KAFKA_TLS_DIR"
    read -r sport saport sasl_password < <(tls_ports_and_password "$port" "$cport") || true
    [[ -n ${sasl_password:-} ]] || die "could not pick free ports with $PYTHON"
    write_tls_config "$dir" "$tls" "$sport" "$saport" "$sasl_password"
    # SCRAM credentials live in the metadata log, from the start.
    scram=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$sasl_password]"
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$sasl_password]")
  fi

  local oauth_url=${KJB_KAFKA_OAUTH_JWKS_URL:-} oport=
  rm -f "$dir/bootstrap.oauth"
  if [[ -n $oauth_url ]]; then
    oport=$(oauth_port "$port" "$cport" "${sport:-}" "${saport:-}") || true
    [[ -n $oport ]] || die "could not pick a free port with $PYTHON"
    write_oauth_config "$dir" "$oport" "$oauth_url"
  fi

  # shellcheck disable=SC2046
  if ! java $(java_opts) $(cds_opts "") -Xmx256m -Dlog4j2.level=WARN \
      -cp "$LIBS/*" kafka.tools.StorageTool format --standalone \
      --cluster-id "$cid" --config "$dir/server.properties" "${scram[@]}" \
      >"$dir/format.out" 2>&1; then
    cat "$dir/format.out" >&2
    die "could not format the storage in $dir/data"
  fi

  pid=$(launch "$dir")
  bootstrap=127.0.0.1:$port
  deadline=$(($(date +%s) + timeout))
  wait_ready "$dir" "$pid" "$bootstrap" "$deadline"
  if [[ -n $tls ]]; then
    # They open with the PLAINTEXT one, but a loaded machine may take a
    # while to answer a TLS handshake and a SASL exchange.
    deadline=$(($(date +%s) + timeout))
    until tls_ready "$tls" "$sport" "$saport" "$sasl_password"; do
      if (($(date +%s) >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
        log_tail "$dir"
        cmd_stop "$dir" >/dev/null 2>&1 || true
        die "the broker's TLS listeners did not answer on 127.0.0.1:$sport and :$saport (logs in $dir)"
      fi
      sleep 0.2
    done
    echo "127.0.0.1:$sport" >"$dir/bootstrap.ssl"
    echo "127.0.0.1:$saport" >"$dir/bootstrap.sasl_ssl"
    echo "$SASL_USER" >"$dir/sasl.user"
    (umask 077 && echo "$sasl_password" >"$dir/sasl.password")
  fi

  if [[ -n $oport ]]; then
    # Listeners open together, so this one is up; that it takes tokens
    # is for its clients to find out.
    "$PYTHON" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()' \
      "$oport" 2>/dev/null || {
      log_tail "$dir"
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "the broker's OAUTHBEARER listener does not answer on 127.0.0.1:$oport (logs in $dir)"
    }
    echo "127.0.0.1:$oport" >"$dir/bootstrap.oauth"
  fi
  echo "$bootstrap" >"$dir/bootstrap"
  echo "kafka.sh: broker up on $bootstrap in $((($(date +%s%N) - t0) / 1000000)) ms" \
    "(pid $pid, log $dir/kafka.log)" >&2
  echo "$bootstrap"
}

cmd_stop() {
  local dir=$1 pid timeout deadline
  timeout=${KJB_KAFKA_STOP_TIMEOUT:-30}
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/kafka.pid" "$dir/bootstrap"
    echo "kafka.sh: not running in $dir" >&2
    return 0
  fi
  # Writing the class-data archive at exit takes a while, once.
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ArchiveClassesAtExit; then
    timeout=$((timeout * 3))
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker (pid $pid) still up after ${timeout}s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$dir/kafka.jsa" # possibly half written
  fi
  rm -f "$dir/kafka.pid" "$dir/bootstrap"
  cds_save "$dir"
  echo "kafka.sh: stopped (pid $pid)" >&2
}

# Stops the broker (SIGTERM, or SIGKILL with --kill) and starts it again
# on the same ports with its data, as a restarted production broker would.
cmd_restart() {
  local dir=$1 how=${2:-} pid bootstrap t0
  dir=$(cd "$dir" && pwd)
  [[ -f $dir/server.properties && -d $dir/data ]] || die "no broker in $dir to restart"
  bootstrap=127.0.0.1:$(sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*|\1|p' "$dir/server.properties")
  t0=$(date +%s%N)
  if [[ $how == --kill ]] && pid=$(running_pid "$dir"); then
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$dir/kafka.jsa"
  fi
  cmd_stop "$dir"
  pid=$(launch "$dir")
  wait_ready "$dir" "$pid" "$bootstrap" $(($(date +%s) + ${KJB_KAFKA_START_TIMEOUT:-240}))
  echo "$bootstrap" >"$dir/bootstrap"
  echo "kafka.sh: broker restarted on $bootstrap in $((($(date +%s%N) - t0) / 1000000)) ms (pid $pid)" >&2
}

cmd_tool() {
  [[ $# -ge 1 ]] || usage
  command -v java >/dev/null || die "java not found (run scripts/deps.sh)"
  cmd_fetch
  # shellcheck disable=SC2046
  exec java $(java_opts) $(cds_opts "") -Xms64m -Xmx256m -Dlog4j2.level=WARN -cp "$LIBS/*" "$@"
}

cmd_status() {
  local dir=$1 pid
  if pid=$(running_pid "$dir"); then
    echo "running: pid $pid, bootstrap $(cat "$dir/bootstrap" 2>/dev/null)"
  else
    echo "not running"
    return 1
  fi
}

case ${1:-} in
  fetch) cmd_fetch ;;
  start) [[ $# -eq 2 ]] || usage; cmd_start "$2" ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
  restart) [[ $# -ge 2 && $# -le 3 ]] || usage; cmd_restart "${@:2}" ;;
  status) [[ $# -eq 2 ]] || usage; cmd_status "$2" ;;
  tools-classpath) cmd_fetch; echo "$LIBS/*" ;;
  connect-classpath) cmd_fetch_connect; echo "$CONNECT_HOME/libs/*" ;;
  tool) cmd_tool "${@:2}" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
