"""Least privilege, checked: what each function's IAM role may do, read from template.yaml.

    python3 -m unittest discover -s tests/template -p 'test_*.py'

`EXPECTED` below is the reviewed list of every (action, resource, condition) each function
is granted; the test fails when the template grants anything more, anything less, or in any
other shape (an action wildcard, a `*` resource outside `STAR_RESOURCE_EXCEPTIONS`,
NotAction/NotResource, managed policies, SAM policy templates, a shared role, a trust
policy for anyone but Lambda). Changing a grant therefore means changing this file too, in
the same review.

Resources are compared in the template's own spelling: `TasksTable.Arn` for
`!GetAtt TasksTable.Arn`, the `!Sub` string as written, `*` for `*`.
"""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "infra" / "local"))
import template_model  # noqa: E402

VIDEOS = "arn:${AWS::Partition}:s3:::${VideosBucket}/videos/*"
INBOX = "arn:${AWS::Partition}:s3:::${VideosBucket}/inbox/*"
# One Secrets Manager secret per notification endpoint, under the stack's own prefix.
ENDPOINT_SECRETS = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/endpoints/*"
XRAY = {("xray:PutTraceSegments", "*", None), ("xray:PutTelemetryRecords", "*", None)}


def logs(group: str) -> set[tuple[str, str, str | None]]:
    return {
        ("logs:CreateLogStream", f"{group}.Arn", None),
        ("logs:PutLogEvents", f"{group}.Arn", None),
    }


def prefix(p: str) -> str:
    return json.dumps({"StringLike": {"s3:prefix": p}}, sort_keys=True)


# function logical id -> (role logical id, log group logical id, grants)
EXPECTED: dict[str, tuple[str, str, set[tuple[str, str, str | None]]]] = {
    "ReceiverFunction": (
        "ReceiverRole",
        "ReceiverLogGroup",
        logs("ReceiverLogGroup")
        | XRAY
        | {
            # The one conditional write that records (and deduplicates) a callback,
            # the update of an expected or failed task, the read behind a duplicate.
            ("dynamodb:PutItem", "TasksTable.Arn", None),
            ("dynamodb:UpdateItem", "TasksTable.Arn", None),
            ("dynamodb:GetItem", "TasksTable.Arn", None),
            # The outage spill.
            ("s3:PutObject", INBOX, None),
            # Its own configuration secret (tokens, HMAC secrets), nobody else's.
            ("secretsmanager:GetSecretValue", "Ref:CallbackSecret", None),
        },
    ),
    "IngestFunction": (
        "IngestRole",
        "IngestLogGroup",
        logs("IngestLogGroup")
        | XRAY
        | {
            ("dynamodb:GetItem", "TasksTable.Arn", None),
            ("dynamodb:UpdateItem", "TasksTable.Arn", None),
            # The upstream API key (fresh URLs for expired ones).
            ("secretsmanager:GetSecretValue", "Ref:UpstreamApiSecret", None),
            # The event source mapping reads the stream with this role.
            ("dynamodb:DescribeStream", "TasksTable.StreamArn", None),
            ("dynamodb:GetRecords", "TasksTable.StreamArn", None),
            ("dynamodb:GetShardIterator", "TasksTable.StreamArn", None),
            ("dynamodb:ListStreams", "${TasksTable.Arn}/stream/*", None),
            ("sqs:SendMessage", "IngestDeadLetterQueue.Arn", None),
            # Put (single and multipart), the tags the commit writes (length, SHA-256)
            # and reads back (HEAD of an earlier attempt), failed-commit delete.
            ("s3:PutObject", VIDEOS, None),
            ("s3:PutObjectTagging", VIDEOS, None),
            ("s3:GetObject", VIDEOS, None),
            ("s3:GetObjectTagging", VIDEOS, None),
            ("s3:DeleteObject", VIDEOS, None),
            ("s3:AbortMultipartUpload", VIDEOS, None),
            ("s3:ListMultipartUploadParts", VIDEOS, None),
            ("s3:ListBucketMultipartUploads", "VideosBucket.Arn", None),
            ("s3:ListBucket", "VideosBucket.Arn", prefix("videos/*")),
        },
    ),
    "StatusFunction": (
        "StatusRole",
        "StatusLogGroup",
        logs("StatusLogGroup")
        | XRAY
        | {
            ("dynamodb:GetItem", "TasksTable.Arn", None),
            ("dynamodb:PutItem", "TasksTable.Arn", None),
            # An operator's re-drive (revision-checked, a patch of the domain's).
            ("dynamodb:UpdateItem", "TasksTable.Arn", None),
            # GET /tasks?status= (mvcb tasks list): the by-status index, never a scan.
            ("dynamodb:Query", "${TasksTable.Arn}/index/by-status", None),
            # Presigned GETs carry the signer's permissions.
            ("s3:GetObject", VIDEOS, None),
            # The notification routes.
            ("dynamodb:Scan", "EndpointsTable.Arn", None),
            ("dynamodb:Query", "EndpointsTable.Arn", None),
            ("dynamodb:GetItem", "EndpointsTable.Arn", None),
            ("dynamodb:PutItem", "EndpointsTable.Arn", None),
            ("dynamodb:UpdateItem", "EndpointsTable.Arn", None),
            ("dynamodb:DeleteItem", "EndpointsTable.Arn", None),
            ("dynamodb:GetItem", "DeliveriesTable.Arn", None),
            ("dynamodb:PutItem", "DeliveriesTable.Arn", None),
            ("dynamodb:Query", "${DeliveriesTable.Arn}/index/by-endpoint", None),
            ("sqs:SendMessage", "JobsQueue.Arn", None),
            # Endpoint signing secrets, under the stack's prefix only.
            ("secretsmanager:CreateSecret", ENDPOINT_SECRETS, None),
            ("secretsmanager:PutSecretValue", ENDPOINT_SECRETS, None),
            ("secretsmanager:GetSecretValue", ENDPOINT_SECRETS, None),
            ("secretsmanager:DeleteSecret", ENDPOINT_SECRETS, None),
        },
    ),
    "ReconcilerFunction": (
        "ReconcilerRole",
        "ReconcilerLogGroup",
        logs("ReconcilerLogGroup")
        | XRAY
        | {
            ("dynamodb:Query", "${TasksTable.Arn}/index/open-tasks", None),
            ("dynamodb:UpdateItem", "TasksTable.Arn", None),
            ("dynamodb:PutItem", "TasksTable.Arn", None),
            ("s3:ListBucket", "VideosBucket.Arn", prefix("inbox/*")),
            ("s3:GetObject", INBOX, None),
            ("s3:DeleteObject", INBOX, None),
            # The upstream API key (polling for missed callbacks).
            ("secretsmanager:GetSecretValue", "Ref:UpstreamApiSecret", None),
        },
    ),
    "NotifyFunction": (
        "NotifyRole",
        "NotifyLogGroup",
        logs("NotifyLogGroup")
        | XRAY
        | {
            # The event source mapping reads the tasks stream with this role.
            ("dynamodb:DescribeStream", "TasksTable.StreamArn", None),
            ("dynamodb:GetRecords", "TasksTable.StreamArn", None),
            ("dynamodb:GetShardIterator", "TasksTable.StreamArn", None),
            ("dynamodb:ListStreams", "${TasksTable.Arn}/stream/*", None),
            # Endpoints (scanned: a small table) and their batch and drain counters.
            ("dynamodb:Scan", "EndpointsTable.Arn", None),
            ("dynamodb:GetItem", "EndpointsTable.Arn", None),
            ("dynamodb:UpdateItem", "EndpointsTable.Arn", None),
            # One conditional put per delivery; nothing read back.
            ("dynamodb:PutItem", "DeliveriesTable.Arn", None),
            ("sqs:SendMessage", "JobsQueue.Arn", None),
            ("sqs:SendMessage", "NotifyDeadLetterQueue.Arn", None),
        },
    ),
    "DeliverFunction": (
        "DeliverRole",
        "DeliverLogGroup",
        logs("DeliverLogGroup")
        | XRAY
        | {
            # One endpoint at a time (it never lists them).
            ("dynamodb:GetItem", "EndpointsTable.Arn", None),
            ("dynamodb:UpdateItem", "EndpointsTable.Arn", None),
            # Claims and attempts are revision-checked puts of the whole delivery.
            ("dynamodb:GetItem", "DeliveriesTable.Arn", None),
            ("dynamodb:PutItem", "DeliveriesTable.Arn", None),
            # A drain check: is any task open.
            ("dynamodb:Query", "${TasksTable.Arn}/index/open-tasks", None),
            # The event source mapping (receive, delete, attributes) and the function
            # (next attempts, early messages kept hidden).
            ("sqs:ReceiveMessage", "JobsQueue.Arn", None),
            ("sqs:DeleteMessage", "JobsQueue.Arn", None),
            ("sqs:GetQueueAttributes", "JobsQueue.Arn", None),
            ("sqs:SendMessage", "JobsQueue.Arn", None),
            ("sqs:ChangeMessageVisibility", "JobsQueue.Arn", None),
            # Presigned video links (include_video_url) carry the signer's permissions.
            ("s3:GetObject", VIDEOS, None),
            # Endpoint signing secrets: read, never written.
            ("secretsmanager:GetSecretValue", ENDPOINT_SECRETS, None),
        },
    ),
}

# The only actions allowed on `*`, and why AWS requires it.
STAR_RESOURCE_EXCEPTIONS = {
    "xray:PutTraceSegments": "X-Ray defines no resource types for it: only `*` can be granted",
    "xray:PutTelemetryRecords": "X-Ray defines no resource types for it: only `*` can be granted",
}

# IAM resource types that could grant a function more than its role says.
FORBIDDEN_TYPES = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::User",
    "AWS::IAM::Group",
    "AWS::IAM::UserToGroupAddition",
    "AWS::IAM::AccessKey",
}


def render(value: Any) -> str:
    """A resource in the template's spelling (see the module docs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Fn::GetAtt":
            return ".".join(arg)
        if key == "Fn::Sub" and isinstance(arg, str):
            return arg
        if key == "Ref":
            return f"Ref:{arg}"
    raise AssertionError(f"unexpected resource expression {value!r}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in role.get("Policies") or []:
        out.extend(as_list(policy["PolicyDocument"]["Statement"]))
    return out


def grants(role: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    out = set()
    for st in statements(role):
        cond = st.get("Condition")
        cond_s = json.dumps(cond, sort_keys=True) if cond is not None else None
        for action in as_list(st["Action"]):
            for resource in as_list(st["Resource"]):
                out.add((action, render(resource), cond_s))
    return out


def shape_violations(role: dict[str, Any]) -> list[str]:
    """What in a role's statements is not plain `Allow <named actions> on <named resources>`."""
    found = []
    for st in statements(role):
        if st.get("Effect") != "Allow":
            found.append(f"Effect {st.get('Effect')!r}")
        for key in ("NotAction", "NotResource", "NotPrincipal", "Principal"):
            if key in st:
                found.append(f"{key} in {st}")
        actions = as_list(st.get("Action", []))
        for action in actions:
            if "*" in action or ":" not in action:
                found.append(f"wildcard or malformed action {action!r}")
        for resource in as_list(st.get("Resource", [])):
            r = render(resource)
            if r == "*":
                found.extend(f"{a} on `*`" for a in actions if a not in STAR_RESOURCE_EXCEPTIONS)
            # A wildcard may only end an object-key or stream path: never stand for a
            # bucket, a table, a region or an account.
            elif "*" in r[:-1] or r.endswith(":*") or r.endswith("::*"):
                found.append(f"wildcard inside {r}")
    return found


class LeastPrivilege(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.template = template_model.load_template()
        cls.resources = cls.template["Resources"]

    def role_of(self, function_id: str) -> tuple[str, dict[str, Any]]:
        props = self.resources[function_id]["Properties"]
        role_ref = props.get("Role")
        self.assertIsInstance(role_ref, dict, f"{function_id}: Role must be its own role's ARN")
        self.assertEqual(list(role_ref), ["Fn::GetAtt"], f"{function_id}: Role must be !GetAtt <Role>.Arn")
        role_id, attr = role_ref["Fn::GetAtt"]
        self.assertEqual(attr, "Arn")
        role = self.resources[role_id]
        self.assertEqual(role["Type"], "AWS::IAM::Role")
        return role_id, role["Properties"]

    def test_every_function_is_listed(self) -> None:
        functions = {
            k for k, v in self.resources.items()
            if v["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")
        }
        self.assertEqual(functions, set(EXPECTED), "a function without a reviewed grant list")

    def test_each_function_has_its_own_role_and_nothing_else(self) -> None:
        seen = {}
        for function_id, (role_id, _, _) in EXPECTED.items():
            got_role, role = self.role_of(function_id)
            self.assertEqual(got_role, role_id)
            self.assertNotIn(got_role, seen, f"{function_id} shares a role with {seen.get(got_role)}")
            seen[got_role] = function_id
            props = self.resources[function_id]["Properties"]
            # SAM policy templates / managed policies would add grants outside the role.
            for key in ("Policies", "PermissionsBoundary"):
                self.assertNotIn(key, props, f"{function_id}: {key} grants outside the reviewed role")
            for key in ("ManagedPolicyArns", "PermissionsBoundary"):
                self.assertNotIn(key, role, f"{role_id}: {key}")
        globals_fn = (self.template.get("Globals") or {}).get("Function") or {}
        for key in ("Policies", "Role", "PermissionsBoundary"):
            self.assertNotIn(key, globals_fn, f"Globals.Function.{key}")

    def test_no_other_iam_principal_or_policy(self) -> None:
        roles = {k for k, v in self.resources.items() if v["Type"] == "AWS::IAM::Role"}
        self.assertEqual(roles, {r for r, _, _ in EXPECTED.values()})
        for k, v in self.resources.items():
            self.assertNotIn(v["Type"], FORBIDDEN_TYPES, k)

    def test_trust_policy_is_lambda_only(self) -> None:
        for function_id in EXPECTED:
            role_id, role = self.role_of(function_id)
            trust = as_list(role["AssumeRolePolicyDocument"]["Statement"])
            self.assertEqual(len(trust), 1, role_id)
            st = trust[0]
            self.assertEqual(st["Effect"], "Allow")
            self.assertEqual(st["Principal"], {"Service": "lambda.amazonaws.com"}, role_id)
            self.assertEqual(as_list(st["Action"]), ["sts:AssumeRole"], role_id)

    def test_statements_have_the_plain_shape(self) -> None:
        for function_id in EXPECTED:
            role_id, role = self.role_of(function_id)
            self.assertEqual(shape_violations(role), [], role_id)

    def test_exact_grants_per_function(self) -> None:
        for function_id, (_, _, expected) in EXPECTED.items():
            role_id, role = self.role_of(function_id)
            got = grants(role)
            with self.subTest(function=function_id):
                self.assertEqual(
                    sorted(got - expected, key=str), [], f"{role_id} grants more than reviewed"
                )
                self.assertEqual(
                    sorted(expected - got, key=str), [], f"{role_id} lacks a reviewed grant"
                )
            actions = sorted({a for a, _, _ in got})
            print(f"IAM {function_id}: {len(actions)} actions, {len(got)} grants: {', '.join(actions)}")

    def test_logs_go_only_to_the_functions_own_group(self) -> None:
        for function_id, (_, group, _) in EXPECTED.items():
            props = self.resources[function_id]["Properties"]
            self.assertEqual(props["LoggingConfig"]["LogGroup"], {"Ref": group}, function_id)
            self.assertEqual(self.resources[group]["Type"], "AWS::Logs::LogGroup")
            _, role = self.role_of(function_id)
            log_resources = {r for a, r, _ in grants(role) if a.startswith("logs:")}
            self.assertEqual(log_resources, {f"{group}.Arn"}, function_id)

    def test_referenced_resources_exist(self) -> None:
        for function_id in EXPECTED:
            _, role = self.role_of(function_id)
            for _, r, _ in grants(role):
                names = []
                if "${" in r:
                    names = [part.split("}")[0].split(".")[0] for part in r.split("${")[1:]]
                elif r.startswith("Ref:"):
                    names = [r.removeprefix("Ref:")]
                elif r != "*":
                    names = [r.split(".")[0]]
                for name in names:
                    if name.startswith("AWS::"):
                        continue
                    self.assertIn(name, self.resources, f"{function_id}: {r} names no resource")

    def test_only_deny_uses_a_wildcard_action(self) -> None:
        # The bucket policy's TLS-only rule is a Deny of s3:*: a wildcard that takes away.
        for k, v in self.resources.items():
            if v["Type"] != "AWS::S3::BucketPolicy":
                continue
            for st in as_list(v["Properties"]["PolicyDocument"]["Statement"]):
                if any("*" in a for a in as_list(st.get("Action", []))):
                    self.assertEqual(st["Effect"], "Deny", f"{k}: {st}")

    def test_the_checks_catch_a_widened_role(self) -> None:
        # The checks above are only worth something if they fail on a wider role.
        import copy

        table = {"Fn::GetAtt": ["TasksTable", "Arn"]}
        widenings = {
            "extra action": {"Effect": "Allow", "Action": "dynamodb:Scan", "Resource": table},
            "wildcard action": {"Effect": "Allow", "Action": "dynamodb:*", "Resource": table},
            "star resource": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            "NotAction": {"Effect": "Allow", "NotAction": "iam:*", "Resource": table, "Action": "s3:GetObject"},
            "any bucket": {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::*/videos/*"},
            },
        }
        # A well-shaped extra grant is caught by the exact grant list; every other widening
        # by the shape check itself, so neither check leans on the other.
        for name, statement in widenings.items():
            role = copy.deepcopy(self.resources["StatusRole"]["Properties"])
            role["Policies"][0]["PolicyDocument"]["Statement"].append(statement)
            with self.subTest(widening=name):
                if name == "extra action":
                    self.assertEqual(shape_violations(role), [])
                    extra = grants(role) - EXPECTED["StatusFunction"][2]
                    self.assertEqual([a for a, _, _ in extra], ["dynamodb:Scan"])
                else:
                    self.assertNotEqual(shape_violations(role), [])
        self.assertEqual(
            shape_violations({"Policies": [{"PolicyDocument": {"Statement": [widenings["star resource"]]}}]}),
            ["s3:GetObject on `*`"],
        )


if __name__ == "__main__":
    unittest.main()
