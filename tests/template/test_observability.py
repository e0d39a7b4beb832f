"""Observability, checked: the alarms, their topic and the dashboard in template.yaml.

    python3 -m unittest discover -s tests/template -p 'test_*.py'

What an operator relies on without reading the template: every alarm notifies the alarm
topic on ALARM and on OK and stays quiet without data; each class of trouble the issue names
has its alarm (every dead-letter queue, receiver 5xx, spills, ingest failures, stuck tasks,
dead deliveries, disabled endpoints, each function's errors); the e-mail subscription exists
only when AlarmEmail is set; and every metric of ours that an alarm or the dashboard names is
one the functions emit: a `pub const` name in shared/src/metrics.rs (the catalogue the Rust
side records through), so a renamed metric cannot leave an alarm watching nothing.
"""

from __future__ import annotations

import json
import re
import sys
import unittest
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "infra" / "local"))
import template_model  # noqa: E402

METRICS_RS = REPO_ROOT / "shared" / "src" / "metrics.rs"
TOPIC = {"Ref": "AlarmTopic"}
OUR_NAMESPACE = {"Ref": "MetricsNamespace"}
STACK_DIMENSION = {"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}
NAMESPACE_PLACEHOLDER = "${MetricsNamespace}"

# Stand-ins for the dashboard's ${...} references, so its body can be parsed as JSON.
SUB_VALUE = "x1"


def catalogue_names() -> set[str]:
    """The `pub const NAME: &str = "Value";` strings of shared/src/metrics.rs."""
    text = METRICS_RS.read_text(encoding="utf-8")
    return set(re.findall(r'pub const [A-Z0-9_]+: &str = "([^"]+)";', text))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_string(value: Any) -> str:
    """The template string of a `!Sub` (either form)."""
    assert isinstance(value, dict) and list(value) == ["Fn::Sub"], value
    arg = value["Fn::Sub"]
    return arg if isinstance(arg, str) else arg[0]


OPTIONAL_TOPIC = {"Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]}


def alarm_problems(props: dict[str, Any]) -> list[str]:
    """What keeps an alarm from reaching the operator, or makes it cry wolf without data."""
    found = []
    for key in ("AlarmActions", "OKActions"):
        actions = as_list(props.get(key) or [])
        if TOPIC not in actions:
            found.append(f"{key} lacks the alarm topic")
        # Besides it, only the optional existing topic, and only when given.
        if [a for a in actions if a != TOPIC] != [OPTIONAL_TOPIC]:
            found.append(f"{key} lacks the optional AlarmTopicArn (or has more)")
    if props.get("TreatMissingData") != "notBreaching":
        found.append(f"TreatMissingData {props.get('TreatMissingData')!r}")
    if props.get("ActionsEnabled", True) is not True:
        found.append("actions disabled")
    name = props.get("AlarmName")
    if not (isinstance(name, dict) and "Fn::Sub" in name and sub_string(name).startswith("${AWS::StackName}-")):
        found.append(f"AlarmName {name!r} does not start with the stack name")
    return found


class Observability(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.template = template_model.load_template()
        cls.resources = cls.template["Resources"]
        cls.parameters = cls.template.get("Parameters") or {}
        cls.alarms = {
            k: v["Properties"] for k, v in cls.resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"
        }
        dashboards = [k for k, v in cls.resources.items() if v["Type"] == "AWS::CloudWatch::Dashboard"]
        assert len(dashboards) == 1, dashboards
        cls.dashboard_id = dashboards[0]
        cls.dashboard_src = sub_string(cls.resources[cls.dashboard_id]["Properties"]["DashboardBody"])

    # -- helpers ---------------------------------------------------------------------------

    def metric_of(self, props: dict[str, Any]) -> list[tuple[Any, str, list[dict[str, Any]], Any]]:
        """(namespace, metric name, dimensions, statistic) of an alarm: its metric, or each
        MetricStat of a metric-math alarm."""
        if "MetricName" in props:
            return [(props["Namespace"], props["MetricName"], props.get("Dimensions") or [], props.get("Statistic"))]
        out = []
        for m in props.get("Metrics") or []:
            stat = m.get("MetricStat")
            if stat:
                metric = stat["Metric"]
                out.append((metric["Namespace"], metric["MetricName"], metric.get("Dimensions") or [], stat["Stat"]))
        return out

    def alarms_on(self, namespace: Any, metric: str) -> dict[str, dict[str, Any]]:
        return {
            k: p for k, p in self.alarms.items()
            if any(ns == namespace and name == metric for ns, name, _, _ in self.metric_of(p))
        }

    def one_alarm_on(self, namespace: Any, metric: str) -> dict[str, Any]:
        found = self.alarms_on(namespace, metric)
        self.assertEqual(len(found), 1, f"expected one alarm on {namespace} {metric}, found {sorted(found)}")
        return next(iter(found.values()))

    def dashboard(self) -> dict[str, Any]:
        return json.loads(re.sub(r"\$\{[^}!]+\}", SUB_VALUE, self.dashboard_src))

    # -- the topic -------------------------------------------------------------------------

    def test_every_alarm_notifies_the_topic_and_is_quiet_without_data(self) -> None:
        self.assertGreaterEqual(len(self.alarms), 12)
        for alarm_id, props in self.alarms.items():
            with self.subTest(alarm=alarm_id):
                self.assertEqual(alarm_problems(props), [], alarm_id)

    def test_topic_and_conditional_email_subscription(self) -> None:
        self.assertEqual(self.resources["AlarmTopic"]["Type"], "AWS::SNS::Topic")
        topic = self.resources["AlarmTopic"]["Properties"]
        # Never the AWS managed key: alarms cannot publish to a topic under alias/aws/sns.
        self.assertNotIn("alias/aws/sns", json.dumps(topic))
        self.assertEqual(topic["KmsMasterKeyId"],
                         {"Fn::If": ["HasAlarmTopicKmsKey", {"Ref": "AlarmTopicKmsKeyId"}, {"Ref": "AWS::NoValue"}]})
        conditions = self.template.get("Conditions") or {}
        self.assertEqual(conditions["HasAlarmEmail"], {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]})
        self.assertEqual(conditions["HasAlarmTopicArn"], {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]})
        self.assertEqual(self.parameters["AlarmEmail"]["Default"], "")
        self.assertEqual(self.parameters["AlarmTopicArn"]["Default"], "")
        subs = {k: v for k, v in self.resources.items() if v["Type"] == "AWS::SNS::Subscription"}
        email = {k: v for k, v in subs.items() if v["Properties"].get("Protocol") == "email"}
        self.assertEqual(len(email), 1, sorted(subs))
        (sub,) = email.values()
        self.assertEqual(sub.get("Condition"), "HasAlarmEmail")
        self.assertEqual(sub["Properties"]["Endpoint"], {"Ref": "AlarmEmail"})
        self.assertEqual(sub["Properties"]["TopicArn"], TOPIC)
        outputs = self.template.get("Outputs") or {}
        self.assertEqual(outputs["AlarmTopicArn"]["Value"], TOPIC)
        self.assertIn("${OperationsDashboard}", sub_string(outputs["DashboardUrl"]["Value"]))

    # -- the alarm classes -----------------------------------------------------------------

    def dead_letter_queues(self) -> set[str]:
        """Every queue the template uses as a dead-letter target: a redrive policy's or an
        event source mapping's on-failure destination."""
        found = set()
        for res in self.resources.values():
            props = res.get("Properties") or {}
            if res["Type"] == "AWS::SQS::Queue":
                target = (props.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
                if target:
                    found.add(target["Fn::GetAtt"][0])
            if res["Type"] == "AWS::Serverless::Function":
                for event in (props.get("Events") or {}).values():
                    dest = (((event.get("Properties") or {}).get("DestinationConfig") or {})
                            .get("OnFailure") or {}).get("Destination")
                    if dest:
                        found.add(dest["Fn::GetAtt"][0])
        return found

    def test_each_dead_letter_queue_has_its_alarm(self) -> None:
        dlqs = self.dead_letter_queues()
        self.assertEqual(dlqs, {"IngestDeadLetterQueue", "NotifyDeadLetterQueue", "JobsDeadLetterQueue"})
        alarms = self.alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        watched = {}
        for alarm_id, props in alarms.items():
            (dim,) = props["Dimensions"]
            self.assertEqual(dim["Name"], "QueueName")
            self.assertEqual(dim["Value"]["Fn::GetAtt"][1], "QueueName")
            watched[dim["Value"]["Fn::GetAtt"][0]] = props
        self.assertEqual(set(watched), dlqs)
        for queue, props in watched.items():
            with self.subTest(queue=queue):
                # Any one message.
                self.assertEqual(props["ComparisonOperator"], "GreaterThanOrEqualToThreshold")
                self.assertEqual(props["Threshold"], 1)
                self.assertEqual(props["Statistic"], "Maximum")

    def assert_any_one(self, props: dict[str, Any]) -> None:
        self.assertEqual(props["Statistic"], "Sum")
        self.assertEqual(props["ComparisonOperator"], "GreaterThanOrEqualToThreshold")
        self.assertEqual(props["Threshold"], 1)

    def test_receiver_5xx(self) -> None:
        api = self.one_alarm_on("AWS/ApiGateway", "5xx")
        self.assertEqual(api["Dimensions"], [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}])
        self.assert_any_one(api)
        ours = self.one_alarm_on(OUR_NAMESPACE, "CallbackServerErrors")
        self.assert_any_one(ours)

    def test_any_spill(self) -> None:
        self.assert_any_one(self.one_alarm_on(OUR_NAMESPACE, "InboxSpills"))

    def test_ingest_failures_above_the_threshold(self) -> None:
        props = self.one_alarm_on(OUR_NAMESPACE, "IngestFailed")
        self.assertEqual(props["Threshold"], {"Ref": "IngestFailureAlarmThreshold"})
        self.assertEqual(props["Period"], 300)
        self.assertEqual(props["Statistic"], "Sum")
        self.assertIn("IngestFailureAlarmThreshold", self.parameters)

    def test_stuck_tasks_for_two_reconciler_runs_and_give_ups(self) -> None:
        props = self.one_alarm_on(OUR_NAMESPACE, "StuckTasks")
        self.assertEqual((props["EvaluationPeriods"], props.get("DatapointsToAlarm")), (2, 2))
        self.assertEqual((props["ComparisonOperator"], props["Threshold"]), ("GreaterThanThreshold", 0))
        # The period is one reconciler run: element m of the list is m minutes in seconds.
        index, periods = props["Period"]["Fn::Select"]
        self.assertEqual(index, {"Ref": "ReconcileRateMinutes"})
        rate = self.parameters["ReconcileRateMinutes"]
        for minutes in range(int(rate["MinValue"]), int(rate["MaxValue"]) + 1):
            self.assertEqual(periods[minutes], minutes * 60)
        self.assert_any_one(self.one_alarm_on(OUR_NAMESPACE, "ReconcilerGaveUp"))

    def test_dead_deliveries_and_disabled_endpoints(self) -> None:
        self.assert_any_one(self.one_alarm_on(OUR_NAMESPACE, "DeadDeliveries"))
        self.assert_any_one(self.one_alarm_on(OUR_NAMESPACE, "EndpointsDisabled"))

    def test_every_function_has_an_errors_alarm(self) -> None:
        functions = {k for k, v in self.resources.items() if v["Type"] == "AWS::Serverless::Function"}
        alarms = self.alarms_on("AWS/Lambda", "Errors")
        watched = set()
        for props in alarms.values():
            (dim,) = props["Dimensions"]
            self.assertEqual(dim["Name"], "FunctionName")
            watched.add(dim["Value"]["Ref"])
            self.assert_any_one(props)
        self.assertEqual(watched, functions)

    def test_ingest_duration_near_its_timeout(self) -> None:
        (alarm_id,) = self.alarms_on("AWS/Lambda", "Duration")
        props = self.alarms[alarm_id]
        expressions = [m for m in props["Metrics"] if "Expression" in m]
        self.assertEqual(len(expressions), 1)
        self.assertIn("${IngestTimeoutSeconds}", sub_string(expressions[0]["Expression"]))
        self.assertTrue(expressions[0]["ReturnData"])
        ((_, _, dims, _),) = self.metric_of(props)
        self.assertEqual(dims, [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}])

    def test_our_alarms_name_the_stack(self) -> None:
        # Several deployments share an account: each alarm watches its own stack's metrics.
        for alarm_id, props in self.alarms.items():
            for ns, name, dims, _ in self.metric_of(props):
                if ns == OUR_NAMESPACE:
                    self.assertEqual(dims, [STACK_DIMENSION], f"{alarm_id} ({name})")

    # -- the catalogue ---------------------------------------------------------------------

    def our_metric_names(self) -> dict[str, set[str]]:
        """Every metric name of our namespace the alarms and the dashboard use, and where."""
        used: dict[str, set[str]] = {}
        for alarm_id, props in self.alarms.items():
            for ns, name, _, _ in self.metric_of(props):
                if ns == OUR_NAMESPACE:
                    used.setdefault(name, set()).add(alarm_id)
        for widget in self.dashboard_widgets_raw():
            for row in (widget.get("properties") or {}).get("metrics") or []:
                if row and row[0] == NAMESPACE_PLACEHOLDER:
                    used.setdefault(row[1], set()).add(self.dashboard_id)
                for item in row:
                    if isinstance(item, dict) and "expression" in item:
                        for name in re.findall(r'MetricName="([^"]+)"', item["expression"]):
                            used.setdefault(name, set()).add(self.dashboard_id)
        return used

    def dashboard_widgets_raw(self) -> list[dict[str, Any]]:
        # Every ${...} sits inside a JSON string, so the body parses with them as written.
        return json.loads(self.dashboard_src)["widgets"]

    def test_every_metric_of_ours_is_in_the_rust_catalogue(self) -> None:
        self.assertTrue(METRICS_RS.exists(), f"{METRICS_RS} is missing: the metric catalogue")
        names = catalogue_names()
        used = self.our_metric_names()
        self.assertGreaterEqual(len(used), 20, sorted(used))
        missing = {name: sorted(where) for name, where in used.items() if name not in names}
        self.assertEqual(missing, {}, "metrics named in template.yaml that shared/src/metrics.rs does not define")

    def test_dashboard_search_dimensions_are_catalogue_labels(self) -> None:
        names = catalogue_names() if METRICS_RS.exists() else set()
        for widget in self.dashboard_widgets_raw():
            for row in (widget.get("properties") or {}).get("metrics") or []:
                for item in row:
                    if isinstance(item, dict) and "expression" in item and "SEARCH(" in item["expression"]:
                        schema = re.search(r"\{([^}]*)\}", item["expression"].replace(NAMESPACE_PLACEHOLDER, "NS"))
                        self.assertIsNotNone(schema, item["expression"])
                        ns, stack, *labels = [p.strip() for p in schema.group(1).split(",")]
                        self.assertEqual((ns, stack), ("NS", "Stack"), item["expression"])
                        self.assertEqual(len(labels), 1, item["expression"])
                        self.assertIn(labels[0], names, item["expression"])
                        self.assertIn('Stack="${AWS::StackName}"', item["expression"])

    # -- the dashboard ---------------------------------------------------------------------

    def test_dashboard_is_json_and_shows_the_pipeline(self) -> None:
        body = self.dashboard()
        widgets = body["widgets"]
        for w in widgets:
            self.assertLessEqual(w["x"] + w["width"], 24, w)
        # Every alarm on the alarm status widget.
        (status,) = [w for w in widgets if w["type"] == "alarm"]
        src_alarms = set(re.findall(r"\$\{([A-Za-z0-9]+)\.Arn\}", self.dashboard_src))
        self.assertEqual(src_alarms, set(self.alarms))
        self.assertEqual(len(status["properties"]["alarms"]), len(self.alarms))
        # The pipeline end to end.
        used = self.our_metric_names()
        for metric in ("Callbacks", "CallbackAnswerTime", "CallbackRejections", "InboxSpills", "IngestOutcomes",
                       "IngestFailures", "IngestThroughput", "IngestBytes", "ReconcilerRedrives", "StuckTasks",
                       "OpenTasks", "ExpectedTasks", "Deliveries", "DeadDeliveries", "EndpointsDisabled"):
            self.assertIn(metric, used)
        for aws_metric in ('"AWS/SQS", "ApproximateNumberOfMessagesVisible"', '"AWS/Lambda", "Errors"',
                           '"AWS/Lambda", "Throttles"', '"AWS/Lambda", "Duration"', '"AWS/ApiGateway", "5xx"',
                           '"AWS/ApiGateway", "4xx"', '"AWS/ApiGateway", "Latency"'):
            self.assertIn(aws_metric, self.dashboard_src)
        for queue in self.dead_letter_queues():
            self.assertIn(f"${{{queue}.QueueName}}", self.dashboard_src)

    def test_dashboard_references_resolve(self) -> None:
        # `!Sub` references: parameters, resources (and their attributes), pseudo parameters.
        for ref in re.findall(r"\$\{([^}!]+)\}", self.dashboard_src):
            name = ref.split(".")[0]
            if name.startswith("AWS::"):
                continue
            self.assertTrue(name in self.parameters or name in self.resources, ref)

    def test_functions_get_the_metrics_environment(self) -> None:
        env = ((self.template["Globals"]["Function"].get("Environment") or {}).get("Variables") or {})
        self.assertEqual(env.get("METRICS_NAMESPACE"), {"Ref": "MetricsNamespace"})
        self.assertEqual(env.get("METRICS_STACK"), {"Ref": "AWS::StackName"})
        self.assertEqual(self.parameters["MetricsNamespace"]["Default"], "MusicVideoCallbacks")

    def test_the_checks_catch_a_broken_alarm(self) -> None:
        # The checks above are only worth something if they fail on a broken alarm.
        import copy

        good = self.alarms["InboxSpillsAlarm"]
        self.assertEqual(alarm_problems(good), [])
        breakages = {
            "no OK actions": lambda p: p.pop("OKActions"),
            "another topic only": lambda p: p.update(AlarmActions=[{"Ref": "SomeTopic"}]),
            "breaching on no data": lambda p: p.update(TreatMissingData="breaching"),
            "missing data unset": lambda p: p.pop("TreatMissingData"),
            "actions disabled": lambda p: p.update(ActionsEnabled=False),
        }
        for name, breakage in breakages.items():
            broken = copy.deepcopy(good)
            breakage(broken)
            with self.subTest(breakage=name):
                self.assertNotEqual(alarm_problems(broken), [])


if __name__ == "__main__":
    unittest.main()
