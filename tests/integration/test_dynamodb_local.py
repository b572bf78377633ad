"""DynamoDB Local starts from the tests and behaves like DynamoDB where the store will rely on it.

These pin the emulator facts the DynamoDB store (issue 6) is designed around: conditional
writes fail with ConditionalCheckFailed and change nothing, a transaction is all or nothing,
and a transaction holds at most 100 items.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402

from tests.emulators.dynamodb_local import DynamoDBLocal  # noqa: E402

# The module starts a DynamoDB Local of its own: on one worker, once.
pytestmark = pytest.mark.xdist_group("dynamodb-local-module")


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with DynamoDBLocal() as ddb:
        client = boto3.client(
            "dynamodb",
            endpoint_url=ddb.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        client.create_table(
            TableName="squall",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
        )
        yield client
        client.close()


def _item(pk: str, sk: str, version: int) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, "v": {"N": str(version)}}


def test_conditional_write_on_version(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="squall", Item=_item("EXEC#1", "META", 1))
    dynamodb.put_item(
        TableName="squall",
        Item=_item("EXEC#1", "META", 2),
        ConditionExpression="v = :seen",
        ExpressionAttributeValues={":seen": {"N": "1"}},
    )
    with pytest.raises(ClientError) as lost:
        dynamodb.put_item(
            TableName="squall",
            Item=_item("EXEC#1", "META", 2),
            ConditionExpression="v = :seen",
            ExpressionAttributeValues={":seen": {"N": "1"}},
        )
    assert lost.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    stored = dynamodb.get_item(TableName="squall", Key={"PK": {"S": "EXEC#1"}, "SK": {"S": "META"}})["Item"]
    assert stored["v"] == {"N": "2"}


def test_a_transaction_is_all_or_nothing_and_holds_at_most_100_items(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="squall", Item=_item("EXEC#2", "META", 5))
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "squall", "Item": _item("EXEC#2", "TR#a", 6)}},
                {
                    "Put": {
                        "TableName": "squall",
                        "Item": _item("EXEC#2", "META", 6),
                        "ConditionExpression": "v = :seen",
                        "ExpressionAttributeValues": {":seen": {"N": "4"}},  # stale
                    }
                },
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    missing = dynamodb.get_item(TableName="squall", Key={"PK": {"S": "EXEC#2"}, "SK": {"S": "TR#a"}})
    assert "Item" not in missing  # the task run of the losing write was not stored
    too_many = [{"Put": {"TableName": "squall", "Item": _item("EXEC#3", f"TR#{i}", 1)}} for i in range(101)]
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=too_many)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
