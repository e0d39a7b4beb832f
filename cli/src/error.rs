//! The CLI's one error type, and the one place an error becomes an exit code.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | failed: an unexpected answer (5xx, 401, …), the network, `tasks watch` timed out |
//! | 2 | usage: a bad argument (clap's own), or a request the API refused as invalid (400) |
//! | 3 | not found: no such task, endpoint, delivery or stack (404) |
//! | 4 | `doctor`: at least one check failed |
//! | 5 | conflict: the API refused the action in the current state (409: not re-drivable, disabled, changed meanwhile) |
//! | 6 | no target: no stack given, `.local/stack.env` missing or incomplete, no AWS credentials, CloudFormation unreachable |
//! | 7 | `tasks watch`: the task ended `failed` |

use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A usage error found after parsing (an argument clap could not check).
    #[error("{0}")]
    Usage(String),
    /// The API answered 400.
    #[error("refused ({code}): {message}")]
    Invalid { code: String, message: String },
    /// The API answered 404 (or the stack does not exist).
    #[error("not found: {0}")]
    NotFound(String),
    /// The API answered 409.
    #[error("conflict ({code}): {message}")]
    Conflict { code: String, message: String },
    /// Any other answer the command did not expect.
    #[error("HTTP {status} from {what}: {body}")]
    Unexpected {
        what: String,
        status: u16,
        body: String,
    },
    /// The request did not get an answer.
    #[error("request to {what} failed: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// SigV4 signing failed (credentials, region, request shape).
    #[error("cannot sign the request: {0}")]
    Signing(String),
    /// Which stack, and how to reach it, could not be worked out.
    #[error("{0}")]
    Target(String),
    /// `tasks watch`: the task did not end in time.
    #[error("{0}")]
    Task(String),
    /// `tasks watch`: the task ended `failed`.
    #[error("{0}")]
    TaskFailed(String),
    /// `doctor`: these checks failed.
    #[error("{failed} of {total} checks failed")]
    Doctor { failed: usize, total: usize },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code of this error (documented above and in docs/cli.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Invalid { .. } => 2,
            Self::NotFound(_) => 3,
            Self::Doctor { .. } => 4,
            Self::Conflict { .. } => 5,
            Self::Target(_) | Self::Signing(_) => 6,
            Self::TaskFailed(_) => 7,
            Self::Unexpected { .. } | Self::Http { .. } | Self::Task(_) | Self::Output(_) => 1,
        }
    }

    /// The error an API answer stands for, from its status and `{"error", "message"}` body.
    pub fn from_answer(what: &str, status: u16, body: &serde_json::Value) -> Self {
        let field = |name: &str| {
            body.get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let (code, message) = (field("error"), field("message"));
        match status {
            400 => Self::Invalid { code, message },
            404 => Self::NotFound(match message.is_empty() {
                true => what.to_owned(),
                false => format!("{what}: {message}"),
            }),
            409 => Self::Conflict { code, message },
            _ => Self::Unexpected {
                what: what.to_owned(),
                status,
                body: body.to_string(),
            },
        }
    }
}

/// The exit code of a command's result (clap's usage errors exit 2 on their own).
pub fn exit_code(result: &Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(e.exit_code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_map_to_documented_exit_codes() {
        let body =
            json!({"error": "not_redrivable", "message": "a stored task cannot be re-driven"});
        let cases = [(400, 2), (404, 3), (409, 5), (401, 1), (500, 1), (503, 1)];
        for (status, code) in cases {
            assert_eq!(
                CliError::from_answer("task t", status, &body).exit_code(),
                code,
                "{status}"
            );
        }
        let conflict = CliError::from_answer("task t", 409, &body);
        assert_eq!(
            conflict.to_string(),
            "conflict (not_redrivable): a stored task cannot be re-driven"
        );
        assert_eq!(
            CliError::from_answer("task t", 404, &json!({})).to_string(),
            "not found: task t"
        );
        assert_eq!(
            CliError::Doctor {
                failed: 1,
                total: 7
            }
            .exit_code(),
            4
        );
        assert_eq!(CliError::Target("no stack".into()).exit_code(), 6);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Task("timed out".into()).exit_code(), 1);
        assert_eq!(CliError::TaskFailed("failed".into()).exit_code(), 7);
    }

    #[test]
    fn success_is_zero() {
        assert_eq!(exit_code(&Ok(())), ExitCode::SUCCESS);
        assert_eq!(
            exit_code(&Err(CliError::NotFound("x".into()))),
            ExitCode::from(3)
        );
    }
}
