"""Reads the SAM template (template.yaml) for the local stack.

The template is the single source of truth: the local DynamoDB table and the local stream
pump are both built from it, so nothing here hard-codes a key, an index or a filter.

    tasks_table_create_args(name)  -> kwargs for boto3 dynamodb.create_table
    tasks_table_ttl_args(name)     -> kwargs for dynamodb.update_time_to_live, or None
    ingest_event_source()          -> the IngestFunction DynamoDB event settings
    stream_event_source(id)        -> any function's DynamoDB event settings (NotifyFunction)
    queue_event_source(id)         -> a function's SQS event and its queue (DeliverFunction)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

TABLE_ID = "TasksTable"
INGEST_ID = "IngestFunction"

# Lambda's own defaults for a DynamoDB event source mapping, used when the template omits a key.
ESM_DEFAULTS = {
    "BatchSize": 100,
    "MaximumRetryAttempts": -1,  # -1 = retry until the record expires from the stream
    "BisectBatchOnFunctionError": False,
    "FunctionResponseTypes": [],
    "ParallelizationFactor": 1,
}


class TemplateError(ValueError):
    """The template lacks something the local stack needs, or uses what it cannot resolve."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation short tags (!Ref, !GetAtt, !Sub, ...)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    # Turn `!Name x` into the long form `{"Fn::Name": x}` (`!Ref x` into `{"Ref": x}`) so
    # the rest of the code sees what CloudFormation itself would see.
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise TemplateError(f"{path}: no Resources section")
    return template


def _resource(template: dict[str, Any], logical_id: str, rtype: str) -> dict[str, Any]:
    res = template["Resources"].get(logical_id)
    if not isinstance(res, dict) or res.get("Type") != rtype:
        raise TemplateError(f"template has no {rtype} resource named {logical_id}")
    return res.get("Properties") or {}


