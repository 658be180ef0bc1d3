"""moto's side of peertest.Moto: boto3, the AWS SDK for Python, against
moto's server at sys.argv[1] in the region sys.argv[2].

  bus NAME                  creates the event bus NAME, the SQS queue
                            NAME-queue and a rule sending every event on the
                            bus to the queue; prints {"arn":…,"queue":…}
  receive QUEUE N SECONDS   reads the queue until N messages have arrived or
                            SECONDS have passed, deleting each; prints each
                            message's body on a line of its own
"""

import json
import sys
import time

import boto3

endpoint, region, command, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
session = boto3.Session(
    aws_access_key_id="herald-test", aws_secret_access_key="herald-test", region_name=region
)
events = session.client("events", endpoint_url=endpoint)
sqs = session.client("sqs", endpoint_url=endpoint)

if command == "bus":
    (name,) = args
    bus = events.create_event_bus(Name=name)
    queue = sqs.create_queue(QueueName=name + "-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="everything", EventBusName=name, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    events.put_targets(Rule="everything", EventBusName=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    print(json.dumps({"arn": bus["EventBusArn"], "queue": queue}))
elif command == "receive":
    queue, n, seconds = args[0], int(args[1]), float(args[2])
    deadline = time.monotonic() + seconds
    got = 0
    while got < n and time.monotonic() < deadline:
        wait = max(0, min(1, int(deadline - time.monotonic())))
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
        for m in messages:
            print(m["Body"].replace("\n", " "), flush=True)
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            got += 1
        if not messages and wait == 0:
            time.sleep(0.05)
else:
    sys.exit("unknown command " + command)
