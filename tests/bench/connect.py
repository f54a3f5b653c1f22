"""Kafka Connect as ingest's peer: Connect's standalone worker with
Debezium's JDBC sink connector, from Maven Central (scripts/kafka.sh
connect-classpath), sinking the rows kjb made into another kjb.jobs table.

What differs from kjb, on purpose or by necessity:
- The converter. Confluent's AvroConverter and its schema registry are not
  on Maven Central, so the events reach Connect as the JSON kjb made of
  them, in the JsonConverter's schema-and-payload envelope: Connect parses
  JSON where kjb decodes Avro and writes JSON.
- The row. kjb's job row comes from its topic config; Connect's from
  InsertField transforms (kind, queue, source coordinates) and the
  envelope's fields (unique_key, and args and meta as JSON), so both fill
  the same columns of the same table with the same values.
- Delivery. kjb commits a batch's rows and its offsets in one PostgreSQL
  transaction, an exactly-once effect. Connect commits offsets to Kafka
  after the sink flushed: at least once. The unique (kind, unique_key)
  index would fail a re-delivered row in insert mode, and Debezium's upsert
  cannot name that partial index, so a crash between the two would stop
  the task rather than duplicate.
"""
import json
import os
import subprocess

import psycopg

from executor import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ENVELOPE_SCHEMA = json.dumps({
    "type": "struct", "optional": False, "fields": [
        {"field": "unique_key", "type": "string", "optional": False},
        {"field": "args", "type": "string", "optional": False, "name": "io.debezium.data.Json"},
        {"field": "meta", "type": "string", "optional": False, "name": "io.debezium.data.Json"},
    ]}, separators=(",", ":"))


def classpath():
    return subprocess.run([os.path.join(ROOT, "scripts", "kafka.sh"), "connect-classpath"],
                          check=True, text=True, capture_output=True).stdout.strip()


def envelope(unique_key, args, meta):
    """A job's row for the sink: args and meta are JSON text."""
    return ('{"schema":%s,"payload":%s}' % (
        ENVELOPE_SCHEMA, json.dumps({"unique_key": unique_key, "args": args, "meta": meta},
                                    separators=(",", ":")))).encode()


def write_configs(work, bootstrap, conninfo, topic, tasks, batch_size):
    """Writes the worker's, the connector's and log4j's configuration into
    work; returns their paths."""
    ci = psycopg.conninfo.conninfo_to_dict(conninfo)
    worker = os.path.join(work, "worker.properties")
    with open(worker, "w") as f:
        f.write(f"""bootstrap.servers={bootstrap}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename={work}/offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:{free_port()}
consumer.auto.offset.reset=earliest
consumer.max.poll.records={batch_size}
""")
    connector = os.path.join(work, "connector.properties")
    with open(connector, "w") as f:
        f.write(f"""name=bench-jdbc-sink
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max={tasks}
topics={topic}
connection.url=jdbc:postgresql://{ci.get('host', '127.0.0.1')}:{ci.get('port', 5432)}/{ci['dbname']}?reWriteBatchedInserts=true
connection.username={ci.get('user', 'postgres')}
connection.password={ci.get('password', '')}
insert.mode=insert
primary.key.mode=none
schema.evolution=none
collection.name.format=kjb.jobs
batch.size={batch_size}
transforms=coordinates,kind,queue
transforms.coordinates.type=org.apache.kafka.connect.transforms.InsertField$Value
transforms.coordinates.topic.field=source_topic
transforms.coordinates.partition.field=source_partition
transforms.coordinates.offset.field=source_offset
transforms.kind.type=org.apache.kafka.connect.transforms.InsertField$Value
transforms.kind.static.field=kind
transforms.kind.static.value=fulfil_order
transforms.queue.type=org.apache.kafka.connect.transforms.InsertField$Value
transforms.queue.static.field=queue
transforms.queue.static.value=fulfilment
""")
    log4j = os.path.join(work, "log4j2.properties")
    with open(log4j, "w") as f:
        f.write(f"""status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {work}/connect.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.connect.name = org.apache.kafka.connect.runtime.Worker
logger.connect.level = INFO
""")
    return worker, connector, log4j


def start(classpath, work, bootstrap, conninfo, topic, tasks, batch_size, heap="512m"):
    worker, connector, log4j = write_configs(work, bootstrap, conninfo, topic, tasks, batch_size)
    out = open(os.path.join(work, "connect.out"), "w")
    return subprocess.Popen(
        ["java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
         f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
         "org.apache.kafka.connect.cli.ConnectStandalone", worker, connector],
        stdout=out, stderr=subprocess.STDOUT)


def log_tail(work, n=30):
    lines = []
    for name in ("connect.out", "connect.log"):
        try:
            with open(os.path.join(work, name)) as f:
                lines += f.readlines()[-n:]
        except OSError:
            pass
    return "".join(lines)
