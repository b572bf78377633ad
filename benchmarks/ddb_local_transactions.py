"""What DynamoDB Local reports as consumed capacity for TransactWriteItems, by size.

DynamoDB bills a transactional write 2 WRU per KB of each item. DynamoDB Local (the store
the benchmarks count units on) reports one figure per call instead; this prints it for
transactions of 1, 3, 10 and 50 puts of about 1 KB, and a BatchWriteItem of 10 for reference.

Usage: python benchmarks/ddb_local_transactions.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import boto3

    from tests.emulators.dynamodb_local import DynamoDBLocal

    with DynamoDBLocal() as ddb:
        client = boto3.client(
            "dynamodb",
            endpoint_url=ddb.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        client.create_table(
            TableName="units",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        body = {"S": "x" * 900}
        for n in (1, 3, 10, 50):
            items = [
                {"Put": {"TableName": "units", "Item": {"PK": {"S": f"{n}-{i}"}, "d": body}}}
                for i in range(n)
            ]
            reported = client.transact_write_items(TransactItems=items, ReturnConsumedCapacity="TOTAL")
            units = sum(c["CapacityUnits"] for c in reported["ConsumedCapacity"])
            print(f"TransactWriteItems of {n:2d} puts: reported {units:.1f} WRU (DynamoDB bills {2 * n})")
        puts = [{"PutRequest": {"Item": {"PK": {"S": f"b-{i}"}, "d": body}}} for i in range(10)]
        reported = client.batch_write_item(RequestItems={"units": puts}, ReturnConsumedCapacity="TOTAL")
        units = sum(c["CapacityUnits"] for c in reported["ConsumedCapacity"])
        print(f"BatchWriteItem of 10 puts: reported {units:.1f} WRU (DynamoDB bills 10)")


if __name__ == "__main__":
    main()
