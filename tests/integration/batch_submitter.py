"""One 'Lambda' in its own OS process: a tick over a shared DynamoDB table and moto's AWS Batch.

``python -m tests.integration.batch_submitter DDB_ENDPOINT TABLE ENDPOINT QUEUE BUCKET GO`` waits
until the file GO exists (so racing processes start together), runs one tick on the DynamoDB
table (DynamoDB Local) that recovers every job left SUBMITTING, and prints the tick's report
as JSON. Used by ``test_exactly_once_batch.py``: two of these are two tick Lambdas.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any


def main(ddb: str, table: str, endpoint: str, queue: str, bucket: str, go: str) -> None:
    import boto3

    from control_plane.service.runners import RunnerRegistry
    from control_plane.service.service import Service
    from control_plane.service.storage import LocalStorage
    from control_plane.store.dynamodb import DynamoDBStore
    from runners.aws_batch import AwsBatchRunner
    from tests.emulators.fixtures import dynamodb_client

    def session(**_kwargs: Any) -> Any:
        return boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )

    runner = AwsBatchRunner(
        session_factory=session,
        endpoint_url=endpoint,
        region="us-east-1",
        defaults={"jobQueueArn": queue, "bucket": bucket},
    )
    store = DynamoDBStore(table, client=dynamodb_client(ddb))
    service = Service(
        store,
        runners=RunnerRegistry(instances={"aws-batch": runner}),
        storage=LocalStorage(Path(go).parent / "storage"),
    )
    deadline = time.monotonic() + 60
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    report = service.tick(reconcile_after=timedelta(hours=1), submit_grace=timedelta(0))
    print(json.dumps({"recovered": report.recovered}))
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:7])
