//! Typed configuration from the environment, read once at start-up. Every error names
//! the variable; no error ever contains a secret's value.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Why the configuration is unusable. The function refuses to start on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required")]
    Missing { name: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A source of configuration variables: the process environment in production, a map
/// in tests. Empty values count as unset.
pub struct Env {
    vars: HashMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: list names only.
        let mut names: Vec<_> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    pub fn process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value, or `None` when unset or empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name })
    }

    /// Parses the value with `FromStr`, or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{v:?}: {e}"),
            }),
        }
    }

    /// [`Env::parse_or`], then checks the value lies in `range`.
    pub fn ranged<T>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
        T::Err: fmt::Display,
    {
        in_range(name, self.parse_or(name, default)?, range)
    }

    /// A boolean flag: `true`/`false`/`1`/`0`/`yes`/`no`, default false.
    pub fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.optional(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                reason: format!("{other:?} is not true or false"),
            }),
        }
    }

    /// A list separated by commas and/or whitespace; empty items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.optional(name)
            .map(|v| {
                v.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Ensures `value` lies in `range`, naming `name` otherwise.
fn in_range<T>(name: &'static str, value: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_values_and_names_the_variable_on_error() {
        let env = Env::from_pairs([("A", "12"), ("B", "x"), ("E", "  "), ("L", "a, b c,,d")]);
        assert_eq!(env.parse_or("A", 5u32), Ok(12));
        assert_eq!(env.parse_or("MISSING", 5u32), Ok(5));
        assert_eq!(env.parse_or("E", 5u32), Ok(5));
        let err = env.parse_or("B", 5u32).unwrap_err();
        assert!(err.to_string().contains("B is invalid"), "{err}");
        assert_eq!(env.required("E"), Err(ConfigError::Missing { name: "E" }));
        assert_eq!(env.list("L"), ["a", "b", "c", "d"]);
        assert!(env.list("MISSING").is_empty());
    }

    #[test]
    fn flags_are_strict() {
        let env = Env::from_pairs([("T", "TRUE"), ("F", "0"), ("X", "maybe")]);
        assert_eq!(env.flag("T"), Ok(true));
        assert_eq!(env.flag("F"), Ok(false));
        assert_eq!(env.flag("UNSET"), Ok(false));
        assert!(env.flag("X").is_err());
    }

    #[test]
    fn debug_lists_names_not_values() {
        let env = Env::from_pairs([("CALLBACK_TOKENS", "s3cr3t-value")]);
        let dbg = format!("{env:?}");
        assert!(dbg.contains("CALLBACK_TOKENS") && !dbg.contains("s3cr3t"));
    }

    #[test]
    fn range_check_names_the_variable() {
        assert_eq!(in_range("P", 8, 5..=5120), Ok(8));
        assert!(
            in_range("P", 4, 5..=5120)
                .unwrap_err()
                .to_string()
                .contains("P is invalid")
        );
    }
}
