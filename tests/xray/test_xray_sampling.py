"""Sampling rules and targets, and groups' lifecycle, through boto3."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client


@pytest.fixture
def xray(server, account):
    return make_client(server.endpoint, "xray", account)


def rule(name: str, **overrides) -> dict:
    return {
        "RuleName": name,
        "ResourceARN": "*",
        "Priority": 100,
        "FixedRate": 0.5,
        "ReservoirSize": 4,
        "ServiceName": "demo/*",
        "ServiceType": "*",
        "Host": "*",
        "HTTPMethod": "*",
        "URLPath": "/api/*",
        "Version": 1,
        **overrides,
    }


def _code(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Code"]


def test_default_rule_is_xrays(xray, account):
    (record,) = xray.get_sampling_rules()["SamplingRuleRecords"]
    default = record["SamplingRule"]
    assert (default["RuleName"], default["FixedRate"], default["ReservoirSize"]) == (
        "Default",
        0.05,
        1,
    )
    assert default["Priority"] == 10000 and default["Version"] == 1
    assert default["RuleARN"] == f"arn:aws:xray:us-east-1:{account}:sampling-rule/Default"


def test_rule_lifecycle(xray):
    created = xray.create_sampling_rule(SamplingRule=rule("colors"))["SamplingRuleRecord"]
    assert created["SamplingRule"]["RuleARN"].endswith(":sampling-rule/colors")
    names = [
        r["SamplingRule"]["RuleName"] for r in xray.get_sampling_rules()["SamplingRuleRecords"]
    ]
    assert names == ["colors", "Default"]  # by priority

    with pytest.raises(ClientError) as caught:
        xray.create_sampling_rule(SamplingRule=rule("colors"))
    assert _code(caught) == "InvalidRequestException"

    updated = xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "colors", "FixedRate": 1.0})
    assert updated["SamplingRuleRecord"]["SamplingRule"]["FixedRate"] == 1.0
    assert updated["SamplingRuleRecord"]["ModifiedAt"] >= created["ModifiedAt"]

    deleted = xray.delete_sampling_rule(RuleARN=created["SamplingRule"]["RuleARN"])
    assert deleted["SamplingRuleRecord"]["SamplingRule"]["RuleName"] == "colors"
    assert len(xray.get_sampling_rules()["SamplingRuleRecords"]) == 1


def test_default_rule_can_be_tuned_but_not_deleted(xray):
    tuned = xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "Default", "FixedRate": 0.2})
    assert tuned["SamplingRuleRecord"]["SamplingRule"]["FixedRate"] == 0.2
    for call in (
        lambda: xray.delete_sampling_rule(RuleName="Default"),
        lambda: xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "Default", "Host": "x"}),
        lambda: xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "nope", "FixedRate": 1}),
        lambda: xray.update_sampling_rule(
            SamplingRuleUpdate={"RuleName": "Default", "FixedRate": 2}
        ),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert _code(caught) == "InvalidRequestException"


def test_model_constraints_are_checked(xray):
    with pytest.raises(ClientError) as caught:
        xray.create_sampling_rule(SamplingRule=rule("toolong" * 10))
    assert _code(caught) == "InvalidRequestException"
    assert "RuleName" in caught.value.response["Error"]["Message"]


def test_rule_quota(xray):
    for index in range(25):
        xray.create_sampling_rule(SamplingRule=rule(f"rule-{index}"))
    with pytest.raises(ClientError) as caught:
        xray.create_sampling_rule(SamplingRule=rule("one-too-many"))
    assert _code(caught) == "RuleLimitExceededException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_targets_share_the_reservoir_between_clients(xray):
    xray.create_sampling_rule(SamplingRule=rule("shared", ReservoirSize=3))
    now = time.time()

    def report(client: str, name: str = "shared") -> dict:
        document = {
            "RuleName": name,
            "ClientID": client * 24,
            "Timestamp": now,
            "RequestCount": 10,
            "SampledCount": 3,
            "BorrowCount": 1,
        }
        return xray.get_sampling_targets(SamplingStatisticsDocuments=[document])

    alone = report("a")["SamplingTargetDocuments"][0]
    assert (alone["RuleName"], alone["FixedRate"], alone["ReservoirQuota"]) == ("shared", 0.5, 3)
    assert alone["Interval"] == 10 and alone["ReservoirQuotaTTL"].timestamp() > now
    second = report("b")
    assert second["SamplingTargetDocuments"][0]["ReservoirQuota"] == 1  # 3 split between 2
    assert report("a")["SamplingTargetDocuments"][0]["ReservoirQuota"] == 2
    assert second["LastRuleModification"].timestamp() <= time.time()

    unknown = report("c", name="missing")
    assert unknown["SamplingTargetDocuments"] == []
    assert unknown["UnprocessedStatistics"][0]["RuleName"] == "missing"

    summaries = xray.get_sampling_statistic_summaries()["SamplingStatisticSummaries"]
    shared = next(s for s in summaries if s["RuleName"] == "shared")
    assert (shared["RequestCount"], shared["SampledCount"], shared["BorrowCount"]) == (30, 9, 3)


def test_group_lifecycle(xray, account):
    default = xray.get_group(GroupName="Default")["Group"]
    assert default["GroupARN"] == f"arn:aws:xray:us-east-1:{account}:group/Default"
    created = xray.create_group(GroupName="faults", FilterExpression="fault")["Group"]
    assert created["FilterExpression"] == "fault"
    updated = xray.update_group(GroupARN=created["GroupARN"], FilterExpression="error")["Group"]
    assert updated["FilterExpression"] == "error"
    xray.delete_group(GroupName="faults")
    assert [g["GroupName"] for g in xray.get_groups()["Groups"]] == ["Default"]
    with pytest.raises(ClientError) as caught:
        xray.delete_group(GroupName="Default")
    assert _code(caught) == "InvalidRequestException"


def test_encryption_config_round_trip(xray):
    assert xray.get_encryption_config()["EncryptionConfig"] == {"Type": "NONE", "Status": "ACTIVE"}
    config = xray.put_encryption_config(Type="KMS", KeyId="alias/xray")["EncryptionConfig"]
    assert config == {"Type": "KMS", "KeyId": "alias/xray", "Status": "ACTIVE"}
