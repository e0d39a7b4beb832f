//! [`TaskId`]: the upstream's task identifier, valid by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted task id. The upstream's ids are ~20 characters; 128 leaves room
/// while keeping S3 keys and log lines bounded.
pub const MAX_TASK_ID_LEN: usize = 128;

/// A task id of 1–128 characters from `[A-Za-z0-9._:-]`, so it is safe as an S3 key
/// part, a log field and a DynamoDB key without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

/// Why a string is not a [`TaskId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    #[error("task_id is empty")]
    Empty,
    #[error("task_id is longer than {MAX_TASK_ID_LEN} characters")]
    TooLong,
    #[error("task_id may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'")]
    InvalidCharacter,
    /// `.` and `..` (and longer runs of dots) mean something else as a path segment.
    #[error("task_id may not consist of dots only")]
    DotsOnly,
}

impl TaskId {
    /// Parses a task id, rejecting anything outside the allowed alphabet and length.
    pub fn parse(raw: &str) -> Result<Self, TaskIdError> {
        if raw.is_empty() {
            return Err(TaskIdError::Empty);
        }
        if raw.len() > MAX_TASK_ID_LEN {
            return Err(TaskIdError::TooLong);
        }
        if !raw.bytes().all(is_task_id_byte) {
            return Err(TaskIdError::InvalidCharacter);
        }
        if raw.bytes().all(|b| b == b'.') {
            return Err(TaskIdError::DotsOnly);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_task_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

impl TryFrom<String> for TaskId {
    type Error = TaskIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TaskId> for String {
    fn from(value: TaskId) -> Self {
        value.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_upstream_shaped_ids_and_the_whole_alphabet() {
        for ok in ["taskId_774b9aa0422f", "a", "A.b_c:d-9", &"x".repeat(128)] {
            assert_eq!(TaskId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_long_and_unsafe_ids() {
        assert_eq!(TaskId::parse(""), Err(TaskIdError::Empty));
        assert_eq!(TaskId::parse(&"x".repeat(129)), Err(TaskIdError::TooLong));
        for bad in [
            "a/b", "a b", "../x", "é", "a\u{0}", "a%2F", "a?b", "a#b", "a\nb",
        ] {
            assert_eq!(
                TaskId::parse(bad),
                Err(TaskIdError::InvalidCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dots_alone_are_not_an_id() {
        for bad in [".", "..", "..."] {
            assert_eq!(TaskId::parse(bad), Err(TaskIdError::DotsOnly), "{bad:?}");
        }
        assert!(TaskId::parse("a..b").is_ok() && TaskId::parse(".a").is_ok());
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<TaskId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<TaskId>("\"no/slash\"").is_err());
    }
}