def resolve(template: dict[str, Any], value: Any) -> Any:
    """Resolve `!Ref Parameter` to the parameter's Default, recursively; literals pass through.

    Anything else (GetAtt, Sub, If, ...) cannot be known locally and is an error rather than a
    silently wrong value.
    """
    if isinstance(value, list):
        return [resolve(template, v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "Ref" in value:
            name = value["Ref"]
            param = (template.get("Parameters") or {}).get(name)
            if not isinstance(param, dict) or "Default" not in param:
                raise TemplateError(f"!Ref {name}: not a template parameter with a Default")
            return resolve(template, param["Default"])
        if len(value) == 1 and next(iter(value)).startswith("Fn::"):
            raise TemplateError(f"cannot resolve {value!r} locally")
        return {k: resolve(template, v) for k, v in value.items()}
    return value


def tasks_table_create_args(table_name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """boto3 `create_table` kwargs for TasksTable, renamed to `table_name`."""
    return table_create_args(TABLE_ID, table_name, template)


def table_create_args(logical_id: str, table_name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """boto3 `create_table` kwargs for the table `logical_id`, renamed to `table_name`."""
    template = template or load_template()
    props = _resource(template, logical_id, "AWS::DynamoDB::Table")
    args: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": resolve(template, props["AttributeDefinitions"]),
        "KeySchema": resolve(template, props["KeySchema"]),
        "BillingMode": resolve(template, props.get("BillingMode", "PROVISIONED")),
    }
    if args["BillingMode"] == "PROVISIONED":
        args["ProvisionedThroughput"] = resolve(template, props["ProvisionedThroughput"])
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            args[key] = resolve(template, props[key])
    stream = props.get("StreamSpecification")
    if stream:
        # CloudFormation only names the view type; the API also wants StreamEnabled.
        args["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": resolve(template, stream["StreamViewType"]),
        }
    return args


def tasks_table_ttl(template: dict[str, Any] | None = None, logical_id: str = TABLE_ID) -> dict[str, Any] | None:
    """TasksTable's TimeToLiveSpecification as {"AttributeName", "Enabled"}, or None."""
    template = template or load_template()
    spec = _resource(template, logical_id, "AWS::DynamoDB::Table").get("TimeToLiveSpecification")
    if not spec:
        return None
    spec = resolve(template, spec)
    return {"AttributeName": spec["AttributeName"], "Enabled": bool(spec.get("Enabled", False))}


def tasks_table_ttl_args(table_name: str, template: dict[str, Any] | None = None,
                         logical_id: str = TABLE_ID) -> dict[str, Any] | None:
    """boto3 `update_time_to_live` kwargs, or None when the template enables no TTL."""
    spec = tasks_table_ttl(template, logical_id)
    if not spec or not spec["Enabled"]:
        return None
    return {"TableName": table_name, "TimeToLiveSpecification": spec}


def ingest_event_source(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The IngestFunction's DynamoDB event (see `stream_event_source`)."""
    return stream_event_source(INGEST_ID, template)


def stream_event_source(function_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """A function's DynamoDB event: filters (decoded patterns) and retry/batch settings.

    Returns {"filters": [pattern dict, ...], "BatchSize", "MaximumRetryAttempts",
    "BisectBatchOnFunctionError", "FunctionResponseTypes", "ParallelizationFactor",
    "StartingPosition"}.
    """
    template = template or load_template()
    props = _resource(template, function_id, "AWS::Serverless::Function")
    events = [e for e in (props.get("Events") or {}).values() if e.get("Type") == "DynamoDB"]
    if len(events) != 1:
        raise TemplateError(f"{function_id} must have exactly one DynamoDB event, found {len(events)}")
    ev = events[0].get("Properties") or {}

    filters = []
    for f in (ev.get("FilterCriteria") or {}).get("Filters") or []:
        pattern = resolve(template, f["Pattern"])
        # CloudFormation carries each pattern as a JSON string.
        filters.append(json.loads(pattern) if isinstance(pattern, str) else pattern)

    out: dict[str, Any] = {"filters": filters}
    for key, default in ESM_DEFAULTS.items():
        out[key] = resolve(template, ev.get(key, default))
    out["BatchSize"] = int(out["BatchSize"])
    out["MaximumRetryAttempts"] = int(out["MaximumRetryAttempts"])
    out["ParallelizationFactor"] = int(out["ParallelizationFactor"])
    out["BisectBatchOnFunctionError"] = _as_bool(out["BisectBatchOnFunctionError"])
    out["FunctionResponseTypes"] = list(out["FunctionResponseTypes"] or [])
    out["StartingPosition"] = resolve(template, ev.get("StartingPosition", "TRIM_HORIZON"))
    return out


def queue_event_source(function_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """A function's SQS event and its queue: {"queue": logical id, "BatchSize",
    "FunctionResponseTypes", "VisibilityTimeout", "maxReceiveCount", "dead_letter": logical id}."""
    template = template or load_template()
    props = _resource(template, function_id, "AWS::Serverless::Function")
    events = [e for e in (props.get("Events") or {}).values() if e.get("Type") == "SQS"]
    if len(events) != 1:
        raise TemplateError(f"{function_id} must have exactly one SQS event, found {len(events)}")
    ev = events[0].get("Properties") or {}
    queue = ev.get("Queue")
    if not (isinstance(queue, dict) and "Fn::GetAtt" in queue):
        raise TemplateError(f"{function_id}'s SQS event must name its queue with !GetAtt <Queue>.Arn")
    queue_id = queue["Fn::GetAtt"][0] if isinstance(queue["Fn::GetAtt"], list) else queue["Fn::GetAtt"].split(".")[0]
    qprops = _resource(template, queue_id, "AWS::SQS::Queue")
    redrive = qprops.get("RedrivePolicy") or {}
    target = redrive.get("deadLetterTargetArn") or {}
    dlq = target.get("Fn::GetAtt") if isinstance(target, dict) else None
    return {
        "queue": queue_id,
        "BatchSize": int(resolve(template, ev.get("BatchSize", 10))),
        "FunctionResponseTypes": list(ev.get("FunctionResponseTypes") or []),
        "VisibilityTimeout": int(resolve(template, qprops.get("VisibilityTimeout", 30))),
        "maxReceiveCount": int(resolve(template, redrive.get("maxReceiveCount", 0))),
        "dead_letter": (dlq[0] if isinstance(dlq, list) else str(dlq).split(".")[0]) if dlq else None,
    }


def _as_bool(value: Any) -> bool:
    # Parameters are strings ("true"/"false"); literals are YAML booleans.
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


if __name__ == "__main__":
    # `python3 infra/local/template_model.py` prints what the local stack will use.
    print(json.dumps({
        "create_table": tasks_table_create_args("music-video-tasks"),
        "ttl": tasks_table_ttl(),
        "ingest_event_source": ingest_event_source(),
        "notify_event_source": stream_event_source("NotifyFunction"),
        "deliver_event_source": queue_event_source("DeliverFunction"),
    }, indent=2))
