"""Secrets live in Secrets Manager, one per reader, and no function gets one in its
environment: checked on template.yaml.

    python3 -m unittest discover -s tests/template -p 'test_*.py'
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "infra" / "local"))
import template_model  # noqa: E402

# Variables that carry a secret; the functions read them from their secret, never the environment.
SECRET_VARIABLES = {"CALLBACK_TOKENS", "UPSTREAM_HMAC_SECRETS", "STANDARD_WEBHOOKS_SECRETS", "UPSTREAM_API_KEY"}
# function -> the one secret it reads (and which variables that secret carries)
READERS = {
    "ReceiverFunction": ("CallbackSecret", {"CALLBACK_TOKENS", "UPSTREAM_HMAC_SECRETS", "STANDARD_WEBHOOKS_SECRETS"}),
    "IngestFunction": ("UpstreamApiSecret", {"UPSTREAM_API_KEY"}),
    "ReconcilerFunction": ("UpstreamApiSecret", {"UPSTREAM_API_KEY"}),
}
# Endpoint signing secrets: one secret per endpoint, made at run time under this prefix.
ENDPOINT_PREFIX = "${AWS::StackName}/endpoints/"
ENDPOINT_SECRETS = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:" + ENDPOINT_PREFIX + "*"
# function -> what it may do with them (status writes them, deliver signs with them)
ENDPOINT_SECRET_USERS = {
    "StatusFunction": {
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:GetSecretValue",
        "secretsmanager:DeleteSecret",
    },
    "DeliverFunction": {"secretsmanager:GetSecretValue"},
}


class Secrets(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.template = template_model.load_template(REPO_ROOT / "template.yaml")
        cls.resources = cls.template["Resources"]

    def env(self, function_id: str) -> dict:
        return self.resources[function_id]["Properties"].get("Environment", {}).get("Variables", {})

    def test_no_function_has_a_secret_in_its_environment(self) -> None:
        for function_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            leaked = SECRET_VARIABLES & set(self.env(function_id))
            self.assertFalse(leaked, f"{function_id} has {leaked} in its environment")

    def test_each_reader_names_its_own_secret_and_the_secret_carries_its_variables(self) -> None:
        for function_id, (secret, variables) in READERS.items():
            self.assertEqual(self.env(function_id).get("SECRETS_ID"), {"Ref": secret}, function_id)
            resource = self.resources[secret]
            self.assertEqual(resource["Type"], "AWS::SecretsManager::Secret")
            body = resource["Properties"]["SecretString"]["Fn::Sub"]
            for variable in variables:
                self.assertIn(f'"{variable}":', body, f"{secret} lacks {variable}")

    def test_the_seeding_parameters_are_no_echo_and_cannot_break_the_json(self) -> None:
        params = self.template["Parameters"]
        for name in ("CallbackTokens", "UpstreamHmacSecrets", "StandardWebhooksSecrets", "UpstreamApiKey"):
            self.assertTrue(params[name].get("NoEcho"), name)
            pattern = params[name].get("AllowedPattern", "")
            self.assertIn('"', pattern, f"{name} must refuse a quote")
            self.assertIn("\\\\", pattern, f"{name} must refuse a backslash")

    def secret_grants(self, function_id: str) -> list[tuple[frozenset, object]]:
        resource = self.resources[function_id]
        role = self.resources[resource["Properties"]["Role"]["Fn::GetAtt"][0]]
        granted = []
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(a.startswith("secretsmanager:") for a in actions):
                    granted.append((frozenset(actions), statement["Resource"]))
        return granted

    def test_only_readers_may_read_a_secret(self) -> None:
        for function_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            expected = []
            if function_id in READERS:
                expected.append((frozenset({"secretsmanager:GetSecretValue"}), {"Ref": READERS[function_id][0]}))
            if function_id in ENDPOINT_SECRET_USERS:
                expected.append((frozenset(ENDPOINT_SECRET_USERS[function_id]), {"Fn::Sub": ENDPOINT_SECRETS}))
            self.assertEqual(self.secret_grants(function_id), expected, function_id)

    def test_endpoint_secrets_live_under_the_prefix_their_users_are_given(self) -> None:
        for function_id in ENDPOINT_SECRET_USERS:
            self.assertEqual(
                self.env(function_id).get("ENDPOINT_SECRETS_PREFIX"), {"Fn::Sub": ENDPOINT_PREFIX}, function_id
            )
        # The prefix ends in a slash, so one stack's grant never covers another stack whose
        # name starts with this one's.
        self.assertTrue(ENDPOINT_PREFIX.endswith("/"))
        for function_id, resource in self.resources.items():
            if resource["Type"] == "AWS::Serverless::Function" and function_id not in ENDPOINT_SECRET_USERS:
                self.assertNotIn("ENDPOINT_SECRETS_PREFIX", self.env(function_id), function_id)


if __name__ == "__main__":
    unittest.main()
