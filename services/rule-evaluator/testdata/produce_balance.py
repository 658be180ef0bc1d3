"""Produce Balance UPDATE events to Herald's events topic the way an
upstream system that skips Herald's HTTP ingest does: with Confluent's
Python client, its SerializingProducer and AvroSerializer, using the
schema already registered for the subject.

Usage: produce_balance.py BOOTSTRAP REGISTRY_URL TOPIC SUBJECT COUNT TENANT

It writes one event whose new.remaining is NaN, one whose new.remaining is
+Infinity, then COUNT ordinary ones, all keyed "{TENANT}/acct-1", and
prints one line per delivered event: its eventId and new.remaining.
"""

import datetime
import math
import sys
import uuid

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer


def balance(remaining):
    return {
        "id": "bal-1",
        "accountId": "acct-1",
        "unit": "MB",
        "total": 1000.0,
        "used": 1000.0 - remaining if math.isfinite(remaining) else 0.0,
        "remaining": remaining,
        "planId": None,
    }


def main():
    bootstrap, registry_url, topic, subject, count, tenant = sys.argv[1:7]
    registry = SchemaRegistryClient({"url": registry_url})
    latest = registry.get_latest_version(subject)
    serializer = AvroSerializer(
        registry,
        schema_str=latest.schema.schema_str,
        conf={
            # Herald registers its schemas; an upstream producer only uses
            # the subject's latest version and never registers its own.
            "auto.register.schemas": False,
            "use.latest.version": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
        },
    )
    producer = SerializingProducer(
        {
            "bootstrap.servers": bootstrap,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": serializer,
            "enable.idempotence": True,
        }
    )

    produced, failed = [], []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)

    remainings = [math.nan, math.inf] + [500.0 - i for i in range(int(count))]
    now = datetime.datetime.now(datetime.timezone.utc)
    for remaining in remainings:
        event_id = "py-" + uuid.uuid4().hex
        producer.produce(
            topic=topic,
            key=f"{tenant}/acct-1",
            value={
                "eventId": event_id,
                "tenantId": tenant,
                "entityType": "Balance",
                "entityId": "bal-1",
                "operation": "UPDATE",
                "occurredAt": now,
                "accountId": "acct-1",
                "deviceId": None,
                "correlationId": None,
                "old": balance(600.0),
                "new": balance(remaining),
            },
            on_delivery=on_delivery,
        )
        produced.append((event_id, remaining))
    if producer.flush(30) != 0:
        sys.exit("produce_balance: records still undelivered after 30s")
    if failed:
        sys.exit(f"produce_balance: delivery failed: {failed}")
    for event_id, remaining in produced:
        print(event_id, remaining)


if __name__ == "__main__":
    main()
